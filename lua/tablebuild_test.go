package lua

import (
	"fmt"
	"math"
	"math/rand"
	"runtime"
	"slices"
	"testing"
	"unsafe"

	glua "github.com/yuin/gopher-lua"
)

// The fast paths of tablebuild.go and shape.go must give tables and orders
// indistinguishable from the slow paths they replace.

// tableState is everything gopher-lua keeps in a table, as comparable text.
func tableState(t *glua.LTable) string {
	sd := *(*map[string]glua.LValue)(unsafe.Add(unsafe.Pointer(t), offTStrdict))
	k2i := *(*map[glua.LValue]int)(unsafe.Add(unsafe.Pointer(t), offTK2i))
	var s string
	for i, k := range tableKeys(t) {
		s += fmt.Sprintf("%q@%d=%v;", k, k2i[k], t.RawGet(k))
		if k2i[k] != i {
			s += "BADINDEX;"
		}
	}
	s += fmt.Sprintf("|sd=%d k2i=%d arr=%d nilsd=%v nilkeys=%v|", len(sd), len(k2i), tableArrayLen(t), sd == nil, tableKeys(t) == nil)
	for k, v := t.Next(glua.LNil); k != glua.LNil; k, v = t.Next(k) {
		s += fmt.Sprintf("%v=%v,", k, v)
	}
	return s
}

func TestBuildRecordMatchesRawSet(t *testing.T) {
	e := newEngine()
	L := e.L
	rng := rand.New(rand.NewSource(1))
	names := []string{"a", "b", "c", "id", "name", "mail", "x1", "x2", "x3", "x4", "x5", "x6", "x7", "x8", "x9"}
	for iter := 0; iter < 2000; iter++ {
		n := rng.Intn(14)
		if iter%50 == 0 {
			n = 20 + rng.Intn(20) // past a small map and past maxShapeKeys
		}
		keys := make([]string, n)
		vals := make([]glua.LValue, n)
		for i := range keys {
			keys[i] = names[rng.Intn(len(names))]
			if n > len(names) {
				keys[i] += fmt.Sprint(rng.Intn(40))
			}
			switch rng.Intn(12) {
			case 0:
				vals[i] = glua.LTrue
			case 1, 2, 3:
				vals[i] = glua.LString(fmt.Sprint("v", i))
			default:
				vals[i] = glua.LNumber(i)
			}
		}
		want := L.CreateTable(0, n)
		for i, k := range keys {
			want.RawSetString(k, vals[i])
		}
		// Three times: first sighting, template made, template used.
		for round := 0; round < 3; round++ {
			var a arena
			got := e.buildRecord(L, &a, keys, vals)
			if gs, ws := tableState(got), tableState(want); gs != ws {
				t.Fatalf("keys %q vals %v round %d:\n got %s\nwant %s", keys, vals, round, gs, ws)
			}
			// Later writes must go the same way too.
			w := L.CreateTable(0, n)
			for i, k := range keys {
				w.RawSetString(k, vals[i])
			}
			for _, tb := range []*glua.LTable{got, w} {
				tb.RawSetString("a", glua.LString("new"))
				tb.RawSetString("zz", glua.LNumber(1))
				tb.RawSetString("b", glua.LNil)
				tb.RawSet(glua.LNumber(1), glua.LTrue)
			}
			if gs, ws := tableState(got), tableState(w); gs != ws {
				t.Fatalf("keys %q after writes:\n got %s\nwant %s", keys, gs, ws)
			}
		}
	}
}

func TestBuildArrayMatchesRawSetInt(t *testing.T) {
	e := newEngine()
	for n := 0; n < 40; n++ {
		vals := make([]glua.LValue, n)
		for i := range vals {
			vals[i] = glua.LNumber(i * i)
			if i%7 == 3 {
				vals[i] = glua.LNil
			}
		}
		want := e.L.CreateTable(n, 0)
		for i, v := range vals {
			want.RawSetInt(i+1, v)
		}
		var a arena
		got := buildArray(e.L, &a, vals)
		if got.Len() != want.Len() || tableArrayLen(got) != tableArrayLen(want) || got.MaxN() != want.MaxN() {
			t.Fatalf("n=%d: len %d/%d", n, got.Len(), want.Len())
		}
		for i := 1; i <= n+1; i++ {
			if got.RawGetInt(i) != want.RawGetInt(i) {
				t.Fatalf("n=%d [%d]: %v != %v", n, i, got.RawGetInt(i), want.RawGetInt(i))
			}
		}
	}
}

