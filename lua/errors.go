package lua

import (
	"strconv"
	"strings"

	glua "github.com/yuin/gopher-lua"
)

// Error handling follows Redis 7.0: the script runs under an error handler
// (__redis__err__handler) that turns any error into a table
// {err=..., source=..., line=...}; the reply is then
// "-<err> script: <sha>, on <source>:<line>." Runtime error texts produced by
// gopher-lua are rewritten into PUC Lua 5.1's wording while the failing
// frame is still on the stack (inside the handler), so variable names can be
// recovered exactly like ldebug.c does.

// where is luaL_where: "chunk:line: " for a Lua function at the given level
// (0 = the running function), "" otherwise.
func where(L *glua.LState, level int) string {
	if !layoutOK {
		return L.Where(level) + " "
	}
	f := curFrame(L)
	for ; level > 0 && f != nil; level-- {
		f = frameParent(f)
	}
	return frameWhere(f)
}

func frameWhere(f frame) string {
	if f == nil {
		return ""
	}
	fn := frameFn(f)
	if fn == nil || fn.IsG || fn.Proto == nil {
		return ""
	}
	line := frameLine(f)
	if line <= 0 {
		return ""
	}
	return fn.Proto.SourceName + ":" + strconv.Itoa(line) + ": "
}

func frameLine(f frame) int {
	fn := frameFn(f)
	if fn == nil || fn.IsG || fn.Proto == nil {
		return -1
	}
	pc := framePc(f) - 1
	if pc < 0 || pc >= len(fn.Proto.DbgSourcePositions) {
		return -1
	}
	return fn.Proto.DbgSourcePositions[pc]
}

// luaError raises msg with luaL_error's position prefix (level 1: the caller
// of the running Go function).
func luaError(L *glua.LState, msg string) {
	L.Error(glua.LString(where(L, 1)+msg), 0)
}

// rawError raises msg with no position, like luaG_runerror from C code.
func rawError(L *glua.LState, msg string) {
	L.Error(glua.LString(msg), 0)
}

// argError is luaL_argerror, including its "method" adjustment.
func argError(L *glua.LState, narg int, extra string) {
	name := "?"
	if layoutOK {
		kind, n := calledName(curFrame(L))
		if kind == "method" {
			narg--
			if narg == 0 {
				luaError(L, "calling '"+n+"' on bad self ("+extra+")")
			}
		}
		if kind != "" {
			name = n
		}
	}
	luaError(L, "bad argument #"+strconv.Itoa(narg)+" to '"+name+"' ("+extra+")")
}

func typeNameArg(L *glua.LState, n int) string {
	if n > L.GetTop() {
		return "no value"
	}
	return L.Get(n).Type().String()
}

func typeError(L *glua.LState, narg int, tname string) {
	argError(L, narg, tname+" expected, got "+typeNameArg(L, narg))
}

// --- the error handler ------------------------------------------------------

