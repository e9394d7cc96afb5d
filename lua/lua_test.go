package lua

import (
	"encoding/json"
	"reflect"
	"strings"
	"sync"
	"testing"
)

func eval(t *testing.T, f *fakeStore, script string, keys, args []string) string {
	t.Helper()
	var call Caller
	if f != nil {
		call = f.call
	}
	return string(Eval([]byte(script), toBytes(keys), toBytes(args), call, Limits{}))
}

func errSuffix(script string, line string) string {
	return " script: " + SHA1Hex([]byte(script)) + ", on @user_script:" + line + ".\r\n"
}

func TestSHA1Hex(t *testing.T) {
	if got := SHA1Hex([]byte("")); got != "da39a3ee5e6b4b0d3255bfef95601890afd80709" {
		t.Fatal(got)
	}
	if got := SHA1Hex([]byte("return 1")); got != "e0e1f9fabfc9d4800c877a703b823ac0578ff8db" {
		t.Fatal(got)
	}
}

func TestLuaToRESP(t *testing.T) {
	for script, want := range map[string]string{
		`return 1`:                       ":1\r\n",
		`return 3.99`:                    ":3\r\n",
		`return -3.99`:                   ":-3\r\n",
		`return 1/0`:                     ":-9223372036854775808\r\n",
		`return 'x'`:                     "$1\r\nx\r\n",
		`return true`:                    ":1\r\n",
		`return false`:                   "$-1\r\n",
		`return nil`:                     "$-1\r\n",
		`return {1, 2, nil, 4}`:          "*2\r\n:1\r\n:2\r\n",
		`return {1, {2.5, {'a'}}, true}`: "*3\r\n:1\r\n*2\r\n:2\r\n*1\r\n$1\r\na\r\n:1\r\n",
		`return {ok = 'fine'}`:           "+fine\r\n",
		`return {err = 'BAD thing'}`:     "-BAD thing\r\n",
		`return {err = 'x', ok = 'y'}`:   "-x\r\n",
		`return {ok = 'a\r\nb'}`:         "+a  b\r\n",
		`return {double = 1.5}`:          "$3\r\n1.5\r\n",
		`return redis.error_reply('x')`:  "-ERR x\r\n",
		`return redis.status_reply('S')`: "+S\r\n",
		`return {}`:                      "*0\r\n",
		`return 1, 2`:                    ":1\r\n",
	} {
		if got := eval(t, nil, script, nil, nil); got != want {
			t.Errorf("%s: got %q want %q", script, got, want)
		}
	}
}

func TestRESPToLua(t *testing.T) {
	f := newFakeStore()
	f.data["s"] = "str"
	f.lists["l"] = []string{"a", "b"}
	for script, want := range map[string]string{
		`return type(redis.call('get', 'missing'))`:                    "$7\r\nboolean\r\n",
		`return redis.call('get', 'missing') == false`:                 ":1\r\n",
		`return redis.call('set', 'k', 'v').ok`:                        "$2\r\nOK\r\n",
		`return type(redis.call('incr', 'n'))`:                         "$6\r\nnumber\r\n",
		`return redis.call('get', 's')`:                                "$3\r\nstr\r\n",
		`local r = redis.call('lrange', 'l', 0, -1) return {#r, r[2]}`: "*2\r\n:2\r\n$1\r\nb\r\n",
		`return redis.pcall('incr', 'l').err`:                          "$65\r\nWRONGTYPE Operation against a key holding the wrong kind of value\r\n",
		`return redis.pcall('incr', 'l')`:                              "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
		`return {pcall(redis.call, 'incr', 'l')}`:                      "*2\r\n$-1\r\n$65\r\nWRONGTYPE Operation against a key holding the wrong kind of value\r\n",
	} {
		if got := eval(t, f, script, nil, nil); got != want {
			t.Errorf("%s: got %q want %q", script, got, want)
		}
	}
}

