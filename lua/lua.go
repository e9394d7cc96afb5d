// Package lua is redraft's script engine: EVAL bodies run on gopher-lua inside
// a sandbox that reproduces Redis 7.0's (globals, libraries, error texts,
// reply conversions, cjson/bit/struct/cmsgpack), independent of storage.
//
// Scripts run inside the Raft FSM's Apply on every node, so everything a
// script can observe is deterministic: math.random is reset for each run,
// tostring() of tables and functions yields per-run counters instead of
// addresses, table iteration follows a fixed order (Lua 5.1's, emulated),
// collectgarbage/gcinfo report the deterministic allocation count, and
// runaway scripts are stopped by instruction and allocation budgets (Limits)
// rather than wall clocks.
//
// Budget errors are reported as
//
//	-ERR script exceeded its step budget (N VM steps) script: <sha>, on @user_script:<line>.
//	-ERR script exceeded its memory budget (N bytes) script: <sha>, on @user_script:<line>.
//
// and cannot be caught by pcall: once a budget is exhausted every following
// instruction fails again.
//
// # Known differences from Redis 7.0
//
//   - math.random restarts from rand48's initial state on every run (Redis
//     continues one sequence across EVALs; its first EVAL matches ours).
//   - tostring(table/function/...) prints per-run counters, not addresses.
//   - Iteration order (pairs, next, cjson/cmsgpack objects, map/set replies)
//     emulates Lua 5.1's hash layout; it can differ after keys are deleted and
//     the table then grows, or for integer keys stored out of sequence.
//   - #t on tables with holes follows gopher-lua (highest non-nil index of
//     the array part), not Lua's binary search for a border.
//   - Deep recursion stops at a fixed 16382 nested calls (a fresh Redis;
//     Redis allows ~20000 once an overflow happened in the process), and
//     metamethod recursion hits "C stack overflow" much deeper than Lua's 200.
//     Nested pcall/xpcall do stop at Lua's 200 nested C calls, like Redis;
//     nested coroutine.resume does not (Redis: also 200).
//   - String-to-number coercion in arithmetic uses gopher-lua's parser.
//   - redis.setresp(3) is refused (Callers reply in RESP2); redis.log goes
//     to log/slog; redis.acl_check_cmd allows every known command.
//   - string.dump raises "unable to dump given function".
//   - cjson's configuration functions only affect the current run.
//   - Error tables without an err field answer "-ERR unknown error" (Redis
//     7.0 crashes).
//   - Mixed-architecture clusters: transcendental math functions and the
//     sign of NaN come from the CPU/Go runtime, like any float code.
package lua

import (
	"crypto/sha1"
	"encoding/hex"
	"strconv"
	"sync"

	glua "github.com/yuin/gopher-lua"
)

// Caller runs one Redis command on behalf of a script (redis.call /
// redis.pcall) and returns its reply encoded as RESP2 bytes (e.g. "+OK\r\n",
// "$3\r\nfoo\r\n", "-ERR ...\r\n", ":1\r\n", "*2\r\n...", "$-1\r\n", "*-1\r\n").
//
// Eval validates the command name, its arity and the noscript flag against
// Redis 7.0's command table before calling, so the Caller never sees EVAL,
// MULTI, SUBSCRIBE and the like from a script.
type Caller func(args [][]byte) []byte

// Limits bound a script deterministically: the same script on the same state
// makes the same decision on every node (no wall clocks).
type Limits struct {
	// MaxSteps is the number of Lua VM instructions (plus a deterministic
	// charge for work done in Go library code such as pattern matching and
	// JSON) after which the script is aborted. 0 means DefaultMaxSteps.
	MaxSteps int64
	// MaxMemory bounds the bytes of Lua-visible data (strings, tables,
	// closures, coroutines, stack growth) the script allocates over its
	// whole run; it is a cumulative allocation count, never decremented,
	// hence deterministic. 0 means DefaultMaxMemory.
	MaxMemory int64
}

// SHA1Hex is the lowercase hex sha1 Redis uses to name a script.
func SHA1Hex(body []byte) string {
	sum := sha1.Sum(body)
	return hex.EncodeToString(sum[:])
}

// Eval runs body with KEYS and ARGV and returns the script's reply as RESP2
// bytes, converted with Redis's Lua->RESP rules; script errors come back as
// RESP error replies with Redis's texts.
func Eval(body []byte, keys, argv [][]byte, call Caller, lim Limits) []byte {
	if !layoutOK {
		// Without access to gopher-lua's frames the sandbox cannot refuse
		// writes to globals: refuse to run rather than risk divergence.
		return appendError(nil, "ERR script engine unavailable: unsupported gopher-lua version")
	}
	sc := compileCached(body)
	if sc.compileErr != "" {
		return appendError(nil, "ERR Error compiling script (new function): "+sc.compileErr)
	}
	e := getEngine()
	out, reusable := e.exec(sc, keys, argv, call, lim)
	if reusable {
		putEngine(e)
	}
	return out
}

// --- compiled script cache -------------------------------------------------

// script is one compiled body. FunctionProtos are immutable once compiled,
// so one proto is shared by all pooled interpreters.
type script struct {
	sha        string
	proto      *glua.FunctionProto
	compileErr string
}

// The compile cache is bounded in entries and bytes. Node-RED uses a
// handful of scripts; clients that generate unique bodies just churn it.
const (
	maxCachedScripts = 1024
	maxCachedBytes   = 32 << 20
	maxCachedBody    = 1 << 20 // larger bodies are compiled on every call
)