func TestArenaValues(t *testing.T) {
	var a arena
	a.wantStrs = 3
	var strs, nums []glua.LValue
	for i := 0; i < 3000; i++ {
		strs = append(strs, a.str(fmt.Sprint("s", i)))
		nums = append(nums, a.num(float64(i)+0.5))
	}
	runtime.GC() // the values must survive a collection intact
	tb := glua.NewState().NewTable()
	for i := range strs {
		s, ok := strs[i].(glua.LString)
		if !ok || s != glua.LString(fmt.Sprint("s", i)) || strs[i] != glua.LValue(glua.LString(fmt.Sprint("s", i))) {
			t.Fatalf("string %d: %#v", i, strs[i])
		}
		if n, ok := nums[i].(glua.LNumber); !ok || n != glua.LNumber(float64(i)+0.5) || nums[i].Type() != glua.LTNumber {
			t.Fatalf("number %d: %#v", i, nums[i])
		}
		tb.RawSet(strs[i], nums[i])
		tb.RawSetH(nums[i], strs[i])
	}
	for i := range strs {
		if tb.RawGetString(fmt.Sprint("s", i)) != glua.LNumber(float64(i)+0.5) || tb.RawGet(glua.LNumber(float64(i)+0.5)) != glua.LString(fmt.Sprint("s", i)) {
			t.Fatalf("table lookups %d", i)
		}
	}
	if v := a.num(math.Copysign(0, -1)).(glua.LNumber); !math.Signbit(float64(v)) {
		t.Fatal("-0 lost its sign")
	}
	if a.num(7) != glua.LNumber(7) || a.num(127.5) != glua.LNumber(127.5) || a.num(-3) != glua.LNumber(-3) {
		t.Fatal("small numbers")
	}
	if cap(a.strs) > maxChunk || cap(a.nums) > maxChunk {
		t.Fatal("chunks not bounded")
	}
}

// TestShapeOrderMatchesReplay compares cached iteration orders with a
// replay on an engine whose cache is emptied before every call.
func TestShapeOrderMatchesReplay(t *testing.T) {
	e := newEngine()
	ref := newEngine()
	rng := rand.New(rand.NewSource(2))
	for iter := 0; iter < 3000; iter++ {
		n := 1 + rng.Intn(maxShapeKeys+4)
		tb := e.L.NewTable()
		for i := 0; i < n; i++ {
			tb.RawSetString(fmt.Sprint("k", rng.Intn(3*n)), glua.LNumber(i))
		}
		switch rng.Intn(8) {
		case 0:
			tb.RawSetString("k1", glua.LNil) // a dead key: not cacheable
		case 1:
			tb.RawSetInt(1, glua.LTrue) // an array part: not cacheable
		case 2:
			tb.RawSet(glua.LTrue, glua.LTrue) // a non-string key
		}
		ref.shapes = nil
		want := ref.tableOrder(tb)
		for round := 0; round < 3; round++ {
			got := e.appendTableOrder([]glua.LValue{glua.LString("prefix")}, tb)
			if !slices.Equal(got[1:], want) || got[0] != glua.LString("prefix") {
				t.Fatalf("round %d: %v != %v", round, got, want)
			}
		}
	}
	if len(e.shapes) == 0 {
		t.Fatal("nothing was cached")
	}
}

// TestShapedRunsRepeat runs cjson round trips of documents with repeated,
// reordered and duplicated key sequences many times: every run, whatever
// the engine and its caches, must give the first run's bytes.
func TestShapedRunsRepeat(t *testing.T) {
	docs := []string{
		benchDoc,
		`[{"a":1,"b":2},{"a":1,"b":2},{"b":1,"a":2},{"a":1,"a":2},{"a":1,"a":2},{"a":1,"b":2,"c":{"a":1,"b":2}}]`,
		`{"k1":1,"k2":2,"k3":3,"k4":4,"k5":5,"k6":6,"k7":7,"k8":8,"k9":9,"k10":10,"k11":11,"k12":12}`,
	}
	script := `local t = cjson.decode(ARGV[1]) local s = cjson.encode(t) for k in pairs(t) do s = s .. tostring(k) end
		if t[1] then t[1].z = 1 t[1].a = nil end t.zz = 1 return {s, cjson.encode(t)}`
	for _, doc := range docs {
		first := string(Eval([]byte(script), nil, [][]byte{[]byte(doc)}, nil, Limits{}))
		if first[0] != '*' {
			t.Fatalf("%s: %q", doc, first)
		}
		for i := 0; i < 50; i++ {
			if got := string(Eval([]byte(script), nil, [][]byte{[]byte(doc)}, nil, Limits{})); got != first {
				t.Fatalf("run %d: %q != %q", i, got, first)
			}
		}
	}
}
