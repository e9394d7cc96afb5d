package lua

import (
	"math"
	"strconv"
	"strings"

	glua "github.com/yuin/gopher-lua"
)

// Base library functions re-implemented after Lua 5.1's lbaselib.c, for
// Lua's exact behaviour and texts, the read-only protection, and
// determinism (tostring, collectgarbage, gcinfo, next/pairs order).

func (e *engine) openBase(G *glua.LTable) {
	e.register(G, map[string]glua.LGFunction{
		"assert":         e.bAssert,
		"collectgarbage": e.bCollectGarbage,
		"error":          e.bError,
		"gcinfo":         e.bGcinfo,
		"getmetatable":   e.bGetMetatable,
		"load":           e.bLoad,
		"loadstring":     e.bLoadString,
		"next":           e.bNext,
		"pcall":          e.bPcall,
		"rawset":         e.bRawset,
		"setmetatable":   e.bSetMetatable,
		"tonumber":       e.bToNumber,
		"tostring":       e.bToString,
		"unpack":         e.bUnpack,
		"xpcall":         e.bXpcall,
	})
	// pairs returns its own copy of next, as Lua's does.
	G.RawSetString("pairs", e.L.NewClosure(func(L *glua.LState) int {
		t := checkTable(L, 1)
		L.Push(L.Get(glua.UpvalueIndex(1)))
		L.Push(t)
		L.Push(glua.LNil)
		return 3
	}, e.L.NewFunction(e.bNext)))
}

// typeNames are type()'s results, boxed once.
var typeNames = func() (t [glua.LTChannel + 1]glua.LValue) {
	for i := range t {
		t[i] = glua.LString(glua.LValueType(i).String())
	}
	return t
}()

// bType is type() without boxing the name anew on every call: scripts call
// it in their inner loops.
func bType(L *glua.LState) int {
	checkAny(L, 1)
	L.Push(typeNames[L.Get(1).Type()])
	return 1
}

var gcOptions = []string{"stop", "restart", "collect", "count", "step", "setpause", "setstepmul"}

// bCollectGarbage reports the deterministic allocation count instead of the
// Go heap, and keeps pause/stepmul per run.
func (e *engine) bCollectGarbage(L *glua.LState) int {
	opt := optString(L, 1, "collect")
	known := false
	for _, o := range gcOptions {
		known = known || o == opt
	}
	if !known {
		argError(L, 1, "invalid option '"+opt+"'")
	}
	ex := optInt(L, 2, 0)
	r := e.run
	switch opt {
	case "count":
		L.Push(glua.LNumber(float64(r.mem) / 1024))
	case "step":
		L.Push(glua.LFalse)
	case "setpause":
		L.Push(glua.LNumber(r.gcPause()))
		r.gcpause = ex
	case "setstepmul":
		L.Push(glua.LNumber(r.gcStepMul()))
		r.gcstepmul = ex
	default:
		L.Push(glua.LNumber(0))
	}
	return 1
}

func (r *run) gcPause() int {
	if r.gcpause == 0 {
		return 200
	}
	return r.gcpause
}

func (r *run) gcStepMul() int {
	if r.gcstepmul == 0 {
		return 200
	}
	return r.gcstepmul
}

func (e *engine) bGcinfo(L *glua.LState) int {
	L.Push(glua.LNumber(e.run.mem / 1024))
	return 1
}

func (e *engine) bError(L *glua.LState) int {
	level := optInt(L, 2, 1)
	v := L.Get(1)
	if stringLike(v) && level > 0 {
		v = glua.LString(where(L, level) + luaToString(v))
	}
	L.Error(v, 0)
	return 0
}

func (e *engine) bGetMetatable(L *glua.LState) int {
	checkAny(L, 1)
	mt := L.GetMetatable(L.Get(1)) // honours __metatable
	if t, ok := mt.(*glua.LTable); ok && t == e.roMeta {
		mt = glua.LNil // library tables have no metatable in Redis
	}
	L.Push(mt)
	return 1
}

