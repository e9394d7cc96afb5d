package lua

import (
	"sort"

	glua "github.com/yuin/gopher-lua"
)

// engine is one pooled interpreter with Redis 7.0's sandbox built once.
//
// Redis 7 makes the globals table and every library table read-only, and
// refuses access to undeclared globals. We mark read-only tables by giving
// them the metatable roMeta (the globals table gets gMeta, which also holds
// the __index that reports undeclared globals). Writes are refused at the
// source: the step hook sees SETGLOBAL/SETTABLE before they execute, and the
// Go functions that can write into a table (rawset, setmetatable,
// table.insert/remove/sort, ...) check the mark. Nothing a script does can
// therefore leak into the next script run on the same pooled interpreter.
type engine struct {
	L       *glua.LState
	G       *glua.LTable // globals: the environment of every script
	roMeta  *glua.LTable
	gMeta   *glua.LTable
	strMeta *glua.LTable
	null    *glua.LUserData // cjson.null (a NULL lightuserdata in Redis)
	ctx     *stepCtx
	handler *glua.LFunction // top-level error handler
	pcallH  *glua.LFunction // pcall's message rewriter

	run    *run
	runBuf run
	model  *ltable     // scratch for tableOrder
	shapes shapeCache  // recent table shapes (see shape.go)
	ms     *matchState // scratch for find, match and gmatch (scratchMatch)

	// cjson.decode's member stacks (see jsonParser), empty between calls.
	jsonKeys []string
	jsonVals []glua.LValue
	encBuf   []byte        // cjson.encode's output buffer, nil while in use
	encKeys  []glua.LValue // cjson.encode's key stack, nil while in use
}

func newEngine() *engine {
	L := glua.NewState(glua.Options{
		SkipOpenLibs: true,
		// maxLuaCalls plus room for error handlers; the call stack grows on
		// demand so idle interpreters stay small.
		CallStackSize:       maxLuaCalls + 1024,
		MinimizeStackMemory: true,
		RegistrySize:        1024,
		RegistryGrowStep:    1024,
		RegistryMaxSize:     256 * 1024,
	})
	e := &engine{L: L}
	e.ctx = newStepCtx(e, L)
	L.SetContext(e.ctx)

	e.roMeta = L.NewTable()
	e.roMeta.Metatable = e.roMeta
	e.gMeta = L.NewTable()
	e.gMeta.Metatable = e.roMeta
	e.gMeta.RawSetString("__index", L.NewFunction(e.undeclaredGlobal))

	// The gopher-lua base functions we keep, behind Lua 5.1's argument
	// checks (type and select are replaced: see checkedBase).
	glua.OpenBase(L)
	base := L.G.Global
	G := L.NewTable()
	e.G = G
	for _, name := range []string{"ipairs", "rawequal", "rawget", "select", "type"} {
		// In the same order as before: pairs(_G) order depends on it.
		// The wrapper keeps the original's upvalues (ipairs finds its
		// iterator in one).
		orig := base.RawGetString(name).(*glua.LFunction)
		upvalues := make([]glua.LValue, len(orig.Upvalues))
		for i, u := range orig.Upvalues {
			upvalues[i] = u.Value()
		}
		G.RawSetString(name, L.NewClosure(checkedBase(name, orig.GFunction), upvalues...))
	}
	G.RawSetString("_G", G)
	G.RawSetString("_VERSION", glua.LString("Lua 5.1"))
	e.openBase(G)
	e.openCoroutine(G)

	G.RawSetString("string", e.protect(e.openString()))
	G.RawSetString("table", e.protect(e.openTable()))
	G.RawSetString("math", e.protect(e.openMath()))
	G.RawSetString("bit", e.protect(e.openBit()))
	e.null = L.NewUserData()
	G.RawSetString("cjson", e.protect(e.openCjson()))
	if t := e.openStruct(); t != nil {
		G.RawSetString("struct", e.protect(t))
	}
	if t := e.openCmsgpack(); t != nil {
		G.RawSetString("cmsgpack", e.protect(t))
	}
	G.RawSetString("redis", e.protect(e.openRedis()))

	// Strings index the string library through their own metatable, as in
	// Lua ({__index = string}), itself read-only.
	e.strMeta = L.NewTable()
	e.strMeta.RawSetString("__index", G.RawGetString("string"))
	e.strMeta.Metatable = e.roMeta
	L.SetMetatable(glua.LString(""), e.strMeta)

	e.handler = L.NewFunction(e.topHandler)
	e.pcallH = L.NewFunction(e.pcallHandler)
	G.RawSetString("__redis__err__handler", L.NewFunction(e.redisErrHandler))

	G.Metatable = e.gMeta
	L.Env = G
	L.G.Global = G
	return e
}

