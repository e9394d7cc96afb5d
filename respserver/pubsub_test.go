package respserver

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// These tests drive pub/sub delivery without a Raft node: they call the
// FSM's hook (deliver) directly, as raft's FSM goroutine does, against a
// real listener and real TCP clients.

func startServer(t *testing.T, cfg Config) *Server {
	t.Helper()
	cfg.Addr = "127.0.0.1:0"
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	s := New(cfg, nil)
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	go s.Serve()
	t.Cleanup(func() { s.Close() })
	return s
}

type respClient struct {
	nc net.Conn
	r  *bufio.Reader
}

func dial(t *testing.T, s *Server) *respClient {
	t.Helper()
	nc, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &respClient{nc: nc, r: bufio.NewReader(nc)}
}

func (rc *respClient) send(t *testing.T, cmds ...string) {
	t.Helper()
	var b strings.Builder
	for _, c := range cmds {
		f := strings.Fields(c)
		fmt.Fprintf(&b, "*%d\r\n", len(f))
		for _, a := range f {
			fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
		}
	}
	if _, err := rc.nc.Write([]byte(b.String())); err != nil {
		t.Fatal(err)
	}
}

// read parses one reply into a compact string: arrays as [a b c], nil as
// <nil>, integers as :n, errors as -msg.
func (rc *respClient) read() (string, error) {
	line, err := rc.r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimSuffix(line, "\r\n")
	switch line[0] {
	case '+', '-', ':':
		return line, nil
	case '$':
		n, _ := strconv.Atoi(line[1:])
		if n < 0 {
			return "<nil>", nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(rc.r, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	case '*':
		n, _ := strconv.Atoi(line[1:])
		parts := make([]string, n)
		for i := range parts {
			if parts[i], err = rc.read(); err != nil {
				return "", err
			}
		}
		return "[" + strings.Join(parts, " ") + "]", nil
	}
	return "", fmt.Errorf("bad reply line %q", line)
}

func (rc *respClient) expect(t *testing.T, want ...string) {
	t.Helper()
	rc.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	for _, w := range want {
		got, err := rc.read()
		if err != nil || got != w {
			t.Fatalf("got %q (%v), want %q", got, err, w)
		}
	}
}

// A subscriber that never reads is closed once its queue passes the hard
// limit; delivery never waits for it, and a reading subscriber gets every
// message in order.
func TestPubSubSlowSubscriberDropped(t *testing.T) {
	s := startServer(t, Config{PubSubHardLimit: 256 << 10, PubSubSoftLimit: -1})
	fast, slow := dial(t, s), dial(t, s)
	fast.send(t, "SUBSCRIBE ch")
	fast.expect(t, "[subscribe ch :1]")
	slow.send(t, "SUBSCRIBE ch")
	slow.expect(t, "[subscribe ch :1]")
	// The slow client's kernel buffers absorb a few MB before its queue
	// grows: send well past that.
	const n = 20000
	msg := []byte(strings.Repeat("x", 1000))
	got := make(chan error, 1)
	var read atomic.Int64
	go func() {
		for i := 0; i < n; i++ {
			read.Store(int64(i))
			fast.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
			r, err := fast.read()
			if err != nil {
				got <- err
				return
			}
			if want := "[message ch " + strconv.Itoa(i) + string(msg) + "]"; r != want {
				got <- fmt.Errorf("message %d: %.40q", i, r)
				return
			}
		}
		got <- nil
	}()
	var worst time.Duration
	for i := 0; i < n; i++ {
		// Keep the reading subscriber within 50 messages (50 KB): its
		// queue must stay under the limit however slow the machine is.
		for int64(i)-read.Load() > 50 && len(got) == 0 {
			time.Sleep(50 * time.Microsecond)
		}
		start := time.Now()
		s.deliver([]byte("ch"), append([]byte(strconv.Itoa(i)), msg...))
		worst = max(worst, time.Since(start))
	}
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	if s.ps.dropped.Load() != 1 {
		t.Fatalf("dropped %d subscribers, want 1 (the one that never reads)", s.ps.dropped.Load())
	}
	// The server closed the slow connection: reading what the kernel
	// buffered ends in EOF, not a wait.
	slow.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.Copy(io.Discard, slow.nc); err != nil {
		t.Fatalf("slow subscriber's connection was not closed: %v", err)
	}
	waitUntil(t, "the slow subscriber to be unregistered", func() bool {
		s.ps.mu.RLock()
		defer s.ps.mu.RUnlock()
		return len(s.ps.channels["ch"]) == 1
	})
	t.Logf("worst deliver call with a stuck subscriber: %v", worst)
	if worst > 200*time.Millisecond {
		t.Fatalf("deliver blocked for %v", worst)
	}
}

// Over the soft limit for longer than the soft time: closed.
func TestPubSubSoftLimit(t *testing.T) {
	s := startServer(t, Config{PubSubHardLimit: -1, PubSubSoftLimit: 64 << 10, PubSubSoftTime: 50 * time.Millisecond})
	slow := dial(t, s)
	slow.send(t, "SUBSCRIBE ch")
	slow.expect(t, "[subscribe ch :1]")
	msg := make([]byte, 64<<10)
	deadline := time.Now().Add(20 * time.Second)
	for s.ps.dropped.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("a subscriber over the soft limit for longer than the soft time was not dropped")
		}
		s.deliver([]byte("ch"), msg)
		time.Sleep(5 * time.Millisecond)
	}
}