func (e *engine) bSetMetatable(L *glua.LState) int {
	t := checkTable(L, 1)
	switch L.Get(2).(type) {
	case *glua.LNilType, *glua.LTable:
	default:
		argError(L, 2, "nil or table expected")
	}
	if mt, ok := t.Metatable.(*glua.LTable); ok && !e.isProtected(t) && mt.RawGetString("__metatable") != glua.LNil {
		luaError(L, "cannot change a protected metatable")
	}
	e.checkWritable(L, t)
	t.Metatable = L.Get(2)
	L.SetTop(1)
	return 1
}

func (e *engine) bRawset(L *glua.LState) int {
	t := checkTable(L, 1)
	checkAny(L, 2)
	checkAny(L, 3)
	e.checkWritable(L, t)
	k := L.Get(2)
	switch kv := k.(type) {
	case *glua.LNilType:
		rawError(L, "table index is nil")
	case glua.LNumber:
		if kv != kv {
			rawError(L, "table index is NaN")
		}
	}
	e.chargeSet(L, t, k)
	if v := L.Get(3); v == glua.LNil && t.RawGet(k) == glua.LNil && arrayIndex(k) == 0 {
		e.run.recordNilKey(t, k)
	} else {
		t.RawSet(k, v)
	}
	L.SetTop(1)
	return 1
}

// chargeSet charges the memory a raw set may add (see stepCtx.settable).
func (e *engine) chargeSet(L *glua.LState, t *glua.LTable, k glua.LValue) {
	if n, ok := k.(glua.LNumber); ok && layoutOK {
		f := float64(n)
		if f >= 1 && f < float64(glua.MaxArrayIndex) && f == math.Trunc(f) {
			e.run.chargeL(L, (int64(f)-int64(tableArrayLen(t)))*slotCost)
			return
		}
	}
	if t.RawGet(k) == glua.LNil {
		e.run.chargeL(L, hashCost)
	}
}

func (e *engine) bToNumber(L *glua.LState) int {
	base := optInt(L, 2, 10)
	if base == 10 {
		checkAny(L, 1)
		switch v := L.Get(1).(type) {
		case glua.LNumber:
			L.Push(v)
			return 1
		case glua.LString:
			if f, ok := str2number(string(v)); ok {
				L.Push(glua.LNumber(f))
				return 1
			}
		}
		L.Push(glua.LNil)
		return 1
	}
	s := checkString(L, 1)
	if base < 2 || base > 36 {
		argError(L, 2, "base out of range")
	}
	if n, ok := strtoul(s, base); ok {
		L.Push(glua.LNumber(float64(n)))
	} else {
		L.Push(glua.LNil)
	}
	return 1
}

// strtoul mimics C's strtoul followed by Lua's "only trailing spaces" check.
func strtoul(s string, base int) (uint64, bool) {
	if i := strings.IndexByte(s, 0); i >= 0 {
		s = s[:i] // the C string ends there
	}
	i, neg := cNumberStart(s)
	if base == 16 && i+2 < len(s) && s[i] == '0' && s[i+1]|0x20 == 'x' && digitVal(s[i+2]) < 16 {
		i += 2
	}
	start := i
	var n uint64
	overflow := false
	for i < len(s) {
		d := digitVal(s[i])
		if d >= base {
			break
		}
		hi, lo := mulAdd(n, uint64(base), uint64(d))
		if hi {
			overflow = true
		}
		n = lo
		i++
	}
	if i == start {
		return 0, false
	}
	for i < len(s) && isSpace(s[i]) {
		i++
	}
	if i != len(s) {
		return 0, false
	}
	if overflow {
		return math.MaxUint64, true
	}
	if neg {
		n = -n
	}
	return n, true
}

func mulAdd(n, b, d uint64) (bool, uint64) {
	if n > (math.MaxUint64-d)/b {
		return true, 0
	}
	return false, n*b + d
}

func digitVal(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c|0x20 >= 'a' && c|0x20 <= 'z':
		return int(c|0x20-'a') + 10
	}
	return 99
}

func (e *engine) bToString(L *glua.LState) int {
	checkAny(L, 1)
	v := L.Get(1)
	if fn := L.GetMetaField(v, "__tostring"); fn != glua.LNil {
		L.Push(fn)
		L.Push(v)
		L.Call(1, 1)
		return 1
	}
	s := e.tostring(L, v)
	e.run.chargeL(L, int64(len(s)))
	L.Push(glua.LString(s))
	return 1
}

