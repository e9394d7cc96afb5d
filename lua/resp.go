package lua

import (
	"bytes"
	"math"
	"strconv"
	"strings"

	glua "github.com/yuin/gopher-lua"
)

// --- Lua -> RESP2 (luaReplyToRedisReply in Redis 7.0's script_lua.c) -------

// luaMaxCStack mirrors LUAI_MAXCSTACK: Redis checks lua_checkstack(4) before
// converting each value, so deeply nested (or self-referencing) tables end in
// an "-ERR reached lua stack limit" element at the same depth as Redis.
const luaMaxCStack = 8000

// appendReply converts v like Redis does. stack approximates the Lua stack
// slots in use (Redis: error handler + returned value at the top level).
func (e *engine) appendReply(b []byte, v glua.LValue, stack int) []byte {
	if stack == 0 {
		stack = 2
	}
	if stack+4 > luaMaxCStack {
		return appendError(b, "ERR reached lua stack limit")
	}
	switch v := v.(type) {
	case glua.LString:
		return appendBulk(b, string(v))
	case glua.LNumber:
		return appendInt(b, ':', toInteger(float64(v)))
	case glua.LBool:
		if v {
			return append(b, ":1\r\n"...)
		}
		return append(b, "$-1\r\n"...)
	case *glua.LTable:
		return e.appendTableReply(b, v, stack)
	}
	return append(b, "$-1\r\n"...)
}

func (e *engine) appendTableReply(b []byte, t *glua.LTable, stack int) []byte {
	if _, ok := t.RawGetString("err").(glua.LString); ok {
		return appendError(b, errFieldMsg(e, t))
	}
	if s, ok := t.RawGetString("ok").(glua.LString); ok {
		b = append(b, '+')
		b = append(b, noNewlines(string(s))...)
		return append(b, "\r\n"...)
	}
	if d, ok := t.RawGetString("double").(glua.LNumber); ok {
		return appendBulk(b, fmtDouble17(float64(d)))
	}
	if s, ok := t.RawGetString("big_number").(glua.LString); ok {
		return appendBulk(b, noNewlines(string(s)))
	}
	if vt, ok := t.RawGetString("verbatim_string").(*glua.LTable); ok {
		if s, ok := vt.RawGetString("string").(glua.LString); ok {
			if _, ok := vt.RawGetString("format").(glua.LString); ok {
				return appendBulk(b, string(s))
			}
		}
	}
	if m, ok := t.RawGetString("map").(*glua.LTable); ok {
		keys := e.tableOrder(m)
		b = appendInt(b, '*', int64(2*len(keys)))
		for _, k := range keys {
			b = e.appendReply(b, k, stack+4)
			b = e.appendReply(b, m.RawGet(k), stack+3)
		}
		return b
	}
	if s, ok := t.RawGetString("set").(*glua.LTable); ok {
		keys := e.tableOrder(s)
		b = appendInt(b, '*', int64(len(keys)))
		for _, k := range keys {
			b = e.appendReply(b, k, stack+3)
		}
		return b
	}
	// Array: elements 1..n up to the first nil (rawget, like Redis).
	n := 0
	for t.RawGetInt(n+1) != glua.LNil {
		n++
	}
	b = appendInt(b, '*', int64(n))
	for i := 1; i <= n; i++ {
		b = e.appendReply(b, t.RawGetInt(i), stack+1)
	}
	return b
}

// errFieldMsg is luaExtractErrorInformation's msg: the "err" field (read
// with metamethods in Redis; raw here, which only differs for tables that
// play games with __index on error objects).
func errFieldMsg(e *engine, t *glua.LTable) string {
	switch v := t.RawGetString("err").(type) {
	case glua.LString:
		return string(v)
	case glua.LNumber:
		return fmtNumber(float64(v))
	}
	return ""
}

// noNewlines mirrors Redis's sanitising of status and error replies.
func noNewlines(s string) string {
	if strings.IndexAny(s, "\r\n") < 0 {
		return s
	}
	return strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return ' '
		}
		return r
	}, s)
}

