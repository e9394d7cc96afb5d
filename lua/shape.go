package lua

import (
	"hash/maphash"
	"maps"
	"slices"
	"strings"
	"unsafe"

	glua "github.com/yuin/gopher-lua"
)

// Table shapes.
//
// Documents repeat a few key sequences over and over ({"id", "name",
// "mail"} for every user), and two costs depend on nothing but that
// sequence:
//
//   - Lua's iteration order of a table whose keys are all strings, all
//     live, with no array part and no constructor size hint: replaying it
//     into the ltable model costs a few hundred ns per table, and
//     cjson.encode needs the order of every object it writes.
//   - gopher-lua's key index of a decoded object (the keys slice and the
//     k2i map), which costs a hash and a map insert per key.
//
// So each engine remembers recent shapes: the order once computed, and a
// template k2i map and strdict that a decoded object clones (a small Go map
// clones by copying its memory, without rehashing). Every use checks the
// key sequence string by string against the remembered one, so the cache
// only saves work: its content, which differs between engines and nodes,
// never changes a result.

const (
	// Remembered shapes per engine, cleared when full. A shape of the
	// largest size costs ~6 KB (keys, two maps, order), so an engine holds
	// at most ~800 KB of them; Node-RED's documents need a handful.
	maxShapes    = 128
	maxShapeKeys = 32 // larger tables are never cached
)

type shape struct {
	keys []string // the key sequence (copies: no hold on script strings)
	perm []int32  // Lua's order as indices into keys; nil until computed

	// Record template, set once the shape was decoded twice: keys boxed,
	// and maps holding exactly them (strdict's values are placeholders).
	boxed  []glua.LValue
	k2i    map[glua.LValue]int
	strdic map[string]glua.LValue
	dup    bool // the sequence repeats a key: no template
}

// shapeCache maps a key sequence's hash to its shape. A nil entry marks a
// hash seen once: a shape is copied in only when it comes back, so that
// tables of one-off shapes do not pay for copies nobody reuses.
type shapeCache map[uint64]*shape

var shapeSeed = maphash.MakeSeed()

func shapeStep(h uint64, s string) uint64 {
	return (h ^ maphash.String(shapeSeed, s)) * 0x100000001b3
}

// shapeOf returns the hash of t's key sequence, and whether t is a table
// whose order the cache may serve: see above.
func shapeOf(t *glua.LTable, keys []glua.LValue) (uint64, bool) {
	if len(keys) == 0 || len(keys) > maxShapeKeys || !tableBuildOK {
		return 0, false
	}
	// All keys live: with string keys only, strdict holds exactly the
	// live ones and keys every one ever set.
	if len(*(*map[string]glua.LValue)(unsafe.Add(unsafe.Pointer(t), offTStrdict))) != len(keys) {
		return 0, false
	}
	h := uint64(len(keys))
	for _, k := range keys {
		s, ok := k.(glua.LString)
		if !ok {
			return 0, false
		}
		h = shapeStep(h, string(s))
	}
	return h, true
}

// is reports whether sh's key sequence is the n keys key(0..n-1).
func (sh *shape) is(n int, key func(int) string) bool {
	if len(sh.keys) != n {
		return false
	}
	for i, k := range sh.keys {
		if key(i) != k {
			return false
		}
	}
	return true
}

// lvKey and strKey read key i of a key sequence for shape.is.
func lvKey(keys []glua.LValue) func(int) string {
	return func(i int) string { return string(keys[i].(glua.LString)) }
}

func strKey(keys []string) func(int) string {
	return func(i int) string { return keys[i] }
}

// lookup returns the shape of hash h if its key sequence is keys.
func (c shapeCache) lookup(h uint64, keys []glua.LValue) *shape {
	if sh := c[h]; sh != nil && sh.is(len(keys), lvKey(keys)) {
		return sh
	}
	return nil
}

// appendCached appends the remembered order of keys to dst, if there is one.
func (c shapeCache) appendCached(dst []glua.LValue, h uint64, keys []glua.LValue) ([]glua.LValue, bool) {
	sh := c.lookup(h, keys)
	if sh == nil || sh.perm == nil {
		return dst, false
	}
	dst = slices.Grow(dst, len(sh.perm))
	for _, i := range sh.perm {
		dst = append(dst, keys[i])
	}
	return dst, true
}

// sighting returns the shape to fill in for hash h, or nil on a first
// sighting (which it records).
func (e *engine) sighting(h uint64, n int, key func(int) string) *shape {
	if e.shapes == nil || len(e.shapes) >= maxShapes {
		e.shapes = make(shapeCache)
	}
	sh, seen := e.shapes[h]
	if !seen {
		e.shapes[h] = nil
		return nil
	}
	if sh != nil && sh.is(n, key) {
		return sh
	}
	// Seen before, or a different sequence with the same hash: (re)place.
	sh = &shape{keys: make([]string, n)}
	for i := range sh.keys {
		sh.keys[i] = strings.Clone(key(i))
	}
	e.shapes[h] = sh
	return sh
}

// remember records order (a permutation of keys) for the shape h.
func (e *engine) remember(h uint64, keys, order []glua.LValue) {
	if len(order) != len(keys) {
		return
	}
	sh := e.sighting(h, len(keys), lvKey(keys))
	if sh == nil {
		return
	}
	perm := make([]int32, len(keys))
	for j, k := range order {
		i := 0
		for i < len(keys) && keys[i] != k {
			i++
		}
		if i == len(keys) {
			return // not a permutation: never expected, just do not cache
		}
		perm[j] = int32(i)
	}
	sh.perm = perm
}

// recordShape returns the template for a record with these keys (assigned
// non-nil values), making one on the second sighting of the sequence.
func (e *engine) recordShape(keys []string) *shape {
	n := len(keys)
	if n == 0 || n > maxShapeKeys {
		return nil
	}
	h := uint64(n)
	for _, k := range keys {
		h = shapeStep(h, k)
	}
	if sh := e.shapes[h]; sh != nil && (sh.boxed != nil || sh.dup) && sh.is(n, strKey(keys)) {
		if sh.dup {
			return nil
		}
		return sh
	}
	sh := e.sighting(h, n, strKey(keys))
	if sh == nil {
		return nil
	}
	sd := make(map[string]glua.LValue, n)
	k2i := make(map[glua.LValue]int, n)
	boxed := make([]glua.LValue, n)
	for i, k := range sh.keys {
		sd[k] = glua.LTrue
		boxed[i] = glua.LString(k)
		k2i[boxed[i]] = i
	}
	if len(sd) != n {
		sh.dup = true // built the long way, which handles repeated keys
		return nil
	}
	sh.boxed, sh.k2i, sh.strdic = boxed, k2i, sd
	return sh
}

// fromShape fills t as buildRecord would for keys (sh's sequence) and
// non-nil vals.
func fromShape(t *glua.LTable, sh *shape, keys []string, vals []glua.LValue) {
	sd := maps.Clone(sh.strdic)
	for i, k := range keys {
		sd[k] = vals[i]
	}
	setRecord(t, sd, append([]glua.LValue(nil), sh.boxed...), maps.Clone(sh.k2i))
}
