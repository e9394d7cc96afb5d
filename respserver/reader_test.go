package respserver

import (
	"errors"
	"io"
	"net"
	"strings"
	"testing"
)

func parse(t *testing.T, in string, maxBulk int64) ([][]string, error) {
	t.Helper()
	rd := newReader(strings.NewReader(in), maxBulk)
	var out [][]string
	for {
		args, err := rd.readCommand()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return out, err
		}
		var s []string
		for _, a := range args {
			s = append(s, string(a))
		}
		out = append(out, s)
	}
}

func TestReaderParsesRESPAndInline(t *testing.T) {
	got, err := parse(t, "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*0\r\n\r\nSET a \"b c\\x41\\n\" 'd\\'e'\r\nPING\n", 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	want := [][]string{{"GET", "k"}, {"SET", "a", "b cA\n", "d'e"}, {"PING"}}
	if len(got) != len(want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	for i := range want {
		if strings.Join(got[i], "|") != strings.Join(want[i], "|") {
			t.Fatalf("command %d: got %q, want %q", i, got[i], want[i])
		}
	}
}

func TestReaderErrorsLikeRedis(t *testing.T) {
	cases := map[string]string{
		"*2\r\n$3\r\nGET\r\n$-5\r\n": "Protocol error: invalid bulk length",
		"*abc\r\n":                   "Protocol error: invalid multibulk length",
		"*1\r\n$11\r\nhello\r\n":     "", // incomplete: EOF, no error
		"*1\r\n$2000\r\n":            "Protocol error: invalid bulk length",
		"*1\r\nGET\r\n":              "Protocol error: expected '$', got 'G'",
		"SET a \"b\r\n":              "Protocol error: unbalanced quotes in request",
		strings.Repeat("x", 70000):   "Protocol error: too big inline request",
	}
	for in, want := range cases {
		_, err := parse(t, in, 1000)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != want {
			t.Errorf("%.30q: error %q, want %q", in, got, want)
		}
	}
}

func TestReaderUnauthenticatedLimits(t *testing.T) {
	for in, want := range map[string]string{
		"*11\r\n":          "Protocol error: unauthenticated multibulk length",
		"*1\r\n$16385\r\n": "Protocol error: unauthenticated bulk length",
	} {
		rd := newReader(strings.NewReader(in), 1<<20)
		rd.unauthenticated = true
		if _, err := rd.readCommand(); err == nil || err.Error() != want {
			t.Errorf("%q: %v, want %q", in, err, want)
		}
	}
}

// complete must say no while a command is still arriving, so a batch never
// blocks on it with earlier replies unsent.
func TestReaderComplete(t *testing.T) {
	cases := map[string]bool{
		"*1\r\n$4\r\nPING\r\n":            true,
		"*2\r\n$3\r\nGET\r\n":             false,
		"*2\r\n$3\r\nGET\r\n$3\r\nab":     false,
		"*2\r\n$3\r\nGET\r\n$2\r\nab\r\n": true,
		"PING":                            false,
		"PING\r\n":                        true,
	}
	for in, want := range cases {
		c1, c2 := net.Pipe()
		rd := newReader(c1, 1<<20)
		go func() { c2.Write([]byte(in)) }()
		rd.r.Peek(1)
		for rd.r.Buffered() < len(in) {
			rd.r.Peek(rd.r.Buffered() + 1)
		}
		if got := rd.complete(); got != want {
			t.Errorf("complete(%q) = %v, want %v", in, got, want)
		}
		c1.Close()
		c2.Close()
	}
}

func TestUnknownCommandText(t *testing.T) {
	got := unknownCommand([][]byte{[]byte("foo"), []byte("a"), []byte("b")})
	if want := "ERR unknown command 'foo', with args beginning with: 'a' 'b' "; got != want {
		t.Fatalf("%q, want %q", got, want)
	}
}