// tostring is luaB_tostring without metamethods. Tables, functions,
// coroutines and userdata are named by a per-run counter in order of first
// appearance instead of their address, so the text is the same everywhere.
func (e *engine) tostring(L *glua.LState, v glua.LValue) string {
	switch v := v.(type) {
	case glua.LString:
		return string(v)
	case glua.LNumber:
		return fmtNumber(float64(v))
	case glua.LBool:
		if v {
			return "true"
		}
		return "false"
	case *glua.LNilType:
		return "nil"
	case *glua.LUserData:
		if v == e.null {
			return "userdata: (nil)"
		}
	}
	id := e.objectID(v)
	return v.Type().String() + ": 0x" + strconv.FormatUint(0x10000000+id, 16)
}

func (e *engine) bUnpack(L *glua.LState) int {
	t := checkTable(L, 1)
	i := optInt(L, 2, 1)
	var last int
	if L.Get(3) == glua.LNil {
		last = t.Len()
	} else {
		last = checkInt(L, 3)
	}
	if i > last {
		return 0
	}
	n := int64(last) - int64(i) + 1
	if n <= 0 || int64(L.GetTop())+n > luaMaxCStack {
		luaError(L, "too many results to unpack")
	}
	e.run.moveL(L, int(n))
	for k := i; ; k++ {
		L.Push(t.RawGetInt(k))
		if k == last {
			break
		}
	}
	return int(n)
}

// bAssert is luaB_assert: the message is luaL_optstring's, so a number is
// accepted (and formatted like Lua), other non-nil values are refused.
func (e *engine) bAssert(L *glua.LState) int {
	checkAny(L, 1)
	if !L.ToBool(1) {
		msg := "assertion failed!"
		switch v := L.Get(2).(type) {
		case glua.LString:
			msg = string(v)
		case glua.LNumber:
			msg = fmtNumber(float64(v))
		default:
			if v != glua.LNil {
				typeError(L, 2, "string")
			}
		}
		luaError(L, msg)
	}
	return L.GetTop()
}

func (e *engine) bPcall(L *glua.LState) int {
	checkAny(L, 1)
	if f := L.Get(1); !callable(L, f) {
		L.SetTop(0)
		L.Push(glua.LFalse)
		L.Push(glua.LString("attempt to call a " + f.Type().String() + " value"))
		return 2
	}
	nargs := L.GetTop() - 1
	c := e.cstack(L)
	if st := c.enter(); st != cOK {
		// Lua 5.1's luaD_call refused the nested call: the error is
		// raised inside this pcall's protection, which catches it.
		c.leave()
		L.SetTop(0)
		L.Push(glua.LFalse)
		L.Push(st.msg())
		return 2
	}
	err := L.PCall(nargs, glua.MultRet, e.pcallH)
	c.leave()
	e.afterPcall(L, err)
	if err != nil {
		v := errObject(err)
		// Redis 7.0's pcall (luaRedisPcall) turns error tables into their
		// err string, so pcall(redis.call, ...) yields a message.
		if t, ok := v.(*glua.LTable); ok {
			if m := L.GetField(t, "err"); stringLike(m) {
				v = m
			}
		}
		L.SetTop(0)
		L.Push(glua.LFalse)
		L.Push(v)
		return 2
	}
	e.run.moveL(L, L.GetTop())
	L.Insert(glua.LTrue, 1)
	return L.GetTop()
}