func TestCallArguments(t *testing.T) {
	f := newFakeStore()
	eval(t, f, `redis.call('set', 'a', 0.1) redis.call('set', 'b', 12) redis.call('set', 'c', -3.5)`, nil, nil)
	want := map[string]string{"a": "0.10000000000000001", "b": "12", "c": "-3.5"}
	for k, v := range want {
		if f.data[k] != v {
			t.Errorf("%s = %q, want %q", k, f.data[k], v)
		}
	}
	for script, msg := range map[string]string{
		`return redis.call('get', {})`:      "-ERR Lua redis lib command arguments must be strings or integers",
		`return redis.call('get', nil)`:     "-ERR Lua redis lib command arguments must be strings or integers",
		`return redis.call()`:               "-ERR Please specify at least one argument for this redis lib call",
		`return redis.call('nosuch')`:       "-ERR Unknown Redis command called from script",
		`return redis.call('get')`:          "-ERR Wrong number of args calling Redis command from script",
		`return redis.call('eval', 'x', 0)`: "-ERR This Redis command is not allowed from script",
		`return redis.call('incr', 'l')`:    "-WRONGTYPE Operation against a key holding the wrong kind of value",
	} {
		f.lists["l"] = []string{"x"}
		if got := eval(t, f, script, nil, nil); got != msg+errSuffix(script, "1") {
			t.Errorf("%s: got %q", script, got)
		}
	}
	// Commands refused by the engine never reach the Caller.
	f.calls = nil
	eval(t, f, `redis.pcall('eval', 'return 1', 0) redis.pcall('get') redis.pcall('nosuch')`, nil, nil)
	if len(f.calls) != 0 {
		t.Errorf("caller saw %v", f.calls)
	}
	// A command our server lacks reads like Redis's unknown command.
	if got := eval(t, f, `return redis.pcall('xadd', 's', '*', 'f', 'v')`, nil, nil); got != "-ERR Unknown Redis command called from script\r\n" {
		t.Errorf("got %q", got)
	}
}

func TestRuntimeErrorTexts(t *testing.T) {
	for script, want := range map[string]string{
		"local x = nil\nx()":                        "-ERR user_script:2: attempt to call local 'x' (a nil value)" + errSuffix("local x = nil\nx()", "2"),
		`local t = {} t.x.y = 1`:                    "-ERR user_script:1: attempt to index field 'x' (a nil value)",
		`return nil + 1`:                            "-ERR user_script:1: attempt to perform arithmetic on a nil value",
		`local s = 'a' return s + 1`:                "-ERR user_script:1: attempt to perform arithmetic on local 's' (a string value)",
		`return {} < {}`:                            "-ERR user_script:1: attempt to compare two table values",
		`return 1 < 'x'`:                            "-ERR user_script:1: attempt to compare number with string",
		`return {} .. 'x'`:                          "-ERR user_script:1: attempt to concatenate a table value",
		`return ('x'):bad()`:                        "-ERR user_script:1: attempt to call method 'bad' (a nil value)",
		`return redis.cal('x')`:                     "-ERR user_script:1: attempt to call field 'cal' (a nil value)",
		`return nosuch`:                             "-ERR user_script:1: Script attempted to access nonexistent global variable 'nosuch'",
		`x = 1`:                                     "-ERR user_script:1: Attempt to modify a readonly table",
		`error('boom')`:                             "-ERR user_script:1: boom",
		`error({err = 'CODE msg'})`:                 "-CODE msg",
		`return string.rep()`:                       "-ERR user_script:1: bad argument #1 to 'rep' (string expected, got no value)",
		`return math.floor('a')`:                    "-ERR user_script:1: bad argument #1 to 'floor' (number expected, got string)",
		`for i = 1, 'x' do end`:                     "-ERR user_script:1: 'for' limit must be a number",
		`return cjson.decode('x')`:                  "-ERR user_script:1: Expected value but found invalid token at character 1",
		`return cjson.encode({[1] = 1, [100] = 1})`: "-ERR user_script:1: Cannot serialise table: excessively sparse array",
	} {
		got := eval(t, nil, script, nil, nil)
		if !strings.HasSuffix(want, "\r\n") {
			want += errSuffix(script, "1")
		}
		if got != want {
			t.Errorf("%s:\n got %q\nwant %q", script, got, want)
		}
	}
	compile := map[string]string{
		`return 1 +`:  "-ERR Error compiling script (new function): user_script:1: unexpected symbol near '<eof>'\r\n",
		`x y`:         "-ERR Error compiling script (new function): user_script:1: '=' expected near 'y'\r\n",
		`goto done`:   "-ERR Error compiling script (new function): user_script:1: '=' expected near 'done'\r\n",
		"if x then\n": "-ERR Error compiling script (new function): user_script:2: 'end' expected (to close 'if' at line 1) near '<eof>'\r\n",
	}
	for script, want := range compile {
		if got := eval(t, nil, script, nil, nil); got != want {
			t.Errorf("%s:\n got %q\nwant %q", script, got, want)
		}
	}
}