func (e *engine) protect(t *glua.LTable) *glua.LTable {
	t.Metatable = e.roMeta
	return t
}

func (e *engine) isProtected(t *glua.LTable) bool {
	return t.Metatable == e.roMeta || t.Metatable == e.gMeta
}

// checkWritable refuses Go-side writes into read-only tables, with Redis's
// text and no position (the error comes from C in Redis).
func (e *engine) checkWritable(L *glua.LState, t *glua.LTable) {
	if e.isProtected(t) {
		rawError(L, "Attempt to modify a readonly table")
	}
}

func (e *engine) undeclaredGlobal(L *glua.LState) int {
	if L.GetTop() != 2 {
		luaError(L, "Wrong number of arguments to luaProtectedTableError")
	}
	k := L.Get(2)
	if !stringLike(k) {
		luaError(L, "Second argument to luaProtectedTableError must be a string or number")
	}
	luaError(L, "Script attempted to access nonexistent global variable '"+luaToString(k)+"'")
	return 0
}

// redisErrHandler is the script-visible __redis__err__handler.
func (e *engine) redisErrHandler(L *glua.LState) int {
	var f frame
	if layoutOK {
		f = frameParent(curFrame(L))
	}
	L.Push(e.errInfo(L, L.Get(1), f))
	return 1
}

// register adds functions in sorted order: insertion order is iteration
// order (pairs), which must be the same on every node.
func (e *engine) register(t *glua.LTable, fns map[string]glua.LGFunction) {
	names := make([]string, 0, len(fns))
	for name := range fns {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		t.RawSetString(name, e.L.NewFunction(fns[name]))
	}
}

// checkedBase puts Lua 5.1's argument checks in front of a gopher-lua base
// function, or replaces it (type, select) with the package's own.
// gopher-lua's own errors carry the position of the Lua code nearest the
// call even when pcall called the function directly, where
// luaL_argerror's luaL_where finds a C caller and adds none: Redis answers
// pcall(type) with "bad argument #1 to '?' (value expected)".
func checkedBase(name string, fn glua.LGFunction) glua.LGFunction {
	switch name {
	case "type":
		return bType
	case "select":
		return bSelect
	case "rawequal":
		return func(L *glua.LState) int {
			checkAny(L, 1)
			checkAny(L, 2)
			return fn(L)
		}
	case "rawget":
		return func(L *glua.LState) int {
			checkTable(L, 1)
			checkAny(L, 2)
			return fn(L)
		}
	case "ipairs":
		return func(L *glua.LState) int {
			checkTable(L, 1)
			return fn(L)
		}
	}
	return fn
}

// bSelect is Lua 5.1's luaB_select.
func bSelect(L *glua.LState) int {
	n := L.GetTop()
	if s, ok := L.Get(1).(glua.LString); ok && len(s) > 0 && s[0] == '#' {
		L.Push(glua.LNumber(n - 1))
		return 1
	}
	i := checkInt(L, 1)
	if i < 0 {
		i = n + i
	} else if i > n {
		i = n
	}
	if i < 1 {
		argError(L, 1, "index out of range")
	}
	return n - i
}
