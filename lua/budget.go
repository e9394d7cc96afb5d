package lua

import (
	"context"
	"fmt"
	"time"

	glua "github.com/yuin/gopher-lua"
)

// Deterministic budgets.
//
// gopher-lua's VM loop, when a context is set, selects on ctx.Done() once per
// instruction before executing it. stepCtx.Done counts those calls: the count
// depends only on the script and the data it sees, so every node aborts a
// runaway script at exactly the same instruction. No wall clock is involved.
//
// The same hook inspects the instruction about to run (see layout.go) to
// charge memory that would otherwise be invisible to us: the result of the
// `..` operator, new tables, new table slots, closures and registry growth.
// Library functions written in Go charge the strings and tables they build.
// The memory budget is therefore an upper bound on bytes *allocated* by the
// script over its run (never decremented), which is deterministic, unlike
// any measure of live heap.

const (
	// DefaultMaxSteps is the VM instruction budget when Limits.MaxSteps is 0.
	// gopher-lua runs roughly 15-70 M instructions/s with the counting hook
	// depending on the mix (arithmetic allocates, jumps do not), so this is
	// 0.3-1.5 s of one core: thousands of times what the Node-RED scripts
	// need, low enough that a `while true do end` costs every node the same
	// short stall instead of wedging the cluster.
	DefaultMaxSteps = 20_000_000
	// DefaultMaxMemory is the allocation budget when Limits.MaxMemory is 0.
	DefaultMaxMemory = 256 << 20

	slotCost    = 16 // one LValue (interface) in an array or register
	hashCost    = 64 // one new key in a gopher-lua hash part (map+keys+k2i)
	tableCost   = 64 // an empty table
	closureCost = 64
	threadCost  = 16 << 10 // a coroutine: its own LState, registry, call stack
)

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// budgetError is raised (as a Lua error) when a budget is exhausted. Once set
// on a run it stays set: every following VM instruction raises again, so a
// script cannot catch it with pcall and carry on.
type budgetError struct{ msg string }

func (e *budgetError) Error() string { return e.msg }

func (r *run) stepsExhausted() *budgetError {
	return &budgetError{fmt.Sprintf("script exceeded its step budget (%d VM steps)", r.maxSteps)}
}

func (r *run) memExhausted() *budgetError {
	return &budgetError{fmt.Sprintf("script exceeded its memory budget (%d bytes)", r.maxMem)}
}

// stepCtx is the context.Context installed on the main LState and on every
// coroutine (each thread needs its own, to know whose frame to inspect).
type stepCtx struct {
	e       *engine
	L       *glua.LState
	regHigh int // highest registry top already charged

	// NEWTABLE leaves the new table in R(A) only after the instruction ran;
	// we pick it up on the next Done call to record its size hint.
	pendFrame frame
	pendReg   int
	pendHint  sizeHint

	// A table whose metatable is hidden for one LEN instruction.
	lenTable *glua.LTable
	lenMeta  glua.LValue

	// Coroutines: install threadPanic once the thread runs (see corolib.go).
	thread   bool
	panicSet bool

	ccalls int // nested pcall/xpcall on this thread (see enter)
}

func newStepCtx(e *engine, L *glua.LState) *stepCtx {
	return &stepCtx{e: e, L: L, pendReg: -1}
}

func (c *stepCtx) Deadline() (time.Time, bool) { return time.Time{}, false }
func (c *stepCtx) Value(any) any               { return nil }

// AfterFunc makes context.WithCancel skip the goroutine it would otherwise
// start to watch Done: such a goroutine would call Done at unpredictable
// times and break the step count. (Coroutines are created with the context
// removed anyway, see corolib.go; this is the second line of defence.)
func (c *stepCtx) AfterFunc(func()) func() bool { return func() bool { return true } }

func (c *stepCtx) Err() error {
	if r := c.e.run; r != nil && r.abort != nil {
		return r.abort
	}
	return context.Canceled
}

