package lua

import (
	"math"
	"unsafe"

	glua "github.com/yuin/gopher-lua"
)

// Building tables in one go.
//
// cjson.decode builds most of the tables a typical script touches. Through
// gopher-lua's API each string key is boxed into an interface up to three
// times and goes into a k2i map and a keys slice that both grow from empty.
// buildRecord and buildArray produce the same table state (same fields,
// same key order, same values) with every structure allocated once at its
// final size, and the table itself and the boxes taken from an arena.

// buildRecord returns a table holding keys[i] = vals[i], assigned in that
// order: what CreateTable(0, len(keys)) followed by RawSetString(keys[i],
// vals[i]) for each i gives, duplicate keys included. vals holds no nil:
// its one caller, cjson.decode, decodes null as cjson.null.
func (e *engine) buildRecord(L *glua.LState, a *arena, keys []string, vals []glua.LValue) *glua.LTable {
	n := len(keys)
	if !tableBuildOK {
		t := L.CreateTable(0, n)
		for i, k := range keys {
			t.RawSetString(k, vals[i])
		}
		return t
	}
	t := a.table()
	if n == 0 {
		return t // CreateTable(0, 0) allocates no hash part
	}
	if sh := e.recordShape(keys); sh != nil {
		fromShape(t, sh, keys, vals)
		return t
	}
	sd := make(map[string]glua.LValue, n)
	ks := make([]glua.LValue, 0, n)
	k2i := make(map[glua.LValue]int, n)
	for i, k := range keys {
		before := len(sd)
		sd[k] = vals[i]
		if len(sd) == before {
			continue // a duplicate key: RawSetString only replaces the value
		}
		// Boxed once, shared by keys and k2i (RawSetString boxes it anew
		// for each use).
		lk := a.str(k)
		k2i[lk] = len(ks)
		ks = append(ks, lk)
	}
	setRecord(t, sd, ks, k2i)
	return t
}

// setRecord writes a new table's string-keyed part: strdict, and keys and
// k2i, the key index in assignment order.
func setRecord(t *glua.LTable, sd map[string]glua.LValue, keys []glua.LValue, k2i map[glua.LValue]int) {
	p := unsafe.Pointer(t)
	*(*map[string]glua.LValue)(unsafe.Add(p, offTStrdict)) = sd
	*(*[]glua.LValue)(unsafe.Add(p, offTKeys)) = keys
	*(*map[glua.LValue]int)(unsafe.Add(p, offTK2i)) = k2i
}

// buildArray returns a table holding vals[i] at index i+1: what
// CreateTable(len(vals), 0) followed by RawSetInt(i+1, vals[i]) for each i
// gives (gopher-lua appends even nil values to the array part).
func buildArray(L *glua.LState, a *arena, vals []glua.LValue) *glua.LTable {
	if !tableBuildOK {
		t := L.CreateTable(len(vals), 0)
		for i, v := range vals {
			t.RawSetInt(i+1, v)
		}
		return t
	}
	t := a.table()
	if len(vals) == 0 {
		return t // CreateTable(0, 0) allocates no array part
	}
	*(*[]glua.LValue)(unsafe.Add(unsafe.Pointer(t), offTArray)) = append([]glua.LValue(nil), vals...)
	return t
}

// Allocating in chunks.
//
// Storing a string or a number in an LValue allocates a copy of it for the
// interface to point to: one small allocation per decoded key and value,
// plus one per table. arena copies them into shared chunks instead and, for
// strings and numbers, builds interfaces pointing there, as the runtime
// would point at its own copy. The copies are never written again, a chunk
// is typed memory of the right element type (the GC scans and keeps it like
// any other), and a chunk lives as long as any value in it, which for the
// values of one decoded document is about as long as they would anyway.
// gopher-lua's VM boxes its numbers the same way (allocator in alloc.go).
type arena struct {
	strs []string
	nums []float64
	tabs []glua.LTable

	// Expected numbers of strings and tables still to come, from a cheap
	// scan of the input: the first chunk is sized by them.
	wantStrs, wantTabs int
}

// maxChunk bounds a chunk; later chunks double from 8 up to it.
const maxChunk = 1024

func chunkSize(prev, want int) int {
	if prev == 0 && want > 0 {
		return min(want, maxChunk)
	}
	return min(max(2*prev, 8), maxChunk)
}

// ifaceWords is the layout of a non-empty interface value.
type ifaceWords struct{ tab, data unsafe.Pointer }

var (
	strTab, numTab unsafe.Pointer // itabs of LString and LNumber as LValue
	boxOK          bool
)

func init() {
	var s glua.LValue = glua.LString("")
	var n glua.LValue = glua.LNumber(1)
	strTab = (*ifaceWords)(unsafe.Pointer(&s)).tab
	numTab = (*ifaceWords)(unsafe.Pointer(&n)).tab
	// Check the assumption on a sample before relying on it.
	str, num := "probe", 2.5
	bs, bn := makeIface(strTab, unsafe.Pointer(&str)), makeIface(numTab, unsafe.Pointer(&num))
	boxOK = unsafe.Sizeof(s) == unsafe.Sizeof(ifaceWords{}) &&
		bs == glua.LString("probe") && bn == glua.LNumber(2.5) &&
		bs.Type() == glua.LTString && bn.Type() == glua.LTNumber
}

func makeIface(tab, data unsafe.Pointer) (v glua.LValue) {
	w := (*ifaceWords)(unsafe.Pointer(&v))
	w.tab, w.data = tab, data
	return v
}

func (a *arena) str(s string) glua.LValue {
	if !boxOK {
		return glua.LString(s)
	}
	if len(a.strs) == cap(a.strs) {
		a.strs = make([]string, 0, chunkSize(cap(a.strs), a.wantStrs))
	}
	a.strs = append(a.strs, s)
	return makeIface(strTab, unsafe.Pointer(&a.strs[len(a.strs)-1]))
}

// smallInts are the boxes of 0..127, shared like gopher-lua's preloads.
var smallInts = func() (t [128]glua.LValue) {
	for i := range t {
		t[i] = glua.LNumber(i)
	}
	return t
}()

func (a *arena) num(f float64) glua.LValue {
	if f >= 0 && f < float64(len(smallInts)) && f == float64(int(f)) && !(f == 0 && math.Signbit(f)) {
		return smallInts[int(f)]
	}
	if !boxOK {
		return glua.LNumber(f)
	}
	if len(a.nums) == cap(a.nums) {
		a.nums = make([]float64, 0, chunkSize(cap(a.nums), 0))
	}
	a.nums = append(a.nums, f)
	return makeIface(numTab, unsafe.Pointer(&a.nums[len(a.nums)-1]))
}

// table returns a new empty table, as &LTable{Metatable: LNil}.
func (a *arena) table() *glua.LTable {
	if len(a.tabs) == cap(a.tabs) {
		a.tabs = make([]glua.LTable, 0, chunkSize(cap(a.tabs), a.wantTabs))
	}
	a.tabs = append(a.tabs, glua.LTable{Metatable: glua.LNil})
	return &a.tabs[len(a.tabs)-1]
}
