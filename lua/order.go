package lua

import (
	"math"

	glua "github.com/yuin/gopher-lua"
)

// Iteration order.
//
// gopher-lua iterates a table's hash part in insertion order; PUC Lua 5.1
// iterates its array part and then its node vector, whose layout follows
// from the string hash, the collision chain rules and the rehash sizes.
// Scripts observe that order through pairs/next and, above all, through
// cjson.encode: Redis encodes {"a":1,"b":2,"c":3} back as
// {"a":1,"c":3,"b":2}. To give the same bytes, we replay the table's keys
// into a model of Lua 5.1's ltable.c and read the order off the model.
//
// The replay is exact for the tables that matter (decoded JSON, replies,
// tables built by assignment, constructors whose hash-size hint the step
// hook recorded) when keys were only added. Deleted keys are replayed as
// inserted and then deleted, which matches Lua as long as no rehash happened
// after the deletion. The result is deterministic in every case.

type lnode struct {
	key  glua.LValue // nil: free
	h    uint32      // key's hash (see keyHash), so rehashes need not redo it
	mod  bool
	live bool
	next int // -1: end of chain
}

type ltable struct {
	e         *engine
	sizearray int
	array     []bool // live flags of the array part
	node      []lnode
	dummy     bool
	lastfree  int
	spare     []lnode       // the other node buffer, reused across resizes
	nilKeys   []glua.LValue // scratch: keys whose value is nil
}

// sizeHint is a constructor's NEWTABLE size hint (array and hash parts).
type sizeHint struct{ na, nh int }

func (r *run) noteHint(t *glua.LTable, h sizeHint) {
	if r.hints == nil {
		r.hints = make(map[*glua.LTable]sizeHint)
	}
	r.hints[t] = h
}

// tableOrder returns t's keys with non-nil values in Lua 5.1's order.
func (e *engine) tableOrder(t *glua.LTable) []glua.LValue {
	return e.appendTableOrder(nil, t)
}

// appendTableOrder is tableOrder appending to dst, for callers that reuse
// a buffer.
func (e *engine) appendTableOrder(dst []glua.LValue, t *glua.LTable) []glua.LValue {
	if !layoutOK {
		return append(dst, gopherOrder(t)...)
	}
	var h sizeHint
	hinted := false
	if r := e.run; r != nil && r.hints != nil {
		h, hinted = r.hints[t]
	}
	arr := t.Len()
	keys := tableKeys(t)
	var shapeHash uint64
	cacheable := false
	if !hinted && arr == 0 {
		if shapeHash, cacheable = shapeOf(t, keys); cacheable {
			if out, ok := e.shapes.appendCached(dst, shapeHash, keys); ok {
				return out
			}
		}
	}
	m := e.orderModel(h)
	// gopher-lua keeps all integer keys in its array part, so their
	// insertion order relative to other keys is lost. Tables built by
	// appending get them first; a constructor's positional items sit in
	// Lua's preallocated array part, and its [k]=v fields are more often
	// written after the named ones than before.
	first := arr
	if hinted {
		first = min(arr, h.na)
	}
	for i := 1; i <= first; i++ {
		if t.RawGetInt(i) != glua.LNil {
			m.set(glua.LNumber(i))
		}
	}
	var dead map[glua.LValue]bool
	if r := e.run; r != nil && r.bornDead != nil {
		dead = r.bornDead[t]
	}
	nilKeys := m.nilKeys[:0]
	for _, k := range keys {
		if t.RawGet(k) != glua.LNil {
			m.set(k)
			continue
		}
		// Killed below, once every key is in (deletions are replayed
		// after the insertions).
		nilKeys = append(nilKeys, k)
		if dead[k] {
			m.setDead(k)
		} else {
			m.set(k)
		}
	}
	for i := first + 1; i <= arr; i++ {
		if t.RawGetInt(i) != glua.LNil {
			m.set(glua.LNumber(i))
		}
	}
	for _, k := range nilKeys {
		m.kill(k)
	}
	clear(nilKeys)
	m.nilKeys = nilKeys[:0]
	if dst == nil {
		dst = make([]glua.LValue, 0, arr+len(keys))
	}
	start := len(dst)
	for i, live := range m.array {
		if live {
			dst = append(dst, glua.LNumber(i+1))
		}
	}
	for _, n := range m.node {
		if n.key != nil && n.live {
			dst = append(dst, n.key)
		}
	}
	if cacheable {
		e.remember(shapeHash, keys, dst[start:])
	}
	return dst
}

// orderModel resets the engine's reusable model for a new replay.
func (e *engine) orderModel(h sizeHint) *ltable {
	m := e.model
	if m == nil {
		m = &ltable{e: e}
		e.model = m
	}
	m.sizearray = h.na
	m.array = append(m.array[:0], make([]bool, h.na)...)
	m.node, m.spare = m.node[:0], m.spare[:0]
	m.setNodeVector(h.nh)
	return m
}

