package chaos

import (
	"bufio"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// echoServer stands in for a node's Raft port: it echoes lines.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

// dialAs connects to node `to` through the proxy from node `from`'s IP.
func dialAs(t *testing.T, p *Proxy, from, to int) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(nodeIP(from))}, Timeout: time.Second}
	c, err := d.Dial("tcp", p.Addr(to))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// roundTrip sends a line and waits up to wait for it to come back.
func roundTrip(c net.Conn, line string, wait time.Duration) error {
	_ = c.SetDeadline(time.Now().Add(wait))
	if _, err := c.Write([]byte(line + "\n")); err != nil {
		return err
	}
	got, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(got) != line {
		return io.ErrUnexpectedEOF
	}
	return nil
}

func newTestProxy(t *testing.T, n int) *Proxy {
	t.Helper()
	p, err := NewProxy(n)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	for i := range n {
		p.SetTarget(i, echoServer(t))
	}
	return p
}

func TestProxyPartitionSeversAndRefuses(t *testing.T) {
	p := newTestProxy(t, 3)
	c01 := dialAs(t, p, 0, 1)
	c12 := dialAs(t, p, 1, 2)
	if err := roundTrip(c01, "hello", 5*time.Second); err != nil {
		t.Fatalf("healthy link: %v", err)
	}
	p.Partition([]int{0}, []int{1, 2})
	// The established connection across the cut is closed...
	if err := roundTrip(c01, "cut", 5*time.Second); err == nil {
		t.Fatal("existing connection survived the partition")
	}
	// ...a new one is refused, and links inside a group still work.
	if err := roundTrip(dialAs(t, p, 1, 0), "cut", 5*time.Second); err == nil {
		t.Fatal("new connection across the partition worked")
	}
	if err := roundTrip(c12, "inside", 5*time.Second); err != nil {
		t.Fatalf("link inside a group: %v", err)
	}
	p.Heal()
	if err := roundTrip(dialAs(t, p, 0, 1), "healed", 5*time.Second); err != nil {
		t.Fatalf("after heal: %v", err)
	}
}

func TestProxyDropOneWay(t *testing.T) {
	p := newTestProxy(t, 2)
	c := dialAs(t, p, 0, 1)
	if err := roundTrip(c, "before", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	// Replies (1→0) are black-holed: the request gets through, the echo
	// never arrives, and the connection is not closed (a timeout, not EOF).
	p.DropOneWay(1, 0)
	err := roundTrip(c, "lost", 300*time.Millisecond)
	if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
		t.Fatalf("black-holed reply: want a timeout, got %v", err)
	}
	// Healing closes the connection whose stream lost bytes.
	p.Heal()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("tainted connection still open after heal")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("tainted connection not closed on heal")
	}
	if err := roundTrip(dialAs(t, p, 0, 1), "after", 5*time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestProxyDelay(t *testing.T) {
	p := newTestProxy(t, 2)
	c := dialAs(t, p, 0, 1)
	const d = 100 * time.Millisecond
	p.Delay(0, 1, d)
	start := time.Now()
	for _, line := range []string{"a", "b", "c"} {
		if err := roundTrip(c, line, 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	// Each round trip crossed the delayed link once: a lower bound only.
	if el := time.Since(start); el < 3*d {
		t.Fatalf("3 round trips over a %v link took %v", d, el)
	}
}

func TestProxyUnknownSourceIsNeverFaulted(t *testing.T) {
	p := newTestProxy(t, 2)
	p.Isolate(1)
	c, err := net.Dial("tcp", p.Addr(1)) // from 127.0.0.1: not a node
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := roundTrip(c, "tool", 5*time.Second); err != nil {
		t.Fatal(err)
	}
}