var (
	cacheMu    sync.RWMutex
	cache      = make(map[string]*script)
	cacheBytes int
)

func compileCached(body []byte) *script {
	cacheMu.RLock()
	sc := cache[string(body)] // no allocation for the lookup
	cacheMu.RUnlock()
	if sc != nil {
		return sc
	}
	sc = &script{sha: SHA1Hex(body)}
	sc.proto, sc.compileErr = compileChunk(body, "user_script", 0)
	if len(body) > maxCachedBody {
		return sc
	}
	cacheMu.Lock()
	// Drop arbitrary entries; which ones does not affect results, only
	// compile work, so Go's random map order is harmless here.
	for k := range cache {
		if len(cache) < maxCachedScripts && cacheBytes+len(body) <= maxCachedBytes {
			break
		}
		delete(cache, k)
		cacheBytes -= len(k)
	}
	if _, dup := cache[string(body)]; !dup {
		cache[string(body)] = sc
		cacheBytes += len(body)
	}
	cacheMu.Unlock()
	return sc
}

// --- pooled interpreters ---------------------------------------------------

// A small free list rather than a sync.Pool: building an engine costs
// ~150 µs, and sync.Pool empties itself every other GC cycle. Raft applies
// entries one at a time, so a handful of engines covers every caller.
const maxIdleEngines = 16

var (
	idleMu sync.Mutex
	idle   []*engine
)

func getEngine() *engine {
	idleMu.Lock()
	if n := len(idle); n > 0 {
		e := idle[n-1]
		idle = idle[:n-1]
		idleMu.Unlock()
		return e
	}
	idleMu.Unlock()
	return newEngine()
}

// maxIdleRegistry: an engine whose Lua stack grew past this many slots (a
// deep recursion, a huge unpack) is dropped rather than kept idle.
const maxIdleRegistry = 64 * 1024

func putEngine(e *engine) {
	if layoutOK && cap(regArray(e.L)) > maxIdleRegistry {
		return
	}
	idleMu.Lock()
	if len(idle) < maxIdleEngines {
		idle = append(idle, e)
	}
	idleMu.Unlock()
}

// run is the state of one Eval, shared by the main thread and coroutines.
type run struct {
	call     Caller
	sc       *script
	maxSteps int64
	steps    int64
	maxMem   int64
	mem      int64
	abort    *budgetError
	rand     rand48

	gcpause, gcstepmul int // collectgarbage("setpause"/"setstepmul"), per run
	cj                 cjsonCfg

	ids   map[any]uint64            // tostring() names of tables/functions
	hints map[*glua.LTable]sizeHint // constructor size hints (key order)
	order *orderCache
	// bornDead records keys first written with nil (see recordNilKey).
	bornDead map[*glua.LTable]map[glua.LValue]bool
	srcmap   map[string]string // chunk id -> Lua "source" for loadstring chunks
}

// exec runs one script on e. It reports whether e may go back to the pool.
func (e *engine) exec(sc *script, keys, argv [][]byte, call Caller, lim Limits) ([]byte, bool) {
	r := &e.runBuf
	*r = run{call: call, sc: sc, maxSteps: lim.MaxSteps, maxMem: lim.MaxMemory}
	if r.maxSteps <= 0 {
		r.maxSteps = DefaultMaxSteps
	}
	if r.maxMem <= 0 {
		r.maxMem = DefaultMaxMemory
	}
	r.rand.reset()
	e.run = r
	// Nothing from a previous run on this pooled engine may influence this
	// one: that would make results depend on which engine a node used.
	e.ctx.regHigh = 0
	e.ctx.pendReg = -1
	e.ctx.pendFrame = nil
	e.ctx.lenTable = nil
	e.ctx.ccalls = 0
	e.L.G.CurrentThread = e.L

	L := e.L
	e.G.RawSetString("KEYS", e.argTable(keys))
	e.G.RawSetString("ARGV", e.argTable(argv))
	fn := L.NewFunctionFromProto(sc.proto)
	fn.Env = e.G
	L.Push(fn)
	err := L.PCall(0, 1, e.handler)

	var out []byte
	if r.abort != nil {
		line := 0
		if err != nil {
			line = errLine(err)
		}
		out = appendError(nil, "ERR "+r.abort.msg+" script: "+sc.sha+", on @user_script:"+strconv.Itoa(line)+".")
	} else if err != nil {
		out = e.errorReply(err, sc.sha)
	} else {
		out = e.appendReply(make([]byte, 0, 64), L.Get(-1), 0)
	}
	L.SetTop(0)
	aborted := r.abort != nil
	if testHookRunDone != nil {
		testHookRunDone(r)
	}
	*r = run{}
	e.run = nil
	e.G.RawSetString("KEYS", glua.LNil)
	e.G.RawSetString("ARGV", glua.LNil)
	// An aborted run may have left coroutines or partial state behind in
	// ways we do not want to reason about; a fresh engine is cheap.
	return out, !aborted
}

// testHookRunDone, when set by a test, sees each run's final state.
var testHookRunDone func(*run)

func (e *engine) argTable(args [][]byte) *glua.LTable {
	t := e.L.CreateTable(len(args), 0)
	for i, a := range args {
		t.RawSetInt(i+1, glua.LString(a))
	}
	e.run.mem += int64(len(args)) * slotCost
	return t
}