func (e *engine) bXpcall(L *glua.LState) int {
	checkAny(L, 2)
	L.SetTop(2)
	f, h := L.Get(1), L.Get(2)
	L.SetTop(0)
	handler := L.NewFunction(func(L *glua.LState) int {
		var failing frame
		if layoutOK {
			failing = frameParent(curFrame(L))
		}
		v := e.translate(L, failing, L.Get(1))
		L.Push(h)
		L.Push(v)
		if L.PCall(1, 1, nil) != nil {
			// LUA_ERRERR
			L.Push(glua.LString("error in error handling"))
		}
		return 1
	})
	if !callable(L, f) {
		L.Push(h)
		L.Push(glua.LString("attempt to call a " + f.Type().String() + " value"))
		err := L.PCall(1, 1, nil)
		e.afterPcall(L, err)
		if err != nil {
			L.SetTop(0)
			L.Push(glua.LFalse)
			L.Push(errObject(err))
			return 2
		}
		L.Insert(glua.LFalse, 1)
		return 2
	}
	c := e.cstack(L)
	switch c.enter() {
	case cOverflow:
		// luaG_runerror inside lua_pcall: the handler sees the message.
		L.Push(h)
		L.Push(glua.LString("C stack overflow"))
		err := L.PCall(1, 1, nil)
		c.leave()
		e.afterPcall(L, err)
		v := glua.LValue(glua.LString("error in error handling"))
		if err == nil {
			v = L.Get(-1)
		}
		L.SetTop(0)
		L.Push(glua.LFalse)
		L.Push(v)
		return 2
	case cErrErr:
		c.leave()
		L.Push(glua.LFalse)
		L.Push(glua.LString("error in error handling"))
		return 2
	}
	L.Push(f)
	err := L.PCall(0, glua.MultRet, handler)
	c.leave()
	e.afterPcall(L, err)
	if err != nil {
		L.SetTop(0)
		L.Push(glua.LFalse)
		L.Push(errObject(err))
		return 2
	}
	e.run.moveL(L, L.GetTop())
	L.Insert(glua.LTrue, 1)
	return L.GetTop()
}

func callable(L *glua.LState, v glua.LValue) bool {
	if v.Type() == glua.LTFunction {
		return true
	}
	return L.GetMetaField(v, "__call").Type() == glua.LTFunction
}

func errObject(err error) glua.LValue {
	if aerr, ok := err.(*glua.ApiError); ok {
		return aerr.Object
	}
	return glua.LString(err.Error())
}

// --- loading code -----------------------------------------------------------

func (e *engine) bLoadString(L *glua.LState) int {
	s := checkString(L, 1)
	name := optString(L, 2, s)
	return e.loadChunk(L, s, name)
}

func (e *engine) bLoad(L *glua.LState) int {
	name := optString(L, 2, "=(load)")
	if _, ok := L.Get(1).(*glua.LFunction); !ok {
		typeError(L, 1, "function")
	}
	fn := L.Get(1)
	var sb strings.Builder
	for {
		L.Push(fn)
		L.Call(0, 1)
		v := L.Get(-1)
		L.Pop(1)
		if v == glua.LNil {
			break
		}
		if !stringLike(v) {
			luaError(L, "reader function must return a string")
		}
		s := luaToString(v)
		if s == "" {
			break
		}
		e.run.chargeL(L, int64(len(s)))
		sb.WriteString(s)
	}
	return e.loadChunk(L, sb.String(), name)
}

func (e *engine) loadChunk(L *glua.LState, src, chunkname string) int {
	r := e.run
	r.stepL(L, int64(len(src))/4+1)
	r.chargeL(L, int64(len(src))*4)
	id := chunkID(chunkname)
	proto, msg := compileChunk([]byte(src), id, 1)
	if msg != "" {
		L.Push(glua.LNil)
		L.Push(glua.LString(msg))
		return 2
	}
	if r.srcmap == nil {
		r.srcmap = make(map[string]string)
	}
	r.srcmap[id] = chunkname
	fn := L.NewFunctionFromProto(proto)
	fn.Env = e.G
	L.Push(fn)
	return 1
}

// chunkID is luaO_chunkid with LUA_IDSIZE 60.
func chunkID(source string) string {
	const idsize = 60
	if strings.HasPrefix(source, "=") {
		s := source[1:]
		if len(s) > idsize-1 {
			s = s[:idsize-1]
		}
		return s
	}
	if strings.HasPrefix(source, "@") {
		s := source[1:]
		max := idsize - len(" '...' ") - 1
		if len(s) > max {
			return "..." + s[len(s)-max:]
		}
		return s
	}
	n := strings.IndexAny(source, "\r\n")
	if n < 0 {
		n = len(source)
	}
	max := idsize - len(" [string \"...\"] ") - 1
	if n > max {
		n = max
	}
	if n < len(source) {
		return `[string "` + source[:n] + `..."]`
	}
	return `[string "` + source + `"]`
}
