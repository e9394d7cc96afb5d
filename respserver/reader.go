package respserver

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strconv"
)

// Limits on what a client may send, with Redis's defaults and error texts.
const (
	inlineMax = 64 << 10 // PROTO_INLINE_MAX_SIZE
	maxArgs   = 1<<31 - 1
)

// protocolError is answered with "-ERR Protocol error: <msg>" and then the
// connection is closed, as Redis does.
type protocolError struct{ msg string }

func (e *protocolError) Error() string { return "Protocol error: " + e.msg }

// reader parses client commands: RESP multibulk or inline.
type reader struct {
	r       *bufio.Reader
	maxBulk int64
	maxArgs int64
	// unauthenticated clients may send only small commands, as in Redis:
	// a password-protected server must not buffer a stranger's gigabyte.
	unauthenticated bool
}

// Redis's limits before AUTH.
const (
	unauthMaxArgs = 10
	unauthMaxBulk = 16384
)

func newReader(r io.Reader, maxBulk int64) *reader {
	return &reader{r: bufio.NewReaderSize(r, inlineMax), maxBulk: maxBulk, maxArgs: maxArgs}
}

// complete reports whether a whole command is already buffered, so that
// serving it with the current batch cannot block on a client that is still
// sending it (replies to earlier commands would be held back meanwhile).
func (rd *reader) complete() bool {
	n := rd.r.Buffered()
	if n == 0 {
		return false
	}
	b, _ := rd.r.Peek(n)
	if b[0] != '*' {
		return bytes.IndexByte(b, '\n') >= 0
	}
	line, rest, ok := cutLine(b)
	if !ok {
		return false
	}
	count, err := strconv.ParseInt(string(line[1:]), 10, 64)
	if err != nil {
		return true // malformed: let readCommand report it
	}
	for i := int64(0); i < count; i++ {
		if line, rest, ok = cutLine(rest); !ok {
			return false
		}
		size, err := strconv.ParseInt(string(line[min(1, len(line)):]), 10, 64)
		if err != nil || size < 0 {
			return true
		}
		if int64(len(rest)) < size+2 {
			return false
		}
		rest = rest[size+2:]
	}
	return true
}

func cutLine(b []byte) (line, rest []byte, ok bool) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return nil, nil, false
	}
	return bytes.TrimSuffix(b[:i], []byte{'\r'}), b[i+1:], true
}

// readCommand returns the next command's arguments. Empty commands (a blank
// inline line, "*0") are skipped as Redis skips them.
func (rd *reader) readCommand() ([][]byte, error) {
	for {
		b, err := rd.r.Peek(1)
		if err != nil {
			return nil, err
		}
		var args [][]byte
		if b[0] == '*' {
			args, err = rd.readMultibulk()
		} else {
			args, err = rd.readInline()
		}
		if err != nil || len(args) > 0 {
			return args, err
		}
	}
}

func (rd *reader) readLine(tooBig string) ([]byte, error) {
	line, err := rd.r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		return nil, &protocolError{tooBig}
	}
	if err != nil {
		return nil, err
	}
	line = line[:len(line)-1]
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	return line, nil
}

func (rd *reader) readMultibulk() ([][]byte, error) {
	line, err := rd.readLine("too big mbulk count string")
	if err != nil {
		return nil, err
	}
	n, err := strconv.ParseInt(string(line[1:]), 10, 64)
	if err != nil || n > rd.maxArgs {
		return nil, &protocolError{"invalid multibulk length"}
	}
	if n <= 0 {
		return nil, nil
	}
	if rd.unauthenticated && n > unauthMaxArgs {
		return nil, &protocolError{"unauthenticated multibulk length"}
	}
	// Grow with the data actually received, not with what the header claims.
	args := make([][]byte, 0, min(n, 1024))
	for i := int64(0); i < n; i++ {
		line, err := rd.readLine("too big bulk count string")
		if err != nil {
			return nil, err
		}
		if len(line) == 0 || line[0] != '$' {
			got := "\\x00"
			if len(line) > 0 {
				got = string(line[0])
			}
			return nil, &protocolError{"expected '$', got '" + got + "'"}
		}
		size, err := strconv.ParseInt(string(line[1:]), 10, 64)
		if err != nil || size < 0 || size > rd.maxBulk {
			return nil, &protocolError{"invalid bulk length"}
		}
		if rd.unauthenticated && size > unauthMaxBulk {
			return nil, &protocolError{"unauthenticated bulk length"}
		}
		arg, err := rd.readBulk(size)
		if err != nil {
			return nil, err
		}
		args = append(args, arg)
	}
	return args, nil
}