func TestSandbox(t *testing.T) {
	for _, name := range []string{"os", "io", "print", "require", "loadfile", "dofile", "debug", "setfenv", "getfenv", "module", "package", "newproxy"} {
		script := "return type(" + name + ")"
		want := "-ERR user_script:1: Script attempted to access nonexistent global variable '" + name + "'" + errSuffix(script, "1")
		if got := eval(t, nil, script, nil, nil); got != want {
			t.Errorf("%s: %q", name, got)
		}
	}
	for _, script := range []string{
		`string.foo = 1`, `KEYS = {}`, `getmetatable('').__index = {}`, `redis.call = nil`,
		`cjson.null = 1`, `table.insert(string, 1)`, `rawset(math, 'pi', 3)`, `setmetatable(_G, nil)`,
	} {
		if got := eval(t, nil, script, nil, nil); !strings.Contains(got, "Attempt to modify a readonly table") {
			t.Errorf("%s: %q", script, got)
		}
	}
	// loadstring refuses bytecode: it is parsed as text.
	got := eval(t, nil, `local f, e = loadstring('\27Lua') return {tostring(f), e}`, nil, nil)
	if !strings.Contains(got, "unexpected symbol near 'char(27)'") || !strings.Contains(got, "nil") {
		t.Error(got)
	}
	// KEYS/ARGV are per-run tables the script may modify.
	if got := eval(t, nil, `KEYS[1] = 'x' return KEYS[1]`, []string{"k"}, nil); got != "$1\r\nx\r\n" {
		t.Error(got)
	}
}