// appendError writes "-msg\r\n" (msg without the leading '-').
func appendError(b []byte, msg string) []byte {
	b = append(b, '-')
	b = append(b, noNewlines(msg)...)
	return append(b, "\r\n"...)
}

func appendBulk(b []byte, s string) []byte {
	b = appendInt(b, '$', int64(len(s)))
	b = append(b, s...)
	return append(b, "\r\n"...)
}

func appendInt(b []byte, prefix byte, n int64) []byte {
	b = append(b, prefix)
	b = strconv.AppendInt(b, n, 10)
	return append(b, "\r\n"...)
}

// toInteger is C's (long long) cast of a double as compiled on x86-64:
// truncation, and LLONG_MIN for NaN and out-of-range values. Spelled out so
// that every node agrees whatever its CPU.
func toInteger(f float64) int64 {
	if f != f || f >= 9223372036854775808.0 || f < -9223372036854775808.0 {
		return math.MinInt64
	}
	return int64(f)
}

// --- RESP2 -> Lua (redisProtocolToLuaType) ----------------------------------

// parseReply converts one Caller reply. It returns the value, whether it was
// an error reply, and the number of bytes consumed.
func (e *engine) parseReply(L *glua.LState, p []byte) (glua.LValue, bool, int) {
	if len(p) < 3 {
		return glua.LFalse, false, len(p)
	}
	line, rest := cutLine(p[1:])
	hdr := 1 + len(line) + 2
	switch p[0] {
	case '+':
		t := L.CreateTable(0, 1)
		t.RawSetString("ok", glua.LString(line))
		return t, false, hdr
	case '-':
		return e.errorTable(L, "-"+string(line), true), true, hdr
	case ':':
		n, _ := strconv.ParseInt(string(line), 10, 64)
		return glua.LNumber(n), false, hdr
	case ',': // RESP3 double, should a Caller send one
		f, _ := strconv.ParseFloat(string(line), 64)
		return glua.LNumber(f), false, hdr
	case '#':
		return glua.LBool(len(line) > 0 && line[0] == 't'), false, hdr
	case '_':
		return glua.LFalse, false, hdr
	case '$':
		n, _ := strconv.Atoi(string(line))
		if n < 0 {
			return glua.LFalse, false, hdr
		}
		if n > len(rest) {
			n = len(rest)
		}
		return glua.LString(rest[:n]), false, hdr + n + 2
	case '*', '~', '>':
		n, _ := strconv.Atoi(string(line))
		if n < 0 {
			return glua.LFalse, false, hdr
		}
		t := L.CreateTable(min(n, 1024), 0)
		off := hdr
		for i := 1; i <= n && off < len(p); i++ {
			v, _, used := e.parseReply(L, p[off:])
			t.RawSetInt(i, v)
			off += used
		}
		return t, false, off
	}
	return glua.LFalse, false, len(p)
}

func cutLine(p []byte) ([]byte, []byte) {
	i := bytes.Index(p, []byte("\r\n"))
	if i < 0 {
		return p, nil
	}
	return p[:i], p[i+2:]
}

// errorTable is luaPushErrorBuff: "-CODE msg" becomes {err="CODE msg"}, a
// message without a code gets "ERR". fromCommand adds the
// ignore_error_stats_update flag Redis sets on errors returned by commands.
func (e *engine) errorTable(L *glua.LState, s string, fromCommand bool) *glua.LTable {
	var code, msg string
	if strings.HasPrefix(s, "-") {
		if i := strings.IndexByte(s, ' '); i < 0 {
			code, msg = "ERR", s[1:]
		} else {
			code, msg = s[1:i], s[i+1:]
		}
	} else {
		code, msg = "ERR", s
	}
	msg = strings.Trim(msg, "\r\n")
	t := L.CreateTable(0, 2)
	t.RawSetString("err", glua.LString(code+" "+msg))
	if fromCommand {
		t.RawSetString("ignore_error_stats_update", glua.LTrue)
	}
	return t
}
