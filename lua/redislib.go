package lua

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"log/slog"
	"strings"

	glua "github.com/yuin/gopher-lua"
)

// The redis.* library, after Redis 7.0's script_lua.c.

type cmdInfo struct {
	arity    int
	noscript bool
}

// containers are the commands whose second argument names a subcommand.
var containers = func() map[string]bool {
	m := make(map[string]bool)
	for k := range redisCommands {
		if parent, _, ok := strings.Cut(k, "|"); ok {
			m[parent] = true
		}
	}
	return m
}()

// Redis reports these texts through luaPushError, i.e. as {err="ERR ..."}.
const (
	errNoArgs     = "Please specify at least one argument for this redis lib call"
	errArgTypes   = "Lua redis lib command arguments must be strings or integers"
	errUnknownCmd = "Unknown Redis command called from script"
	errArity      = "Wrong number of args calling Redis command from script"
	errNoScript   = "This Redis command is not allowed from script"
)

func (e *engine) openRedis() *glua.LTable {
	L := e.L
	t := L.NewTable()
	e.register(t, map[string]glua.LGFunction{
		"call":               func(L *glua.LState) int { return e.redisCall(L, true) },
		"pcall":              func(L *glua.LState) int { return e.redisCall(L, false) },
		"error_reply":        e.rErrorReply,
		"status_reply":       e.rStatusReply,
		"sha1hex":            e.rSha1hex,
		"log":                e.rLog,
		"setresp":            e.rSetresp,
		"set_repl":           e.rSetRepl,
		"replicate_commands": func(L *glua.LState) int { L.Push(glua.LTrue); return 1 },
		"breakpoint":         func(L *glua.LState) int { L.Push(glua.LFalse); return 1 },
		"debug":              func(L *glua.LState) int { return 0 },
		"acl_check_cmd":      e.rACLCheckCmd,
	})
	// Constants, in a fixed order (insertion order is iteration order).
	t.RawSetString("LOG_DEBUG", glua.LNumber(0))
	t.RawSetString("LOG_VERBOSE", glua.LNumber(1))
	t.RawSetString("LOG_NOTICE", glua.LNumber(2))
	t.RawSetString("LOG_WARNING", glua.LNumber(3))
	t.RawSetString("REPL_NONE", glua.LNumber(0))
	t.RawSetString("REPL_AOF", glua.LNumber(1))
	t.RawSetString("REPL_SLAVE", glua.LNumber(2))
	t.RawSetString("REPL_REPLICA", glua.LNumber(2))
	t.RawSetString("REPL_ALL", glua.LNumber(3))
	t.RawSetString("REDIS_VERSION", glua.LString("7.0.15"))
	t.RawSetString("REDIS_VERSION_NUM", glua.LNumber(0x07000f))
	return t
}

// pushError is luaPushError: a {err="ERR msg"} table.
func (e *engine) pushError(L *glua.LState, msg string) *glua.LTable {
	return e.errorTable(L, msg, false)
}

// redisCall is luaRedisGenericCommand. raise selects redis.call (errors are
// raised) over redis.pcall (errors are returned as {err=...}).
func (e *engine) redisCall(L *glua.LState, raise bool) int {
	fail := func(t *glua.LTable) int {
		if raise {
			L.Error(t, 0)
		}
		L.SetTop(0)
		L.Push(t)
		return 1
	}
	argc := L.GetTop()
	if argc == 0 {
		return fail(e.pushError(L, errNoArgs))
	}
	// The arguments are copied back to back into one buffer, each capped
	// at its own length so that a Caller appending to one cannot reach the
	// next.
	n := 0
	for i := 1; i <= argc; i++ {
		switch v := L.Get(i).(type) {
		case glua.LString:
			n += len(v)
		case glua.LNumber:
			n += 24 // %.17g: "-1.2345678901234567e+308"
		default:
			return fail(e.pushError(L, errArgTypes))
		}
	}
	args := make([][]byte, argc)
	buf := make([]byte, 0, n)
	for i := 1; i <= argc; i++ {
		start := len(buf)
		switch v := L.Get(i).(type) {
		case glua.LString:
			buf = append(buf, v...)
		case glua.LNumber:
			// Redis formats numbers with %.17g (lua_tolstring would lose
			// precision).
			buf = append(buf, fmtDouble17(float64(v))...)
		}
		args[i-1] = buf[start:len(buf):len(buf)]
	}
	size := int64(len(buf))
	r := e.run
	r.chargeL(L, size)
	if msg := checkCommand(args); msg != "" {
		t := e.pushError(L, msg)
		t.RawSetString("ignore_error_stats_update", glua.LTrue)
		return fail(t)
	}
	var reply []byte
	if r.call != nil {
		reply = r.call(args)
	} else {
		reply = []byte("-ERR no data store attached\r\n")
	}
	r.chargeL(L, int64(len(reply)))
	r.stepL(L, int64(len(reply))/64+1)
	if bytes.HasPrefix(reply, []byte("-ERR unknown command ")) {
		// Our server may lack a command real Redis has: say what Redis
		// says about commands it does not know.
		reply = []byte("-ERR " + errUnknownCmd + "\r\n")
	}
	v, isErr, _ := e.parseReply(L, reply)
	if isErr && raise {
		L.Error(v, 0)
	}
	L.SetTop(0)
	L.Push(v)
	return 1
}

