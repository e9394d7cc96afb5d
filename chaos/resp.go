package chaos

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// The harness speaks RESP itself for PING and ROLE: lifecycle checks must not
// depend on a client library's handshake (HELLO, CLIENT SETINFO, retries),
// which is exactly the kind of thing the product under test may get wrong
// while it is being written.

// RespError is an error reply ("-ERR ...") from the server.
type RespError string

func (e RespError) Error() string { return string(e) }

// respDo sends one command on a fresh connection (after AUTH when pass is
// set) and reads its reply. Replies come back as string (simple/bulk), nil
// (nil bulk/array), int64, []any (arrays) or a RespError.
func respDo(addr, pass string, timeout time.Duration, args ...string) (any, error) {
	conn, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(timeout))
	var b strings.Builder
	if pass != "" {
		encode(&b, "AUTH", pass)
	}
	encode(&b, args...)
	if _, err := conn.Write([]byte(b.String())); err != nil {
		return nil, err
	}
	r := bufio.NewReader(conn)
	if pass != "" {
		rep, err := readReply(r)
		if err != nil {
			return nil, err
		}
		if e, ok := rep.(RespError); ok {
			return nil, fmt.Errorf("AUTH: %w", e)
		}
	}
	return readReply(r)
}

func encode(b *strings.Builder, args ...string) {
	fmt.Fprintf(b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(b, "$%d\r\n%s\r\n", len(a), a)
	}
}

func readReply(r *bufio.Reader) (any, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	if len(line) < 3 || !strings.HasSuffix(line, "\r\n") {
		return nil, fmt.Errorf("bad RESP line %q", line)
	}
	body := line[1 : len(line)-2]
	switch line[0] {
	case '+':
		return body, nil
	case '-':
		return RespError(body), nil
	case ':':
		return strconv.ParseInt(body, 10, 64)
	case '$':
		n, err := strconv.Atoi(body)
		if err != nil || n < 0 {
			return nil, err
		}
		buf := make([]byte, n+2)
		if _, err := ioReadFull(r, buf); err != nil {
			return nil, err
		}
		return string(buf[:n]), nil
	case '*':
		n, err := strconv.Atoi(body)
		if err != nil || n < 0 {
			return nil, err
		}
		out := make([]any, n)
		for i := range out {
			if out[i], err = readReply(r); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("unexpected RESP type %q", line[0])
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

// role asks a node for its Raft role: "master" or "slave" (the first element
// of ROLE), and for a slave the client address of the leader it follows
// ("" when it knows none).
func role(addr, pass string, timeout time.Duration) (string, string, error) {
	rep, err := respDo(addr, pass, timeout, "ROLE")
	if err != nil {
		return "", "", err
	}
	if e, ok := rep.(RespError); ok {
		return "", "", e
	}
	arr, ok := rep.([]any)
	if !ok || len(arr) == 0 {
		return "", "", errors.New("ROLE: not an array")
	}
	r, _ := arr[0].(string)
	if r != "slave" || len(arr) < 3 {
		return r, "", nil
	}
	host, _ := arr[1].(string)
	port, _ := arr[2].(int64)
	if host == "" || port <= 0 {
		return r, "", nil
	}
	return r, net.JoinHostPort(host, strconv.FormatInt(port, 10)), nil
}

func ping(addr, pass string, timeout time.Duration) error {
	rep, err := respDo(addr, pass, timeout, "PING")
	if err != nil {
		return err
	}
	if rep != "PONG" {
		return fmt.Errorf("PING answered %v", rep)
	}
	return nil
}