// TestNoLeakBetweenRuns checks that nothing one script does survives into
// the next run on a pooled interpreter: results must not depend on which
// engine a node happened to use.
func TestNoLeakBetweenRuns(t *testing.T) {
	hostile := []string{
		`pcall(function() string.upper = nil end) pcall(rawset, _G, 'x', 1) pcall(setmetatable, string, {}) return 1`,
		`local mt = getmetatable('') pcall(function() mt.__index = {} end) return 1`,
		`math.randomseed(99) for i = 1, 10 do math.random() end return 1`,
		`cjson.encode_max_depth(2) cjson.encode_number_precision(3) return 1`,
		`collectgarbage('setpause', 7) return 1`,
		`local co = coroutine.wrap(function() error('x') end) pcall(co) return 1`,
		// Engine scratch state: a decode and an encode failing half way,
		// pattern matching, shapes seen for the first time.
		`pcall(cjson.decode, '{"a":[1,2,{"b":[{"x":1}, tru') pcall(cjson.encode, {a = {b = {1, print}}}) return 1`,
		`for w in string.gmatch('a.b.c', '[^.]+') do string.find(w, '(%a)') end pcall(string.rep) return 1`,
		`local t = cjson.decode('[{"q":1,"r":2},{"q":1,"r":2},{"r":1,"q":2}]') t[1].s = 1 return cjson.encode(t)`,
	}
	probe := `return {string.upper('a'), tostring(rawget(_G, 'x')), tostring(math.random()), cjson.encode({{{1.23456}}}), collectgarbage('setpause'), tostring({}), tostring(coroutine.running())}`
	want := eval(t, nil, probe, nil, nil)
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				for _, h := range hostile {
					Eval([]byte(h), nil, nil, nil, Limits{})
				}
				if got := string(Eval([]byte(probe), nil, nil, nil, Limits{})); got != want {
					t.Errorf("state leaked: %q != %q", got, want)
					return
				}
			}
		}()
	}
	wg.Wait()
	if want != "*7\r\n$1\r\nA\r\n$3\r\nnil\r\n$16\r\n0.39646477363839\r\n$13\r\n[[[1.23456]]]\r\n:200\r\n$17\r\ntable: 0x10000040\r\n$3\r\nnil\r\n" {
		t.Errorf("probe: %q", want)
	}
	// What the scratch state could disturb (this probe is also a
	// differential case, so its reply is Redis's).
	want = eval(t, nil, shapeProbe, nil, nil)
	for i := 0; i < 20; i++ {
		for _, h := range hostile {
			Eval([]byte(h), nil, nil, nil, Limits{})
		}
		if got := eval(t, nil, shapeProbe, nil, nil); got != want {
			t.Fatalf("state leaked: %q != %q", got, want)
		}
	}
}

func TestRandomMatchesRedis(t *testing.T) {
	// Values observed on redis-server 7.0.15.
	got := eval(t, nil, `math.randomseed(42) return {tostring(math.random()), math.random(1000000)}`, nil, nil)
	if got != "*2\r\n$16\r\n0.74452500033403\r\n:342702\r\n" {
		t.Error(got)
	}
	got = eval(t, nil, `return {tostring(math.random()), math.random(10), math.random(5, 50)}`, nil, nil)
	if got != "*3\r\n$16\r\n0.39646477363839\r\n:9\r\n:21\r\n" {
		t.Error(got)
	}
}

func TestBitLibrary(t *testing.T) {
	got := eval(t, nil, `return {bit.band(0xff, 0x0f), bit.bor(1, 2), bit.bxor(3, 1), bit.bnot(0), bit.lshift(1, 31), bit.rshift(-1, 28), bit.arshift(-256, 4), bit.tobit(2^32 + 5), bit.tohex(255), bit.tohex(-1, -4)}`, nil, nil)
	if got != "*10\r\n:15\r\n:3\r\n:2\r\n:-1\r\n:-2147483648\r\n:15\r\n:-16\r\n:5\r\n$8\r\n000000ff\r\n$4\r\nFFFF\r\n" {
		t.Error(got)
	}
}

func TestCjsonRules(t *testing.T) {
	for script, want := range map[string]string{
		`return cjson.encode({})`:                               `{}`,
		`return cjson.encode({1, 2, 3})`:                        `[1,2,3]`,
		`return cjson.encode({[1] = 1, [3] = 3})`:               `[1,null,3]`,
		`return cjson.encode({a = 1, b = 2, c = 3})`:            `{"a":1,"c":3,"b":2}`,
		`return cjson.encode(1/3)`:                              `0.33333333333333`,
		`return cjson.encode('a/b\1é')`:                         `"a\/b\u0001é"`,
		`return cjson.encode({cjson.null, true, false})`:        `[null,true,false]`,
		`return cjson.encode(cjson.decode('[1e400]'))`:          "",
		`return cjson.encode(cjson.decode('{"a":[],"b":{}}'))`:  `{"a":{},"b":{}}`,
		`return tostring(cjson.decode('12345678901234567890'))`: `1.2345678901235e+19`,
	} {
		got := eval(t, nil, script, nil, nil)
		if want == "" {
			if !strings.Contains(got, "Cannot serialise number: must not be NaN or Inf") {
				t.Errorf("%s: %q", script, got)
			}
			continue
		}
		if got != string(appendBulk(nil, want)) {
			t.Errorf("%s: got %q want %q", script, got, want)
		}
	}
}

