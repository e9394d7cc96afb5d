package lua

import (
	glua "github.com/yuin/gopher-lua"
)

// Coroutines are gopher-lua's, wrapped so that every new thread counts its
// instructions against the same budget (its own stepCtx, installed directly
// instead of the context.WithCancel child gopher-lua would derive), pays for
// its memory, and reports Lua 5.1's texts for resume errors.

func (e *engine) openCoroutine(G *glua.LTable) {
	L := e.L
	glua.OpenCoroutine(L)
	orig := L.GetGlobal("coroutine").(*glua.LTable)
	create := orig.RawGetString("create").(*glua.LFunction).GFunction
	resume := orig.RawGetString("resume").(*glua.LFunction).GFunction
	t := L.NewTable()
	e.register(t, map[string]glua.LGFunction{
		"create": func(L *glua.LState) int {
			e.checkCoFunc(L)
			n := e.withoutContext(L, create)
			e.adopt(L.Get(-1).(*glua.LState))
			return n
		},
		// wrap is Lua's auxwrap over our create and resume: errors are
		// re-raised with the caller's position prepended.
		"wrap": func(L *glua.LState) int {
			e.checkCoFunc(L)
			e.withoutContext(L, create)
			th := L.Get(-1).(*glua.LState)
			e.adopt(th)
			L.Push(L.NewFunction(func(L *glua.LState) int {
				L.Insert(th, 1)
				n := e.resume(L, resume)
				top := L.GetTop()
				if L.Get(top-n+1) == glua.LFalse {
					v := L.Get(top)
					if stringLike(v) {
						v = glua.LString(where(L, 1) + luaToString(v))
					}
					L.Error(v, 0)
				}
				L.Remove(top - n + 1)
				return n - 1
			}))
			return 1
		},
		"resume": func(L *glua.LState) int { return e.resume(L, resume) },
	})
	status := orig.RawGetString("status").(*glua.LFunction).GFunction
	yield := orig.RawGetString("yield").(*glua.LFunction)
	e.register(t, map[string]glua.LGFunction{
		"status": func(L *glua.LState) int {
			if _, ok := L.Get(1).(*glua.LState); !ok {
				argError(L, 1, "coroutine expected")
			}
			return status(L)
		},
	})
	// yield must stay gopher-lua's own function: its VM recognises it to
	// switch threads. Outside a coroutine Lua 5.1 refuses with this text.
	t.RawSetString("yield", yield)
	t.RawSetString("running", orig.RawGetString("running"))
	G.RawSetString("coroutine", e.protect(t))
}

// resume is gopher-lua's resume with Lua 5.1's texts for the refusals.
func (e *engine) resume(L *glua.LState, resume glua.LGFunction) int {
	if _, ok := L.Get(1).(*glua.LState); !ok {
		argError(L, 1, "coroutine expected")
	}
	n := resume(L)
	e.run.moveL(L, n)
	if n == 2 && L.Get(-2) == glua.LFalse {
		switch L.Get(-1) {
		case glua.LString("can not resume a dead thread"):
			L.Replace(-1, glua.LString("cannot resume dead coroutine"))
		case glua.LString("can not resume a running thread"):
			L.Replace(-1, glua.LString("cannot resume running coroutine"))
		}
	}
	return n
}

func (e *engine) checkCoFunc(L *glua.LState) {
	if fn, ok := L.Get(1).(*glua.LFunction); !ok || fn.IsG {
		argError(L, 1, "Lua function expected")
	}
	e.run.chargeL(L, threadCost)
}

// withoutContext runs f with no context on L, so that gopher-lua's
// NewThread does not derive a cancel context from ours.
func (e *engine) withoutContext(L *glua.LState, f glua.LGFunction) int {
	ctx := L.RemoveContext()
	defer L.SetContext(ctx)
	return f(L)
}

func (e *engine) adopt(th *glua.LState) {
	c := newStepCtx(e, th)
	c.thread = true
	th.SetContext(c)
}

// threadPanic replaces gopher-lua's panic function on coroutines, so that
// errors coroutine.resume returns read like Lua's: the message is rewritten
// while the failing frame is still current, then raised as gopher-lua would
// (panicWithoutTraceback). gopher-lua installs its own function on the
// first resume, before the thread runs; the step hook swaps ours in at the
// thread's first instruction, and PCall restores it after protected calls.
func (e *engine) threadPanic(L *glua.LState) {
	v := L.Get(-1)
	if layoutOK {
		v = e.translate(L, curFrame(L), v)
	}
	panic(&glua.ApiError{Type: glua.ApiErrorRun, Object: v})
}
