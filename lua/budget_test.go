package lua

import (
	"strings"
	"testing"
	"time"
)

func evalLim(script string, call Caller, lim Limits) string {
	return string(Eval([]byte(script), nil, nil, call, lim))
}

func TestStepBudget(t *testing.T) {
	script := "local n = 0\nwhile true do n = n + 1 end"
	got := evalLim(script, nil, Limits{MaxSteps: 100_000})
	want := "-ERR script exceeded its step budget (100000 VM steps)" + errSuffix(script, "2")
	if got != want {
		t.Fatalf("got %q\nwant %q", got, want)
	}
	// Default budget: still ends, and quickly enough.
	start := time.Now()
	got = evalLim(`while true do end`, nil, Limits{})
	if !strings.Contains(got, "step budget (20000000 VM steps)") {
		t.Fatal(got)
	}
	t.Logf("default step budget exhausted in %v", time.Since(start))
}

// TestStepBudgetDeterministic: the script is stopped at the same
// instruction every time, so its side effects are identical on every node.
func TestStepBudgetDeterministic(t *testing.T) {
	script := `local n = 0 while true do n = n + 1 redis.call('set', 'n', n) end`
	var first string
	for i := 0; i < 10; i++ {
		f := newFakeStore()
		out := evalLim(script, f.call, Limits{MaxSteps: 54_321})
		if !strings.Contains(out, "step budget") {
			t.Fatal(out)
		}
		if i == 0 {
			first = f.data["n"]
		} else if f.data["n"] != first {
			t.Fatalf("run %d stopped at n=%s, first at n=%s", i, f.data["n"], first)
		}
	}
	if first == "" {
		t.Fatal("no progress")
	}
}

// TestBudgetNotCatchable: once exhausted, every instruction fails again,
// so pcall, xpcall handlers, coroutines and callbacks cannot resume work.
func TestBudgetNotCatchable(t *testing.T) {
	for _, script := range []string{
		`while true do pcall(function() while true do end end) end`,
		`while true do xpcall(function() while true do end end, function(e) return e end) end`,
		`local ok = pcall(function() while true do end end) return 'escaped'`,
		`xpcall(function() while true do end end, function() while true do end end) return 'escaped'`,
		`local co = coroutine.create(function() while true do end end) coroutine.resume(co) return 'escaped'`,
		`local f = coroutine.wrap(function() while true do coroutine.yield() end end) while true do f() end`,
		`table.sort({3, 2, 1, 5, 4}, function(a, b) while true do end end) return 'escaped'`,
		`string.gsub('aaa', 'a', function() while true do end end) return 'escaped'`,
		`local t = setmetatable({}, {__index = function() while true do end end}) return t.x`,
		`local function f() return f() end return f()`,
	} {
		got := evalLim(script, nil, Limits{MaxSteps: 50_000})
		if !strings.HasPrefix(got, "-ERR script exceeded its step budget (50000 VM steps)") {
			t.Errorf("%s: %q", script, got)
		}
	}
}

func TestPatternMatchingIsBudgeted(t *testing.T) {
	// Exponential backtracking in Go code, outside the VM loop.
	script := `return string.find(string.rep('a', 40), string.rep('a*', 40) .. 'b')`
	start := time.Now()
	got := evalLim(script, nil, Limits{MaxSteps: 1_000_000})
	if !strings.Contains(got, "step budget") {
		t.Fatal(got)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %v", d)
	}
}

func TestMemoryBudget(t *testing.T) {
	lim := Limits{MaxMemory: 32 << 20}
	for _, script := range []string{
		`local s = 'x' while true do s = s .. s end`,
		`local t = {} while true do t[#t + 1] = string.rep('x', 1e6) end`,
		`local t = {} t[60000000] = 1`,
		`local t = {} for i = 1, 1e8 do t[i] = i end`,
		`local t = {} for i = 1, 1e8 do t['k' .. i] = true end`,
		`return string.rep('x', 2^31 - 1)`,
		`local s = string.rep('x', 1e6) local t = {} for i = 1, 100 do t[i] = s end return #table.concat(t)`,
		`local s = string.rep('x', 1e6) local t = {} for i = 1, 100 do t[i] = s end return #cjson.encode(t)`,
		`local s = string.rep('x', 1e6) local t = {} for i = 1, 100 do t[i] = s end return #cmsgpack.pack(t)`,
		`return #string.gsub(string.rep('a', 1e5), 'a', string.rep('b', 1e3))`,
		`local s = string.rep('x', 1e6) return #string.format(string.rep('%s', 40), s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s)`,
		`while true do coroutine.create(function() end) end`,
		`local t = {} while true do t[#t + 1] = function() end end`,
		`local t = {} while true do t[#t + 1] = {} end`,
		`local s = string.rep('x', 1e6) while true do pcall(string.rep, s, 10) end`,
	} {
		got := evalLim(script, nil, lim)
		if !strings.HasPrefix(got, "-ERR script exceeded its memory budget (33554432 bytes)") {
			t.Errorf("%s: %q", script, got)
		}
	}
}

func TestBudgetsAllowNormalWork(t *testing.T) {
	f := newFakeStore()
	script := `local t = {} for i = 1, 100000 do t[i] = i end
local s = {} for i = 1, 1000 do s[#s + 1] = tostring(i) end
local j = cjson.encode(t)
for i = 1, 200 do redis.call('set', 'k' .. i, i) end
return {#t, #table.concat(s, ','), #j}`
	got := evalLim(script, f.call, Limits{})
	if got != "*3\r\n:100000\r\n:3892\r\n:588896\r\n" {
		t.Fatal(got)
	}
}

func TestDeepRecursion(t *testing.T) {
	// Lua 5.1 allows ~20000 nested calls; so do we.
	got := evalLim(`local function f(n) if n == 0 then return 0 end return 1 + f(n - 1) end return f(10000)`, nil, Limits{})
	if got != ":10000\r\n" {
		t.Fatal(got)
	}
	script := `local function f() return 1 + f() end return f()`
	got = evalLim(script, nil, Limits{})
	if got != "-ERR user_script:1: stack overflow"+errSuffix(script, "1") {
		t.Fatal(got)
	}
	got = evalLim(`local function f() pcall(f) end f() return 1`, nil, Limits{})
	if got != ":1\r\n" {
		t.Fatal(got)
	}
}