// translate rewrites a gopher-lua runtime error message raised in frame f
// into PUC Lua's text. Values other than strings pass through.
func (e *engine) translate(L *glua.LState, f frame, v glua.LValue) glua.LValue {
	s, ok := v.(glua.LString)
	if !ok || f == nil || !layoutOK {
		return v
	}
	msg := string(s)
	fn := frameFn(f)
	if fn == nil {
		return v
	}
	if fn.IsG {
		if out, ok := translateArgError(f, msg); ok {
			return glua.LString(out)
		}
		if strings.HasSuffix(msg, "can not yield from outside of a coroutine") {
			// lua_yield raises from C: no position.
			return glua.LString("attempt to yield across metamethod/C-call boundary")
		}
		return v
	}
	prefix := frameWhere(f)
	if prefix == "" || !strings.HasPrefix(msg, prefix) {
		return v
	}
	body := msg[len(prefix):]
	pc := framePc(f) - 1
	if pc < 0 || pc >= len(fn.Proto.Code) {
		return v
	}
	inst := fn.Proto.Code[pc]
	op := int(inst >> opShift)
	typeOf := func(reg int) string { return regValue(L, f, reg).Type().String() }
	described := func(what string, reg int) glua.LValue {
		if vi := varinfo(f, reg); vi != "" {
			return glua.LString(prefix + "attempt to " + what + vi + " (a " + typeOf(reg) + " value)")
		}
		return glua.LString(prefix + "attempt to " + what + " a " + typeOf(reg) + " value")
	}
	plain := func(what string, val glua.LValue) glua.LValue {
		return glua.LString(prefix + "attempt to " + what + " a " + val.Type().String() + " value")
	}
	switch {
	case body == "attempt to call a non-function object":
		switch op {
		case glua.OP_CALL, glua.OP_TAILCALL:
			return described("call", opA(inst))
		case glua.OP_TFORLOOP:
			return plain("call", regValue(L, f, opA(inst)))
		}
	case strings.HasPrefix(body, "attempt to index a non-table object("):
		switch op {
		case glua.OP_GETTABLE, glua.OP_GETTABLEKS, glua.OP_SELF:
			return described("index", opB(inst))
		case glua.OP_SETTABLE, glua.OP_SETTABLEKS:
			return described("index", opA(inst))
		}
	case strings.HasPrefix(body, "cannot perform concat operation"):
		if op == glua.OP_CONCAT {
			reg := concatBlame(L, f, opB(inst), opC(inst))
			return described("concatenate", reg)
		}
	case strings.HasPrefix(body, "cannot perform "):
		if op >= glua.OP_ADD && op <= glua.OP_POW {
			// luaG_aritherror blames the first operand that is not a number.
			b, c := opB(inst), opC(inst)
			bad := c
			if !numberLike(rk(L, f, fn.Proto, b)) {
				bad = b
			}
			if bad&bitRK != 0 {
				return plain("perform arithmetic on", rk(L, f, fn.Proto, bad))
			}
			return described("perform arithmetic on", bad)
		}
	case body == "__unm undefined" && op == glua.OP_UNM:
		return described("perform arithmetic on", opB(inst))
	case body == "__len undefined" && op == glua.OP_LEN:
		return described("get length of", opB(inst))
	case strings.HasPrefix(body, "attempt to compare "):
		t1, t2, ok := strings.Cut(strings.TrimPrefix(body, "attempt to compare "), " with ")
		if ok {
			// ldebug.c compares the third letters of the type names.
			if len(t1) > 2 && len(t2) > 2 && t1[2] == t2[2] {
				return glua.LString(prefix + "attempt to compare two " + t1 + " values")
			}
			return glua.LString(prefix + "attempt to compare " + t1 + " with " + t2)
		}
	case body == "for statement init must be a number":
		return glua.LString(prefix + "'for' initial value must be a number")
	case body == "for statement limit must be a number":
		return glua.LString(prefix + "'for' limit must be a number")
	case body == "for statement step must be a number":
		return glua.LString(prefix + "'for' step must be a number")
	case body == "registry overflow":
		return glua.LString(prefix + "stack overflow")
	case body == "too many recursions in gettable":
		return glua.LString(prefix + "loop in gettable")
	case body == "too many recursions in settable":
		return glua.LString(prefix + "loop in settable")
	}
	return v
}

// translateArgError rewrites gopher-lua's "bad argument #1 to rep (string
// expected, got nil)" into luaL_argerror's form, for library functions we
// kept from gopher-lua.
func translateArgError(gf frame, msg string) (string, bool) {
	i := strings.Index(msg, "bad argument #")
	if i < 0 {
		return "", false
	}
	prefix, rest := msg[:i], msg[i+len("bad argument #"):]
	numStr, rest, ok := strings.Cut(rest, " to ")
	if !ok {
		return "", false
	}
	narg, err := strconv.Atoi(numStr)
	if err != nil {
		return "", false
	}
	open := strings.Index(rest, " (")
	if open < 0 || !strings.HasSuffix(rest, ")") || strings.HasPrefix(rest, "'") {
		// Quoted names come from our own argError: already Lua's text.
		return "", false
	}
	extra := rest[open+2 : len(rest)-1]
	if strings.HasSuffix(extra, "got nil") && narg > frameNArgs(gf) {
		extra = strings.TrimSuffix(extra, "nil") + "no value"
	}
	name := "?"
	kind, n := calledName(gf)
	if kind == "method" {
		narg--
		if narg == 0 {
			return prefix + "calling '" + n + "' on bad self (" + extra + ")", true
		}
	}
	if kind != "" {
		name = n
	}
	return prefix + "bad argument #" + strconv.Itoa(narg) + " to '" + name + "' (" + extra + ")", true
}