// Done is called by the VM once per instruction.
func (c *stepCtx) Done() <-chan struct{} {
	if c.thread && !c.panicSet {
		c.panicSet = true
		c.L.Panic = c.e.threadPanic
	}
	if c.lenTable != nil { // the LEN instruction has run: restore
		c.lenTable.Metatable = c.lenMeta
		c.lenTable = nil
	}
	r := c.e.run
	if r == nil {
		return nil
	}
	if r.abort != nil {
		return closedChan
	}
	r.steps++
	if r.steps > r.maxSteps {
		r.abort = r.stepsExhausted()
		return closedChan
	}
	if layoutOK {
		c.inspect(r)
		if r.abort != nil {
			return closedChan
		}
	}
	return nil
}

// charge adds n bytes to the memory budget. It returns false (and arms the
// abort) when the budget is exceeded.
func (r *run) charge(n int64) bool {
	if n <= 0 {
		return true
	}
	r.mem += n
	if r.mem > r.maxMem {
		if r.abort == nil {
			r.abort = r.memExhausted()
		}
		return false
	}
	return true
}

// chargeL is charge for Go library functions: it raises the budget error.
func (r *run) chargeL(L *glua.LState, n int64) {
	if !r.charge(n) {
		L.RaiseError("%s", r.abort.msg)
	}
}

// stepL charges n extra steps for work done in Go on behalf of the script
// (pattern matching, JSON, sorting) and raises when over budget.
func (r *run) stepL(L *glua.LState, n int64) {
	r.steps += n
	if r.steps > r.maxSteps {
		if r.abort == nil {
			r.abort = r.stepsExhausted()
		}
		L.RaiseError("%s", r.abort.msg)
	}
	if r.abort != nil {
		L.RaiseError("%s", r.abort.msg)
	}
}

const (
	opShift = 26
	maskA   = 0xff
	maskB   = 0x1ff
	maskC   = 0x1ff
	bitRK   = 1 << 8
)

// gopher-lua's instruction layout (see its opcode.go): op:6 A:8 C:9 B:9
// from the most significant bit down; Bx/sBx use the low 18 bits.
func opA(i uint32) int   { return int(i>>18) & maskA }
func opB(i uint32) int   { return int(i) & maskB }
func opC(i uint32) int   { return int(i>>9) & maskC }
func opBx(i uint32) int  { return int(i) & 0x3ffff }
func opSBx(i uint32) int { return opBx(i) - 0x3ffff>>1 }

// inspect looks at the instruction the VM is about to execute.
func (c *stepCtx) inspect(r *run) {
	L := c.L
	f := curFrame(L)
	if f == nil {
		return
	}
	if c.pendReg >= 0 {
		if t, ok := regValue(L, c.pendFrame, c.pendReg).(*glua.LTable); ok && c.pendHint != (sizeHint{}) {
			r.noteHint(t, c.pendHint)
		}
		c.pendReg = -1
	}
	fn := frameFn(f)
	if fn == nil || fn.Proto == nil {
		return
	}
	pc := framePc(f) - 1
	code := fn.Proto.Code
	if pc < 0 || pc >= len(code) {
		return
	}
	inst := code[pc]
	if frameIdx(f) >= maxLuaCalls+256 {
		// Only calls that bypass OP_CALL get this deep: metamethods and
		// callbacks invoked from Go, which Lua 5.1 counts as C calls.
		L.RaiseError("C stack overflow")
	}
	switch int(inst >> opShift) {
	case glua.OP_CONCAT:
		c.concat(r, f, inst)
	case glua.OP_SETGLOBAL:
		// Redis 7 makes the globals table read-only: every assignment to a
		// global, new or existing, fails.
		L.RaiseError("Attempt to modify a readonly table")
	case glua.OP_SETTABLE, glua.OP_SETTABLEKS:
		c.settable(r, f, fn.Proto, inst)
	case glua.OP_NEWTABLE:
		b, cc := fb2int(opB(inst)), fb2int(opC(inst))
		r.charge(tableCost + int64(b+cc)*slotCost)
		c.pendFrame, c.pendReg, c.pendHint = f, opA(inst), sizeHint{b, cc}
	case glua.OP_LEN:
		// Lua 5.1 ignores __len on tables (gopher-lua honours it): hide
		// the metatable while this instruction runs.
		if t, ok := regValue(L, f, opB(inst)).(*glua.LTable); ok && t.Metatable != glua.LNil {
			c.lenTable, c.lenMeta = t, t.Metatable
			t.Metatable = glua.LNil
		}
	case glua.OP_SETLIST:
		n := opB(inst)
		if n == 0 {
			n = regTop(L) - (frameLocalBase(f) + opA(inst)) - 1
		}
		r.charge(int64(n) * slotCost)
	case glua.OP_CLOSURE:
		r.charge(closureCost)
	case glua.OP_CALL, glua.OP_TAILCALL:
		// Lua 5.1 refuses to nest more calls than its CallInfo array can
		// hold. gopher-lua's own limit is set higher (CallStackSize) so
		// that error handlers still find room to run.
		if frameIdx(f) >= maxLuaCalls {
			L.RaiseError("stack overflow")
		}
		c.chargeRegistry(r)
	case glua.OP_VARARG:
		c.chargeRegistry(r)
	}
}