// gopherOrder is gopher-lua's own (insertion) order, via Next: ForEach
// walks Go maps, whose order is random.
func gopherOrder(t *glua.LTable) []glua.LValue {
	var out []glua.LValue
	k, _ := t.Next(glua.LNil)
	for k != glua.LNil {
		out = append(out, k)
		k, _ = t.Next(k)
	}
	return out
}

func ceilLog2(x int) int {
	l := 0
	for (1 << l) < x {
		l++
	}
	return l
}

// setNodeVector installs a fresh node vector of the size Lua would pick;
// the previous vector becomes the spare buffer (resize still reads it).
func (m *ltable) setNodeVector(size int) {
	n := 1
	if size > 0 {
		n = 1 << ceilLog2(size)
	}
	buf := m.spare[:0]
	if cap(buf) < n {
		buf = make([]lnode, 0, max(n, 8))
	}
	m.spare = m.node
	m.node = buf[:n]
	for i := range m.node {
		m.node[i] = lnode{next: -1}
	}
	m.dummy = size == 0
	m.lastfree = n
	if m.dummy {
		m.lastfree = 0
	}
}

// arrayIndex is Lua's arrayindex: the key as a positive int, or 0.
func arrayIndex(k glua.LValue) int {
	if n, ok := k.(glua.LNumber); ok {
		f := float64(n)
		if f >= 1 && f <= 1<<26 && f == math.Trunc(f) {
			return int(f)
		}
	}
	return 0
}

func luaStrHash(s string) uint32 {
	h := uint32(len(s))
	step := (len(s) >> 5) + 1
	for l1 := len(s); l1 >= step; l1 -= step {
		h ^= (h << 5) + (h >> 2) + uint32(s[l1-1])
	}
	return h
}

// keyHash is the part of Lua's mainposition that depends on the key alone:
// the hash, and whether it is reduced modulo an odd size (hashmod: numbers
// and addresses) or masked (lmod: strings and booleans).
func (m *ltable) keyHash(k glua.LValue) (h uint32, mod bool) {
	switch v := k.(type) {
	case glua.LString:
		return luaStrHash(string(v)), false
	case glua.LNumber:
		if v == 0 {
			return 0, false
		}
		b := math.Float64bits(float64(v))
		return uint32(b) + uint32(b>>32), true
	case glua.LBool:
		if v {
			return 1, false
		}
		return 0, false
	}
	// Addresses in Lua; a deterministic per-run number here.
	return uint32(m.e.objectID(k)), true
}

// position is mainposition for a key hashed by keyHash.
func (m *ltable) position(h uint32, mod bool) int {
	if m.dummy {
		return 0
	}
	size := len(m.node)
	if mod {
		return int(h % uint32((size-1)|1))
	}
	return int(h & uint32(size-1))
}

func (e *engine) objectID(v glua.LValue) uint64 {
	r := e.run
	if r == nil {
		return 0
	}
	if r.ids == nil {
		r.ids = make(map[any]uint64)
	}
	id, ok := r.ids[v]
	if !ok {
		id = uint64(len(r.ids)+1) * 0x40
		r.ids[v] = id
	}
	return id
}

func keyEq(a, b glua.LValue) bool {
	if x, ok := a.(glua.LNumber); ok {
		if y, ok := b.(glua.LNumber); ok {
			return x == y
		}
		return false
	}
	return a == b
}

func (m *ltable) find(k glua.LValue, h uint32, mod bool) int {
	if m.dummy {
		return -1
	}
	for n := m.position(h, mod); n >= 0; n = m.node[n].next {
		if m.node[n].h == h && m.node[n].key != nil && keyEq(m.node[n].key, k) {
			return n
		}
	}
	return -1
}

// set is luaH_set with a non-nil value.
func (m *ltable) set(k glua.LValue) {
	if m.setArray(k) {
		return
	}
	h, mod := m.keyHash(k)
	m.setHashed(k, h, mod)
}

// setArray sets k in the array part, if it belongs there.
func (m *ltable) setArray(k glua.LValue) bool {
	if i := arrayIndex(k); i > 0 && i <= m.sizearray {
		m.array[i-1] = true
		return true
	}
	return false
}

func (m *ltable) setHashed(k glua.LValue, h uint32, mod bool) {
	if n := m.find(k, h, mod); n >= 0 {
		m.node[n].live = true
		return
	}
	m.newKey(k, h, mod)
}

// setDead is luaH_set followed by storing nil: the key gets a node (or
// keeps its own) whose value is nil.
func (m *ltable) setDead(k glua.LValue) {
	if i := arrayIndex(k); i > 0 && i <= m.sizearray {
		return
	}
	h, mod := m.keyHash(k)
	if m.find(k, h, mod) >= 0 {
		return
	}
	m.newKey(k, h, mod)
	m.kill(k)
}

