package lua

import (
	"strings"
	"testing"
)

const smallSetScript = `return redis.call('SET', KEYS[1], ARGV[1])`

func BenchmarkEvalSmallSet(b *testing.B) {
	f := newFakeStore()
	body := []byte(smallSetScript)
	keys := [][]byte{[]byte("k")}
	args := [][]byte{[]byte("v")}
	b.ReportAllocs()
	for b.Loop() {
		out := Eval(body, keys, args, f.callNoLog, Limits{})
		if string(out) != "+OK\r\n" {
			b.Fatalf("%q", out)
		}
	}
}

// benchDoc is a ~1 KB context-store document.
var benchDoc = func() string {
	var sb strings.Builder
	sb.WriteString(`{"flows":{"count":3,"names":["alpha","beta","gamma"],"meta":{"owner":"admin","tags":{"a":1,"b":2}}},`)
	sb.WriteString(`"settings":{"theme":"dark","ratio":0.75,"enabled":true,"nothing":null,"limits":[1,2,3,4,5,6,7,8,9,10]},`)
	sb.WriteString(`"users":[`)
	for i := 0; i < 8; i++ {
		if i > 0 {
			sb.WriteString(",")
		}
		sb.WriteString(`{"id":` + string(rune('0'+i)) + `,"name":"user number ` + string(rune('0'+i)) + `","mail":"u@example.com","admin":false}`)
	}
	sb.WriteString(`],"path":"a/b/c","empty":[],"obj":{}}`)
	return sb.String()
}()

func BenchmarkEvalCjsonRMW(b *testing.B) {
	f := newFakeStore()
	f.data["ctx"] = benchDoc
	body := []byte(nestedSetScript)
	keys := [][]byte{[]byte("ctx")}
	args := [][]byte{[]byte("flows.meta.owner"), []byte(`"bob"`)}
	b.ReportAllocs()
	b.SetBytes(int64(len(benchDoc)))
	for b.Loop() {
		f.data["ctx"] = benchDoc
		out := Eval(body, keys, args, f.callNoLog, Limits{})
		if string(out) != ":1\r\n" {
			b.Fatalf("%q", out)
		}
	}
}

func BenchmarkStepRate(b *testing.B) {
	body := []byte(`local n = 0 for i = 1, 1000000 do n = n + i end return n`)
	b.ReportAllocs()
	for b.Loop() {
		Eval(body, nil, nil, nil, Limits{})
	}
}

// benchRMWScript is scripts/bench.sh's EVAL_RMW: this benchmark measures
// what the cluster benchmark sends.
var benchRMWScript = readScript("testdata/bench_rmw.lua")

// BenchmarkEvalBenchRMW runs benchRMWScript against the ~1 KB document its
// own first run creates (bench.sh's steady state: -r 1000 keys, each
// updated many times).
func BenchmarkEvalBenchRMW(b *testing.B) {
	f := newFakeStore()
	body := []byte(benchRMWScript)
	keys := [][]byte{[]byte("doc:000000000042")}
	args := [][]byte{[]byte("2026-11-21T00:00:00Z")}
	if out := Eval(body, keys, args, f.callNoLog, Limits{}); string(out) != ":1\r\n" {
		b.Fatalf("%q", out)
	}
	doc := f.data[string(keys[0])]
	b.ReportAllocs()
	b.SetBytes(int64(len(doc)))
	for b.Loop() {
		f.data[string(keys[0])] = doc
		out := Eval(body, keys, args, f.callNoLog, Limits{})
		if string(out) != ":2\r\n" {
			b.Fatalf("%q", out)
		}
	}
}
