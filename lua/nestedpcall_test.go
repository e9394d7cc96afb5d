package lua

import (
	"strings"
	"testing"
	"time"
)

// evalSteps runs script and returns its reply and the steps it was charged.
func evalSteps(t *testing.T, script string, lim Limits) (string, int64) {
	t.Helper()
	var steps int64
	testHookRunDone = func(r *run) { steps = r.steps }
	defer func() { testHookRunDone = nil }()
	out := evalLim(script, nil, lim)
	return out, steps
}

// TestNestedPcallBudget: a chain of `return pcall(f)` used to run 16382
// levels deep and copy O(depth²) results in Go between two VM instructions,
// escaping the step budget by orders of magnitude (~14 s under a budget an
// empty loop exhausts in ~30 ms). Now pcall nesting stops at Lua 5.1's
// LUAI_MAXCCALLS like Redis, the values pcall/xpcall/resume/unpack move are
// charged, and a budget error propagates through pcall at once.
func TestNestedPcallBudget(t *testing.T) {
	const max = 2_000_000
	lim := Limits{MaxSteps: max}
	start := time.Now()
	empty, _ := evalSteps(t, `while true do end`, lim)
	loop := time.Since(start)
	wantErr := "-ERR script exceeded its step budget (2000000 VM steps) script: "
	if !strings.HasPrefix(empty, wantErr) {
		t.Fatal(empty)
	}
	for _, script := range []string{
		`local function f() return pcall(f) end while true do f() end`,
		`local function f() return xpcall(f, function(e) return e end) end while true do f() end`,
		`local function f() return pcall(pcall, f) end while true do f() end`,
		`local function f() return select(2, pcall(f)) end while true do f() end`,
		`local t = {} for i = 1, 7990 do t[i] = i end while true do pcall(unpack, t) end`,
	} {
		start := time.Now()
		out, steps := evalSteps(t, script, lim)
		took := time.Since(start)
		t.Logf("%v (empty loop %v), %d steps: %s", took, loop, steps, script)
		if !strings.HasPrefix(out, wantErr) || !strings.HasSuffix(out, ", on @user_script:1.\r\n") {
			t.Errorf("%s\n-> %q", script, out)
		}
		if steps <= max {
			t.Errorf("%s: ended after %d steps, not by the step budget", script, steps)
		}
	}

	// One chain: its quadratic result copying is charged, deterministically.
	script := `local n = 0 local function f() n = n + 1 return pcall(f) end local r = {f()} return {n, #r, r[#r]}`
	out, steps := evalSteps(t, script, Limits{})
	if want := "*3\r\n:199\r\n:200\r\n$16\r\nC stack overflow\r\n"; out != want {
		t.Fatalf("got %q want %q (redis-server 7.0)", out, want)
	}
	var moved int64
	for k := 1; k <= 200; k++ {
		if k > freeResults {
			moved += int64(k-freeResults)/valuesPerStep + 1
		}
	}
	if steps < moved {
		t.Errorf("chain charged %d steps, want at least %d for the values moved", steps, moved)
	}
	for i := 0; i < 3; i++ {
		if _, s2 := evalSteps(t, script, Limits{}); s2 != steps {
			t.Fatalf("steps differ between runs: %d vs %d", s2, steps)
		}
	}
}

// TestCStackOverflowMatchesRedis: pcall/xpcall nesting stops where
// redis-server 7.0's does (LUAI_MAXCCALLS = 200).
func TestCStackOverflowMatchesRedis(t *testing.T) {
	for _, c := range []struct{ script, want string }{
		{`local n=0 local function f() n=n+1 return xpcall(f, function(e) return e end) end local r={f()} return {n, #r, tostring(r[#r])}`,
			"*3\r\n:199\r\n:200\r\n$16\r\nC stack overflow\r\n"},
		{`local n=0 local function f() n=n+1 local ok, e = pcall(f) if not ok then error(e, 0) end return ok end local ok, e = pcall(f) return {n, tostring(e)}`,
			"*2\r\n:198\r\n$16\r\nC stack overflow\r\n"},
		// A returning pcall must not make later errors close the upvalues
		// of frames they do not unwind.
		{`local x = 1 local function get() return x end pcall(function() pcall(type) error("e") end) x = 2 return get()`,
			":2\r\n"},
	} {
		if got := evalLim(c.script, nil, Limits{}); got != c.want {
			t.Errorf("%s\ngot  %q\nwant %q", c.script, got, c.want)
		}
	}
}

func TestAssertAndPcallBudgetLine(t *testing.T) {
	for _, c := range []struct{ script, want string }{
		{`assert(nil, 12)`, "-ERR user_script:1: 12" + errSuffix(`assert(nil, 12)`, "1")},
		{`assert(false, 1.5)`, "-ERR user_script:1: 1.5" + errSuffix(`assert(false, 1.5)`, "1")},
		{`assert()`, "-ERR user_script:1: bad argument #1 to 'assert' (value expected)" + errSuffix(`assert()`, "1")},
		{`assert(false, {})`, "-ERR user_script:1: bad argument #2 to 'assert' (string expected, got table)" + errSuffix(`assert(false, {})`, "1")},
		{`assert(false, nil)`, "-ERR user_script:1: assertion failed!" + errSuffix(`assert(false, nil)`, "1")},
		{`return pcall(function() while true do end end)`,
			"-ERR script exceeded its step budget (100000 VM steps)" + errSuffix(`return pcall(function() while true do end end)`, "1")},
		{"local x = 1\nreturn pcall(function()\nwhile true do end end)",
			"-ERR script exceeded its step budget (100000 VM steps)" + errSuffix("local x = 1\nreturn pcall(function()\nwhile true do end end)", "2")},
	} {
		if got := evalLim(c.script, nil, Limits{MaxSteps: 100_000}); got != c.want {
			t.Errorf("%s\ngot  %q\nwant %q", c.script, got, c.want)
		}
	}
}