func (m *ltable) kill(k glua.LValue) {
	if i := arrayIndex(k); i > 0 && i <= m.sizearray {
		m.array[i-1] = false
		return
	}
	h, mod := m.keyHash(k)
	if n := m.find(k, h, mod); n >= 0 {
		m.node[n].live = false
	}
}

func (m *ltable) getFreePos() int {
	for m.lastfree > 0 {
		m.lastfree--
		if m.node[m.lastfree].key == nil {
			return m.lastfree
		}
	}
	return -1
}

func (m *ltable) newKey(k glua.LValue, h uint32, mod bool) {
	mp := m.position(h, mod)
	if m.dummy || m.node[mp].live {
		f := m.getFreePos()
		if m.dummy || f < 0 {
			m.rehash(k)
			if !m.setArray(k) {
				m.setHashed(k, h, mod)
			}
			return
		}
		c := &m.node[mp]
		other := m.position(c.h, c.mod)
		if other != mp {
			// The colliding node is out of its main position: move it.
			for m.node[other].next != mp {
				other = m.node[other].next
			}
			m.node[other].next = f
			m.node[f] = m.node[mp]
			m.node[mp].next = -1
		} else {
			m.node[f].next = m.node[mp].next
			m.node[mp].next = f
			mp = f
		}
	}
	n := &m.node[mp]
	n.key, n.h, n.mod, n.live = k, h, mod, true
}

func (m *ltable) rehash(ek glua.LValue) {
	var nums [27]int
	nasize := 0
	for i, live := range m.array {
		if live {
			nums[ceilLog2(i+1)]++
			nasize++
		}
	}
	total := nasize
	if !m.dummy {
		for i := len(m.node) - 1; i >= 0; i-- {
			if n := m.node[i]; n.key != nil && n.live {
				if ai := arrayIndex(n.key); ai > 0 {
					nums[ceilLog2(ai)]++
					nasize++
				}
				total++
			}
		}
	}
	if ai := arrayIndex(ek); ai > 0 {
		nums[ceilLog2(ai)]++
		nasize++
	}
	total++
	na, n := computeSizes(nums[:], nasize)
	m.resize(n, total-na)
}

func computeSizes(nums []int, narray int) (na, n int) {
	a := 0
	for i, two := 0, 1; two/2 < narray && i < len(nums); i, two = i+1, two*2 {
		if nums[i] > 0 {
			a += nums[i]
			if a > two/2 {
				n, na = two, a
			}
		}
		if a == narray {
			break
		}
	}
	return na, n
}

func (m *ltable) resize(nasize, nhsize int) {
	oldArr := m.array
	oldNode, oldDummy := m.node, m.dummy
	if nasize > len(m.array) {
		m.array = append(m.array, make([]bool, nasize-len(m.array))...)
	}
	m.sizearray = nasize
	m.setNodeVector(nhsize)
	if nasize < len(oldArr) {
		m.array = m.array[:nasize]
		for i := nasize; i < len(oldArr); i++ {
			if oldArr[i] {
				m.set(glua.LNumber(i + 1))
			}
		}
	}
	if !oldDummy {
		for i := len(oldNode) - 1; i >= 0; i-- {
			if n := oldNode[i]; n.key != nil && n.live && !m.setArray(n.key) {
				m.setHashed(n.key, n.h, n.mod)
			}
		}
	}
}

// --- next / pairs ---------------------------------------------------------

// orderCache remembers the last table iterated, so that a pairs loop costs
// one replay, not one per step.
type orderCache struct {
	t        *glua.LTable
	nkeys    int
	narr     int
	keys     []glua.LValue
	pos      int
	position map[glua.LValue]int
}

func (e *engine) bNext(L *glua.LState) int {
	t := checkTable(L, 1)
	k := L.Get(2)
	r := e.run
	c := r.order
	nk, na := len(tableKeys(t)), t.Len()
	if c == nil || c.t != t || c.nkeys != nk || c.narr != na {
		c = &orderCache{t: t, nkeys: nk, narr: na, keys: e.tableOrder(t)}
		r.order = c
		r.stepL(L, int64(len(c.keys))/16)
	}
	i := 0
	if k != glua.LNil {
		switch {
		case c.pos < len(c.keys) && keyEq(c.keys[c.pos], k):
			i = c.pos + 1
		default:
			if c.position == nil {
				c.position = make(map[glua.LValue]int, len(c.keys))
				for j, key := range c.keys {
					if n, ok := key.(glua.LNumber); ok {
						key = glua.LNumber(n)
					}
					c.position[key] = j
				}
			}
			j, ok := c.position[k]
			if !ok {
				rawError(L, "invalid key to 'next'")
			}
			i = j + 1
		}
	}
	for ; i < len(c.keys); i++ {
		if v := t.RawGet(c.keys[i]); v != glua.LNil {
			c.pos = i
			L.Push(c.keys[i])
			L.Push(v)
			return 2
		}
	}
	L.Push(glua.LNil)
	return 1
}
