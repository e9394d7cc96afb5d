package main

import (
	"bufio"
	"net"
	"strings"
	"testing"
	"time"
)

// rawReply sends one inline command and reads one reply line.
func rawReply(t *testing.T, c net.Conn, cmd string) string {
	t.Helper()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if cmd != "" {
		if _, err := c.Write([]byte(cmd + "\r\n")); err != nil {
			t.Fatal(err)
		}
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("%q: %v", cmd, err)
	}
	return strings.TrimRight(line, "\r\n")
}

// --maxclients refuses the connection past the limit with Redis's error,
// and a freed slot is usable again.
func TestMaxClients(t *testing.T) {
	c := startCluster(t, 1, "--maxclients", "2")
	addr := c.RESPAddr(0)
	var conns []net.Conn
	for i := 0; i < 2; i++ {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		if got := rawReply(t, nc, "PING"); got != "+PONG" {
			t.Fatalf("client %d: %q", i, got)
		}
		conns = append(conns, nc)
	}
	extra, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	if got := rawReply(t, extra, ""); got != "-ERR max number of clients reached" {
		t.Fatalf("third client got %q", got)
	}
	conns[0].Close()
	waitFor(t, "a freed client slot", func() bool {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			return false
		}
		defer nc.Close()
		return rawReply(t, nc, "PING") == "+PONG"
	})
}

// With requirepass, commands before AUTH get NOAUTH; AUTH unlocks them.
func TestRequirePass(t *testing.T) {
	c := startCluster(t, 1, "--requirepass", "s3cret")
	nc, err := net.Dial("tcp", c.RESPAddr(0))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	for _, step := range []struct{ cmd, want string }{
		{"GET k", "-NOAUTH Authentication required."},
		{"AUTH wrong", "-WRONGPASS invalid username-password pair or user is disabled."},
		{"AUTH s3cret", "+OK"},
		{"SET k v", "+OK"},
	} {
		if got := rawReply(t, nc, step.cmd); got != step.want {
			t.Fatalf("%s: %q, want %q", step.cmd, got, step.want)
		}
	}
}