func TestNodeREDNestedSetDelete(t *testing.T) {
	f := newFakeStore()
	key := "nodered:context:global:default"
	steps := []struct {
		script, path, value string
	}{
		{nestedSetScript, "a.b.c", `{"x":1}`},
		{nestedSetScript, "a.b.d", `"two"`},
		{nestedSetScript, "list", `[1,2,3]`},
		{nestedSetScript, "a.e", `null`},
		{nestedDeleteScript, "a.b.c", ""},
		{nestedDeleteScript, "nope.x", ""},
	}
	for _, s := range steps {
		args := []string{s.path}
		if s.value != "" {
			args = append(args, s.value)
		}
		got := eval(t, f, s.script, []string{key}, args)
		want := ":1\r\n"
		if s.path == "nope.x" {
			want = ":0\r\n"
		}
		if got != want {
			t.Fatalf("%s %s: %q", s.path, s.value, got)
		}
	}
	var doc map[string]any
	if err := json.Unmarshal([]byte(f.data[key]), &doc); err != nil {
		t.Fatalf("%q: %v", f.data[key], err)
	}
	want := map[string]any{"a": map[string]any{"b": map[string]any{"d": "two"}, "e": nil}, "list": []any{1.0, 2.0, 3.0}}
	if !reflect.DeepEqual(doc, want) {
		t.Errorf("doc %v", doc)
	}
	if !strings.Contains(f.data[key], `"e":null`) {
		t.Errorf("cjson.null not kept: %s", f.data[key])
	}
}

func TestDeterministicTostring(t *testing.T) {
	script := `local a, b = {}, function() end return {tostring(a), tostring(b), tostring(a), tostring(coroutine.create(b))}`
	first := eval(t, nil, script, nil, nil)
	for i := 0; i < 20; i++ {
		if got := eval(t, nil, script, nil, nil); got != first {
			t.Fatalf("%q != %q", got, first)
		}
	}
	if !strings.Contains(first, "table: 0x10000040") || !strings.Contains(first, "function: 0x10000080") {
		t.Error(first)
	}
}

func TestConcurrentEval(t *testing.T) {
	f := newFakeStore()
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			key := "ctx" + string(rune('a'+g))
			for i := 0; i < 100; i++ {
				out := Eval([]byte(nestedSetScript), toBytes([]string{key}), toBytes([]string{"x.y", `{"n":1}`}), f.call, Limits{})
				if string(out) != ":1\r\n" {
					t.Errorf("%q", out)
					return
				}
			}
		}(g)
	}
	wg.Wait()
}

func TestCompileCacheBounded(t *testing.T) {
	for i := 0; i < maxCachedScripts+50; i++ {
		Eval([]byte("return "+strings.Repeat("1+", i%7)+"1 -- "+string(rune(i))), nil, nil, nil, Limits{})
	}
	cacheMu.RLock()
	n := len(cache)
	cacheMu.RUnlock()
	if n > maxCachedScripts {
		t.Errorf("cache holds %d scripts", n)
	}
}

// TestLayout guards the gopher-lua internals the engine reads (layout.go):
// a gopher-lua upgrade that changes them must be noticed here.
func TestLayout(t *testing.T) {
	if !layoutOK {
		t.Fatal("gopher-lua's internal layout changed: update layout.go")
	}
	// Without these the engine still works, only slower.
	if !tableBuildOK || !boxOK {
		t.Fatal("gopher-lua's table or interface layout changed: update layout.go / tablebuild.go")
	}
}