// chargeRegistry charges the Lua stack's high-water mark. It uses the top
// (what the script has pushed), not the capacity, which depends on what
// earlier scripts did on this pooled engine and so differs between nodes.
func (c *stepCtx) chargeRegistry(r *run) {
	if n := regTop(c.L); n > c.regHigh {
		r.charge(int64(n-c.regHigh) * slotCost)
		c.regHigh = n
	}
}

// maxLuaCalls is the deepest call a script can make, calibrated on a fresh
// redis-server 7.0 (f(16382) of a recursive f succeeds, f(16383) reports
// "stack overflow"). Redis's own limit later grows to ~20000 once an
// overflow has happened in the process; ours stays fixed.
const maxLuaCalls = 16382

// concat charges the result of R(B).. ... ..R(C) and converts number
// operands to strings with Lua's "%.14g" first. PUC Lua's luaV_concat does
// the same conversion in place on these registers, which are always fresh
// temporaries, so this is invisible apart from giving Lua's digits instead
// of Go's shortest representation.
func (c *stepCtx) concat(r *run, f frame, inst uint32) {
	var n int64
	for reg := opB(inst); reg <= opC(inst); reg++ {
		switch v := regValue(c.L, f, reg).(type) {
		case glua.LString:
			n += int64(len(v))
		case glua.LNumber:
			s := glua.LString(fmtNumber(float64(v)))
			setRegValue(c.L, f, reg, s)
			n += int64(len(s))
		}
	}
	r.charge(n)
}

func (c *stepCtx) settable(r *run, f frame, p *glua.FunctionProto, inst uint32) {
	t, ok := regValue(c.L, f, opA(inst)).(*glua.LTable)
	if !ok {
		return
	}
	if c.e.isProtected(t) {
		c.L.RaiseError("Attempt to modify a readonly table")
	}
	key := rk(c.L, f, p, opB(inst))
	if k, ok := key.(glua.LNumber); ok {
		fk := float64(k)
		if fk >= 1 && fk < float64(glua.MaxArrayIndex) && fk == float64(int64(fk)) {
			// gopher-lua stores positive integer keys in a dense array and
			// fills any gap with nils.
			if gap := int64(fk) - int64(tableArrayLen(t)); gap > 0 {
				r.charge(gap * slotCost)
			}
			return
		}
		if fk != fk {
			return // the VM reports "table index is NaN"
		}
	}
	if key != glua.LNil && t.RawGet(key) == glua.LNil {
		r.charge(hashCost)
		if rk(c.L, f, p, opC(inst)) == glua.LNil && t.Metatable == glua.LNil {
			r.recordNilKey(t, key)
		}
	}
}

// recordNilKey makes gopher-lua remember key in t's insertion order, as
// Lua's luaH_set creates a node even when nil is assigned to an absent key;
// that node shapes the iteration order (see order.go), which replays it as
// a dead node. The value ends up nil either way.
func (r *run) recordNilKey(t *glua.LTable, key glua.LValue) {
	t.RawSet(key, glua.LTrue)
	t.RawSet(key, glua.LNil)
	if r.bornDead == nil {
		r.bornDead = make(map[*glua.LTable]map[glua.LValue]bool)
	}
	m := r.bornDead[t]
	if m == nil {
		m = make(map[glua.LValue]bool)
		r.bornDead[t] = m
	}
	m[key] = true
}