// checkCommand is scriptCall's lookup, arity and noscript checks.
func checkCommand(args [][]byte) string {
	var buf [64]byte
	key := appendLower(buf[:0], args[0])
	if containers[string(key)] && len(args) >= 2 {
		key = append(key, '|')
		key = appendLower(key, args[1])
	}
	info, ok := redisCommands[string(key)] // no allocation for the lookup
	if !ok {
		return errUnknownCmd
	}
	n := len(args)
	if (info.arity > 0 && info.arity != n) || n < -info.arity {
		return errArity
	}
	if info.noscript {
		return errNoScript
	}
	return ""
}

func (e *engine) rErrorReply(L *glua.LState) int {
	s, ok := L.Get(1).(glua.LString)
	if L.GetTop() != 1 || !ok {
		L.Push(e.pushError(L, "wrong number or type of arguments"))
		return 1
	}
	msg := string(s)
	if !strings.HasPrefix(msg, "-") {
		msg = "-" + msg
	}
	L.Push(e.errorTable(L, msg, false))
	return 1
}

func (e *engine) rStatusReply(L *glua.LState) int {
	s, ok := L.Get(1).(glua.LString)
	if L.GetTop() != 1 || !ok {
		L.Push(e.pushError(L, "wrong number or type of arguments"))
		return 1
	}
	t := L.CreateTable(0, 1)
	t.RawSetString("ok", s)
	L.Push(t)
	return 1
}

func (e *engine) rSha1hex(L *glua.LState) int {
	if L.GetTop() != 1 {
		L.Error(e.pushError(L, "wrong number of arguments"), 0)
	}
	sum := sha1.Sum([]byte(luaToString(L.Get(1))))
	L.Push(glua.LString(hex.EncodeToString(sum[:])))
	return 1
}

// rLog logs through slog. It runs on every node, like Redis's log on every
// replica running the script; the level numbers are Redis's.
func (e *engine) rLog(L *glua.LState) int {
	argc := L.GetTop()
	if argc < 2 {
		L.Error(e.pushError(L, "redis.log() requires two arguments or more."), 0)
	}
	lv, ok := L.Get(1).(glua.LNumber)
	if !ok {
		if s, isStr := L.Get(1).(glua.LString); isStr {
			f, good := str2number(string(s))
			lv, ok = glua.LNumber(f), good
		}
	}
	if !ok {
		L.Error(e.pushError(L, "First argument must be a number (log level)."), 0)
	}
	if lv < 0 || lv > 3 {
		L.Error(e.pushError(L, "Invalid debug level."), 0)
	}
	parts := make([]string, 0, argc-1)
	for i := 2; i <= argc; i++ {
		if v := L.Get(i); stringLike(v) {
			parts = append(parts, luaToString(v))
		}
	}
	level := []slog.Level{slog.LevelDebug, slog.LevelDebug, slog.LevelInfo, slog.LevelWarn}[int(lv)]
	slog.Default().Log(context.Background(), level, strings.Join(parts, " "), "source", "lua")
	return 0
}

// rSetresp accepts RESP2 only: Callers reply in RESP2, so RESP3 conversions
// (maps, doubles, ...) cannot be offered faithfully.
func (e *engine) rSetresp(L *glua.LState) int {
	if L.GetTop() != 1 {
		L.Error(e.pushError(L, "redis.setresp() requires one argument."), 0)
	}
	n := toInteger(luaToNumber(L.Get(1)))
	if n != 2 && n != 3 {
		L.Error(e.pushError(L, "RESP version must be 2 or 3."), 0)
	}
	if n == 3 {
		L.Error(e.pushError(L, "RESP3 is not supported in scripts by this server."), 0)
	}
	return 0
}

func (e *engine) rSetRepl(L *glua.LState) int {
	if L.GetTop() != 1 {
		L.Error(e.pushError(L, "redis.set_repl() requires one argument."), 0)
	}
	flags := toInteger(luaToNumber(L.Get(1)))
	if flags&^3 != 0 {
		L.Error(e.pushError(L, "Invalid replication flags. Use REPL_AOF, REPL_REPLICA, REPL_ALL or REPL_NONE."), 0)
	}
	return 0
}

// rACLCheckCmd knows no users: a command that exists is allowed.
func (e *engine) rACLCheckCmd(L *glua.LState) int {
	argc := L.GetTop()
	if argc == 0 {
		L.Error(e.pushError(L, errNoArgs), 0)
	}
	args := make([][]byte, argc)
	for i := 1; i <= argc; i++ {
		v := L.Get(i)
		if !stringLike(v) {
			L.Error(e.pushError(L, errArgTypes), 0)
		}
		args[i-1] = []byte(luaToString(v))
	}
	if msg := checkCommand(args); msg == errUnknownCmd || msg == errArity {
		L.Error(e.pushError(L, "Invalid command passed to redis.acl_check_cmd()"), 0)
	}
	L.Push(glua.LTrue)
	return 1
}

// luaToNumber is lua_tonumber: numbers, numeric strings, else 0.
func luaToNumber(v glua.LValue) float64 {
	switch v := v.(type) {
	case glua.LNumber:
		return float64(v)
	case glua.LString:
		f, _ := str2number(string(v))
		return f
	}
	return 0
}

func appendLower(b, s []byte) []byte {
	for _, c := range s {
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		b = append(b, c)
	}
	return b
}