// readBulk reads size bytes and the CRLF after them, allocating as the
// bytes arrive so a huge announced length costs nothing until it is sent.
func (rd *reader) readBulk(size int64) ([]byte, error) {
	const chunk = 1 << 20
	buf := make([]byte, 0, min(size, chunk))
	for int64(len(buf)) < size {
		want := min(size-int64(len(buf)), chunk)
		start := len(buf)
		buf = append(buf, make([]byte, want)...)
		if _, err := io.ReadFull(rd.r, buf[start:]); err != nil {
			return nil, unexpected(err)
		}
	}
	if _, err := rd.r.Discard(2); err != nil { // Redis skips the CRLF unchecked
		return nil, unexpected(err)
	}
	return buf, nil
}

func unexpected(err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return io.EOF
	}
	return err
}

func (rd *reader) readInline() ([][]byte, error) {
	line, err := rd.readLine("too big inline request")
	if err != nil {
		return nil, err
	}
	args, ok := splitArgs(line)
	if !ok {
		return nil, &protocolError{"unbalanced quotes in request"}
	}
	return args, nil
}

// splitArgs is Redis's sdssplitargs: spaces separate arguments; "..."
// supports \n \r \t \b \a \\ \" and \xHH escapes; '...' supports \'.
func splitArgs(line []byte) ([][]byte, bool) {
	var args [][]byte
	p := 0
	for {
		for p < len(line) && isSpace(line[p]) {
			p++
		}
		if p >= len(line) {
			return args, true
		}
		var cur []byte
		inq, insq := false, false
		for done := false; !done; {
			if inq {
				switch {
				case p >= len(line):
					return nil, false
				case line[p] == '\\' && p+3 < len(line) && line[p+1] == 'x' && isHex(line[p+2]) && isHex(line[p+3]):
					cur = append(cur, hexVal(line[p+2])*16+hexVal(line[p+3]))
					p += 3
				case line[p] == '\\' && p+1 < len(line):
					p++
					c := line[p]
					switch c {
					case 'n':
						c = '\n'
					case 'r':
						c = '\r'
					case 't':
						c = '\t'
					case 'b':
						c = '\b'
					case 'a':
						c = '\a'
					}
					cur = append(cur, c)
				case line[p] == '"':
					if p+1 < len(line) && !isSpace(line[p+1]) {
						return nil, false // closing quote must be followed by a space
					}
					done = true
				default:
					cur = append(cur, line[p])
				}
			} else if insq {
				switch {
				case p >= len(line):
					return nil, false
				case line[p] == '\\' && p+1 < len(line) && line[p+1] == '\'':
					p++
					cur = append(cur, '\'')
				case line[p] == '\'':
					if p+1 < len(line) && !isSpace(line[p+1]) {
						return nil, false
					}
					done = true
				default:
					cur = append(cur, line[p])
				}
			} else {
				switch {
				case p >= len(line) || isSpace(line[p]):
					done = true
				case line[p] == '"':
					inq = true
				case line[p] == '\'':
					insq = true
				default:
					cur = append(cur, line[p])
				}
			}
			if p < len(line) {
				p++
			}
		}
		if cur == nil {
			cur = []byte{}
		}
		args = append(args, cur)
	}
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\n' || c == '\r' || c == '\t' || c == '\v' || c == '\f'
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

func hexVal(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}
