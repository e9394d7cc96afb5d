package lua

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestDifferentialRedis runs every script of diffCases through EVAL on a
// real redis-server (A), and through lua.Eval with a Caller that forwards
// redis.call to a second redis-server (B): the data side is real Redis on
// both sides and only the script engine differs. Replies, and the values of
// the keys listed in `after`, must be byte-identical.
func TestDifferentialRedis(t *testing.T) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server not on PATH: differential test against real Redis skipped")
	}
	a := startRedis(t, bin)
	b := startRedis(t, bin)
	if len(diffCases) < 80 {
		t.Fatalf("only %d differential cases", len(diffCases))
	}
	for i, c := range diffCases {
		name := fmt.Sprintf("%03d", i)
		t.Run(name, func(t *testing.T) {
			for _, conn := range []*respConn{a, b} {
				conn.do("FLUSHALL")
				for _, cmd := range c.setup {
					conn.do(cmd...)
				}
			}
			eval := append([]string{"EVAL", c.script, strconv.Itoa(len(c.keys))}, c.keys...)
			eval = append(eval, c.args...)
			want := a.do(eval...)
			got := Eval([]byte(c.script), toBytes(c.keys), toBytes(c.args), b.call, Limits{})
			sha := SHA1Hex([]byte(c.script))
			if norm(want, sha) != norm(got, sha) {
				t.Errorf("script:\n%s\nredis: %q\nours:  %q", c.script, want, got)
			}
			for _, k := range c.after {
				wa, wb := a.do("GET", k), b.do("GET", k)
				if !bytes.Equal(wa, wb) {
					t.Errorf("script:\n%s\nkey %s: redis has %q, ours wrote %q", c.script, k, wa, wb)
				}
			}
		})
	}
}

type diffCase struct {
	script string
	keys   []string
	args   []string
	setup  [][]string
	after  []string // keys whose values must match afterwards
}

func toBytes(ss []string) [][]byte {
	out := make([][]byte, len(ss))
	for i, s := range ss {
		out[i] = []byte(s)
	}
	return out
}

// norm replaces the script's sha so that texts are compared consistently.
func norm(reply []byte, sha string) string {
	return strings.ReplaceAll(string(reply), sha, "<sha>")
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func startRedis(t *testing.T, bin string) *respConn {
	t.Helper()
	for attempt := 0; attempt < 5; attempt++ {
		port := freePort(t)
		cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--daemonize", "no")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		})
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second)
			if err == nil {
				rc := &respConn{c: c, r: bufio.NewReader(c)}
				t.Cleanup(func() { c.Close() })
				if bytes.Equal(rc.do("PING"), []byte("+PONG\r\n")) {
					return rc
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
		_ = cmd.Process.Kill()
	}
	t.Fatal("could not start redis-server")
	return nil
}

// respConn is a minimal RESP2 client returning raw reply bytes.
type respConn struct {
	c net.Conn
	r *bufio.Reader
}

func (rc *respConn) do(args ...string) []byte {
	return rc.call(toBytes(args))
}

func (rc *respConn) call(args [][]byte) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n", len(a))
		b.Write(a)
		b.WriteString("\r\n")
	}
	_ = rc.c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := rc.c.Write(b.Bytes()); err != nil {
		return []byte("-CONN " + err.Error() + "\r\n")
	}
	var out bytes.Buffer
	if err := readReply(rc.r, &out); err != nil {
		return []byte("-CONN " + err.Error() + "\r\n")
	}
	return out.Bytes()
}

func readReply(r *bufio.Reader, out *bytes.Buffer) error {
	line, err := r.ReadBytes('\n')
	if err != nil {
		return err
	}
	out.Write(line)
	if len(line) < 3 {
		return fmt.Errorf("short line %q", line)
	}
	n, _ := strconv.Atoi(string(line[1 : len(line)-2]))
	switch line[0] {
	case '$':
		if n >= 0 {
			buf := make([]byte, n+2)
			if _, err := ioReadFull(r, buf); err != nil {
				return err
			}
			out.Write(buf)
		}
	case '*':
		for i := 0; i < n; i++ {
			if err := readReply(r, out); err != nil {
				return err
			}
		}
	}
	return nil
}

func ioReadFull(r *bufio.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}