func rk(L *glua.LState, f frame, p *glua.FunctionProto, x int) glua.LValue {
	if x&bitRK != 0 {
		if i := x &^ bitRK; i < len(p.Constants) {
			return p.Constants[i]
		}
		return glua.LNil
	}
	return regValue(L, f, x)
}

// fb2int decodes Lua's "floating point byte" used by NEWTABLE size hints.
func fb2int(x int) int {
	e := (x >> 3) & 31
	if e == 0 {
		return x
	}
	return ((x & 7) + 8) << (e - 1)
}

// --- nested C calls ----------------------------------------------------------

// luaMaxCCalls is Lua 5.1's LUAI_MAXCCALLS. luaD_call counts the calls made
// from C (lua_call/lua_pcall) per thread; Redis runs the script itself under
// lua_pcall and coroutine.resume starts a thread's count at one, so a chain
// of pcall(f) -> f -> pcall(f) ... fails with "C stack overflow" after 198
// nested pcalls, as redis-server does. Without this limit such a chain runs
// 16382 levels deep, and a `return pcall(f)` chain then copies O(depth²)
// results in Go between two VM instructions, beyond the step budget's reach.
//
// Only pcall and xpcall count here; metamethods, sort comparators and gsub
// callbacks do in Lua but not in this package (see the package comment).
const luaMaxCCalls = 200

type cstatus int

const (
	cOK       cstatus = iota
	cOverflow         // luaG_runerror(L, "C stack overflow")
	cErrErr           // luaD_throw(L, LUA_ERRERR) while handling the above
)

func (s cstatus) msg() glua.LValue {
	if s == cErrErr {
		return glua.LString("error in error handling")
	}
	return glua.LString("C stack overflow")
}

// cstack returns the step context of thread L, which holds its C-call count.
func (e *engine) cstack(L *glua.LState) *stepCtx {
	if c, ok := L.Context().(*stepCtx); ok {
		return c
	}
	return e.ctx
}

// enter is luaD_call's ++nCcalls check; every enter is paired with a leave.
func (c *stepCtx) enter() cstatus {
	c.ccalls++
	switch n := c.ccalls + 1; { // +1: the script's own lua_pcall, or resume
	case n == luaMaxCCalls:
		return cOverflow
	case n >= luaMaxCCalls+luaMaxCCalls>>3:
		return cErrErr
	}
	return cOK
}

func (c *stepCtx) leave() { c.ccalls-- }

// afterPcall runs when a protected call made for the script (pcall, xpcall)
// returns. A budget error is re-raised at once, in the caller of pcall,
// rather than at the next VM instruction: a pcall in tail position (`return
// pcall(f)`) has no next instruction in its frame, and returning through a
// chain of them would do Go work the budget does not see.
func (e *engine) afterPcall(L *glua.LState, err error) {
	r := e.run
	if r == nil {
		return
	}
	if r.abort != nil {
		L.RaiseError("%s", r.abort.msg)
	}
	if err != nil {
		// Catching an error cost Go work proportional to the call depth
		// (gopher-lua walks the frames when it raises): charge it.
		if layoutOK {
			if f := curFrame(L); f != nil {
				r.stepL(L, int64(frameIdx(f))/depthPerStep)
			}
		}
	}
	// gopher-lua tracks "an error handler is active" in one flag, which a
	// returning PCall clears even when an outer protected call is still
	// active. With the flag clear, every later raise closes the upvalues of
	// all frames on the stack (O(depth) work, and wrong: Lua closes only the
	// frames the error unwinds). Every protected call in a script run has a
	// handler, except at a coroutine's top level.
	setHasErrorFunc(L, L == e.L || e.cstack(L).ccalls > 0)
}

// depthPerStep: frames walked per step charged when pcall catches an error.
const depthPerStep = 64

// freeResults values moved by one call are free; beyond that, moveL charges.
const freeResults = 16

// moveL charges the Go work of moving n values between frames (results of
// pcall, xpcall, coroutine.resume and unpack): chains of `return pcall(f)`
// otherwise copy O(depth²) values between two VM instructions.
func (r *run) moveL(L *glua.LState, n int) {
	if n > freeResults {
		r.stepL(L, int64(n-freeResults)/valuesPerStep+1)
	}
}

// valuesPerStep: a value copy costs a few ns, a counted VM step ~15-70 ns.
const valuesPerStep = 4