func numberLike(v glua.LValue) bool {
	switch v := v.(type) {
	case glua.LNumber:
		return true
	case glua.LString:
		_, ok := str2number(string(v))
		return ok
	}
	return false
}

func stringLike(v glua.LValue) bool {
	switch v.(type) {
	case glua.LNumber, glua.LString:
		return true
	}
	return false
}

// concatBlame replays luaV_concat to find which operand of R(b)..R(c) Lua
// reports: the rightmost non-string operand, or the one before the last when
// the last two both fail.
func concatBlame(L *glua.LState, f frame, b, c int) int {
	if !stringLike(regValue(L, f, c)) {
		if c-1 >= b && !stringLike(regValue(L, f, c-1)) {
			return c - 1
		}
		return c
	}
	for r := c - 1; r >= b; r-- {
		if !stringLike(regValue(L, f, r)) {
			return r
		}
	}
	return c
}

// topHandler is the error handler for the script itself: Redis's
// __redis__err__handler followed by the message rewrite.
func (e *engine) topHandler(L *glua.LState) int {
	v := L.Get(1)
	var failing frame
	if layoutOK {
		failing = frameParent(curFrame(L))
	}
	v = e.translate(L, failing, v)
	L.Push(e.errInfo(L, v, failing))
	return 1
}

// errInfo builds Redis's error table from an error value raised in failing.
func (e *engine) errInfo(L *glua.LState, v glua.LValue, failing frame) *glua.LTable {
	t, ok := v.(*glua.LTable)
	if !ok {
		t = L.CreateTable(0, 3)
		t.RawSetString("err", glua.LString("ERR "+e.tostring(L, v)))
	}
	// Redis: getinfo(2) is the function that raised; if it is a C function
	// use its caller.
	lf := failing
	if lf != nil {
		if fn := frameFn(lf); fn == nil || fn.IsG {
			lf = frameParent(lf)
		}
	}
	if lf != nil {
		if fn := frameFn(lf); fn != nil && !fn.IsG && fn.Proto != nil {
			t.RawSetString("source", glua.LString(e.sourceOf(fn.Proto)))
			t.RawSetString("line", glua.LNumber(frameLine(lf)))
		}
	}
	return t
}

// sourceOf is the Lua "source" of a chunk: "@user_script" for the script,
// the chunk name given to loadstring/load otherwise.
func (e *engine) sourceOf(p *glua.FunctionProto) string {
	if p.SourceName == "user_script" {
		return "@user_script"
	}
	if r := e.run; r != nil {
		if s, ok := r.srcmap[p.SourceName]; ok {
			return s
		}
	}
	return p.SourceName
}

// errorReply renders the error table returned by the handler.
func (e *engine) errorReply(err error, sha string) []byte {
	aerr, ok := err.(*glua.ApiError)
	if !ok {
		return appendError(nil, "ERR "+err.Error())
	}
	t, ok := aerr.Object.(*glua.LTable)
	if !ok {
		return appendError(nil, "ERR "+aerr.Object.String())
	}
	msg := errFieldMsg(e, t)
	if msg == "" {
		// Redis 7.0 crashes on error tables without an err string; we
		// answer something sensible instead.
		msg = "ERR unknown error"
	}
	src, sok := t.RawGetString("source").(glua.LString)
	line := t.RawGetString("line")
	if sok && stringLike(line) {
		msg += " script: " + sha + ", on " + string(src) + ":" + luaToString(line) + "."
	}
	return appendError(nil, msg)
}

// errLine extracts the line of the error table returned by the handler.
func errLine(err error) int {
	if aerr, ok := err.(*glua.ApiError); ok {
		if t, ok := aerr.Object.(*glua.LTable); ok {
			if n, ok := t.RawGetString("line").(glua.LNumber); ok {
				return int(n)
			}
		}
	}
	return 0
}

// pcallHandler rewrites the message for pcall, which returns it to Lua.
func (e *engine) pcallHandler(L *glua.LState) int {
	var failing frame
	if layoutOK {
		failing = frameParent(curFrame(L))
	}
	L.Push(e.translate(L, failing, L.Get(1)))
	return 1
}
