package lua

import "testing"

func TestSmoke(t *testing.T) {
	f := newFakeStore()
	f.lists["lst"] = []string{"a", "b"}
	for _, s := range []string{
		"return 1",
		"return redis.call('set', KEYS[1], ARGV[1])",
		"return redis.call('get', KEYS[1])",
		"return redis.call('incr','lst')",
		"return redis.pcall('incr','lst')",
		"return {1,2,{3,'x'},true,false}",
		"return x",
		"x = 1",
		"local x = nil\nx()",
		"return cjson.encode({a=1,b=2,c=3})",
		"return cjson.encode(cjson.decode('{\"name\":\"x\",\"value\":{\"deep\":[1,2,3]},\"ts\":123,\"flag\":true,\"n\":null}'))",
		"return tostring(1/3) .. (1/3)",
		"return {tostring(math.random()), tostring(math.random(10))}",
		"while true do end",
		"local t = {} t.x.y = 1",
		"return 'a' + 1",
		"return {} < 1",
		"return string.rep()",
		"return string.format('%5.2f|%d|%s|%q', 3.14159, 3, 'x', 'a\\nb')",
		"return {string.find('hello world', 'o w')}",
		"return {string.gsub('hello world', 'o', '0')}",
		"return redis.call('nosuch')",
		"local s = 'x' while true do s = s .. s end",
		"return bit.tohex(255)",
		"error('boom')",
		"error({err='MY boom'})",
		"return 1 +",
		"return rawset(string, 'x', 1)",
		"string.foo = 1",
		"local t = {} for i=1,10 do t['k'..i] = i end local r = {} for k in pairs(t) do r[#r+1] = k end return r",
	} {
		out := Eval([]byte(s), [][]byte{[]byte("k1")}, [][]byte{[]byte("v1")}, f.call, Limits{MaxSteps: 1_000_000})
		t.Logf("%s\n   -> %q", s, out)
	}
}
