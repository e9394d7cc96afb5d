package fsm

import "strconv"

// Replies are built as RESP2 bytes right where a command runs. A reply is then
// the same bytes on every node, relays from leader to follower verbatim, and
// needs no intermediate representation on the hot path.

// AppendStatus appends a simple string reply (+OK).
func AppendStatus(b []byte, s string) []byte {
	b = append(b, '+')
	b = append(b, s...)
	return append(b, '\r', '\n')
}

// AppendError appends an error reply; msg starts with its code ("ERR ...").
func AppendError(b []byte, msg string) []byte {
	b = append(b, '-')
	b = append(b, msg...)
	return append(b, '\r', '\n')
}

// AppendInt appends an integer reply.
func AppendInt(b []byte, n int64) []byte {
	b = append(b, ':')
	b = strconv.AppendInt(b, n, 10)
	return append(b, '\r', '\n')
}

// AppendBulk appends a bulk string reply.
func AppendBulk(b []byte, s []byte) []byte {
	b = append(b, '$')
	b = strconv.AppendInt(b, int64(len(s)), 10)
	b = append(b, '\r', '\n')
	b = append(b, s...)
	return append(b, '\r', '\n')
}

// AppendBulkString appends a bulk string reply from a string.
func AppendBulkString(b []byte, s string) []byte {
	b = append(b, '$')
	b = strconv.AppendInt(b, int64(len(s)), 10)
	b = append(b, '\r', '\n')
	b = append(b, s...)
	return append(b, '\r', '\n')
}

// AppendNull appends the RESP2 nil bulk string.
func AppendNull(b []byte) []byte { return append(b, "$-1\r\n"...) }

// AppendNullArray appends the RESP2 nil array.
func AppendNullArray(b []byte) []byte { return append(b, "*-1\r\n"...) }

// AppendArray appends an array header of n elements.
func AppendArray(b []byte, n int) []byte {
	b = append(b, '*')
	b = strconv.AppendInt(b, int64(n), 10)
	return append(b, '\r', '\n')
}

// Reply texts shared by many commands, exactly as Redis words them.
const (
	ErrSyntax       = "ERR syntax error"
	ErrNotInteger   = "ERR value is not an integer or out of range"
	ErrWrongType    = "WRONGTYPE Operation against a key holding the wrong kind of value"
	ErrOverflow     = "ERR increment or decrement would overflow"
	ErrNoSuchKey    = "ERR no such key"
	ErrDBIndex      = "ERR DB index is out of range"
	ErrNotFloat     = "ERR value is not a valid float"
	ErrInvalidCount = "ERR value is out of range, must be positive"
)

// ErrArity is Redis's reply to a command called with the wrong number of arguments.
func ErrArity(name string) string {
	return "ERR wrong number of arguments for '" + name + "' command"
}