// Confirmations precede the messages they enable, the connection's own
// replies keep their place among messages, and frames never interleave,
// while deliveries run concurrently; after UNSUBSCRIBE the connection is a
// normal one again.
func TestPubSubOrderWithConcurrentDelivery(t *testing.T) {
	s := startServer(t, Config{})
	c := dial(t, s)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			s.deliver([]byte("a"), []byte("m"+strconv.Itoa(i)))
			s.deliver([]byte("b1"), []byte("n"+strconv.Itoa(i)))
		}
	}()
	c.send(t, "SUBSCRIBE a", "PING", "PSUBSCRIBE b*", "PING x", "UNSUBSCRIBE a", "PUNSUBSCRIBE", "PING")
	var seen []string
	lastA, lastB := -1, -1
	c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	for len(seen) < 7 {
		r, err := c.read()
		if err != nil {
			t.Fatal(err, seen)
		}
		switch {
		case strings.HasPrefix(r, "[message a m"):
			if len(seen) < 1 || len(seen) >= 5 {
				t.Fatalf("message on a outside its subscription: %q after %v", r, seen)
			}
			n, _ := strconv.Atoi(strings.TrimSuffix(r[len("[message a m"):], "]"))
			if n <= lastA {
				t.Fatalf("messages on a out of order: %d after %d", n, lastA)
			}
			lastA = n
		case strings.HasPrefix(r, "[pmessage b* b1 n"):
			if len(seen) < 3 || len(seen) >= 6 {
				t.Fatalf("message on b* outside its subscription: %q after %v", r, seen)
			}
			n, _ := strconv.Atoi(strings.TrimSuffix(r[len("[pmessage b* b1 n"):], "]"))
			if n <= lastB {
				t.Fatalf("messages on b* out of order: %d after %d", n, lastB)
			}
			lastB = n
		default:
			seen = append(seen, r)
		}
	}
	close(stop)
	wg.Wait()
	want := "[[subscribe a :1] [pong ] [psubscribe b* :2] [pong x] [unsubscribe a :1] [punsubscribe b* :0] +PONG]"
	if fmt.Sprint(seen) != want {
		t.Fatalf("replies %v, want %v", seen, want)
	}
	c.send(t, "ECHO hi")
	c.expect(t, "hi")
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// BenchmarkPubSubFanout delivers messages at 1,000/s to 33 subscribers (one
// node's share of 100 in a 3-node cluster) over loopback, as raft's FSM
// goroutine would, and reports deliver-to-receipt latency and the process
// CPU spent per message (all 33 copies: queueing, flushers, syscalls, and
// the test's own readers).
func BenchmarkPubSubFanout(b *testing.B) {
	const subscribers = 33
	s := New(Config{Addr: "127.0.0.1:0", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, nil)
	if err := s.Listen(); err != nil {
		b.Fatal(err)
	}
	go s.Serve()
	defer s.Close()
	lat := make(chan []time.Duration, subscribers)
	for i := 0; i < subscribers; i++ {
		nc, err := net.Dial("tcp", s.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		defer nc.Close()
		rc := &respClient{nc: nc, r: bufio.NewReader(nc)}
		nc.Write([]byte("*2\r\n$9\r\nSUBSCRIBE\r\n$2\r\nch\r\n"))
		if _, err := rc.read(); err != nil {
			b.Fatal(err)
		}
		go func() {
			var got []time.Duration
			for n := 0; n < b.N; n++ {
				r, err := rc.read()
				if err != nil {
					break
				}
				stamp, _ := strconv.ParseInt(strings.TrimSuffix(r[len("[message ch "):], "]"), 10, 64)
				got = append(got, time.Duration(time.Now().UnixNano()-stamp))
			}
			lat <- got
		}()
	}
	var ru0, ru1 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	b.ResetTimer()
	start := time.Now()
	for n := 0; n < b.N; n++ {
		if d := time.Until(start.Add(time.Duration(n) * time.Millisecond)); d > 0 {
			time.Sleep(d)
		}
		s.deliver([]byte("ch"), strconv.AppendInt(nil, time.Now().UnixNano(), 10))
	}
	var all []time.Duration
	for i := 0; i < subscribers; i++ {
		all = append(all, <-lat...)
	}
	b.StopTimer()
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	cpu := time.Duration(syscall.TimevalToNsec(ru1.Utime) - syscall.TimevalToNsec(ru0.Utime) +
		syscall.TimevalToNsec(ru1.Stime) - syscall.TimevalToNsec(ru0.Stime))
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	if len(all) > 0 {
		b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
	}
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/msg")
}
