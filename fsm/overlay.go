package fsm

import (
	"bytes"
	"fmt"
	"sort"
	"sync"

	bolt "go.etcd.io/bbolt"
)

// The FSM applies entries to memory and writes them to bbolt in the
// background (see flush.go). What commands see is a view: up to two
// unflushed layers (the active one that entries write to, and a frozen one
// being written out) over a bbolt read transaction. A key's newest version
// wins; a tombstone hides older versions.
//
// Why: bbolt makes every committed transaction rewrite each leaf page it
// touched, and random keys touch one page each. Applying a raft batch of 40
// SETs in its own transaction cost 13-35 µs per entry on every node; a
// layer of tens of thousands of keys flushed in key order costs a fraction
// of that and keeps it off the path a client waits on.

// bucketID names a bbolt bucket of the replicated state.
type bucketID uint8

const (
	bucketIDExpires bucketID = iota
	bucketIDScripts
	bucketIDDB0                             // db<N> is bucketIDDB0+N
	bucketIDScan0 = bucketIDDB0 + Databases // scan<N> is bucketIDScan0+N
	numBuckets    = bucketIDScan0 + Databases
)

var bucketNames [numBuckets][]byte

func init() {
	bucketNames[bucketIDExpires] = bucketExpires
	bucketNames[bucketIDScripts] = bucketScripts
	for i := 0; i < Databases; i++ {
		bucketNames[bucketIDDB0+bucketID(i)] = dbBuckets[i]
		bucketNames[bucketIDScan0+bucketID(i)] = scanBuckets[i]
	}
}

// slot is a layer's version of a key: a value, or a deletion.
type slot struct {
	val  []byte
	gone bool
}

// slotOverhead approximates a map entry's memory beyond key and value.
const slotOverhead = 64

// layer is a set of changes not yet in bbolt. Only the apply goroutine
// writes to the active layer (under FSM.mu); a frozen layer never changes.
type layer struct {
	buckets [numBuckets]map[string]slot
	sortMu  sync.Mutex             // readers sharing FSM.mu, and the flusher, sort lazily
	runs    [numBuckets][][]string // the keys as of the last keysInOrder: sorted, disjoint runs
	fresh   [numBuckets][]string   // keys added since, in no order
	n       int                    // slots
	bytes   int                    // approximate memory held
	scale   float64                // this layer's share of the flush limits, see newLayer
}

// newLayer starts an empty layer. Its flush limits are scaled by a random
// factor in [0.5, 1): every node applies the same entries at nearly the
// same moment, so equal limits would make all of them flush at once, and
// a commit needs two of three nodes that are not all busy flushing.
func newLayer() *layer { return &layer{scale: jitter()} }

func (l *layer) get(b bucketID, key []byte) (slot, bool) {
	m := l.buckets[b]
	if m == nil {
		return slot{}, false
	}
	s, ok := m[string(key)]
	return s, ok
}

// set records a version of key. bbolt's limits are checked here, when the
// entry applies, so that a refusal is the entry's error on every node and
// not a failed flush later.
func (l *layer) set(b bucketID, key []byte, s slot) {
	switch {
	case len(key) == 0:
		panic(bolt.ErrKeyRequired)
	case len(key) > bolt.MaxKeySize:
		panic(bolt.ErrKeyTooLarge)
	case len(s.val) > bolt.MaxValueSize:
		panic(bolt.ErrValueTooLarge)
	}
	m := l.buckets[b]
	if m == nil {
		m = map[string]slot{}
		l.buckets[b] = m
	}
	old, ok := m[string(key)]
	if ok {
		l.bytes += len(s.val) - len(old.val)
	} else {
		l.n++
		l.bytes += len(key) + len(s.val) + slotOverhead
		k := string(key)
		m[k] = s
		l.fresh[b] = append(l.fresh[b], k)
		return
	}
	m[string(key)] = s
}

// keysInOrder returns the layer's keys in bucket b as sorted runs, disjoint
// and together every key, biggest first. Callers must not modify them; they
// stay as they are (later keys go into new slices), so a cursor may keep
// them while its command writes.
//
// The keys added since the last call are sorted into a new run, and a run
// is merged into the one before it only once it is at least half that
// one's size, as in a binary counter: each key is copied O(log n) times in
// all, and there are O(log n) runs. The active layer holds up to
// flushEntries keys, and a reader that comes back often (the leader's
// expiry sweep, fifty times a second) finds new keys each time: sorting
// all of them each time took 10-20 ms with 60k keys with a TTL, and
// merging the new ones into one sorted slice still cost 8 % of the
// leader's CPU while they expired.
func (l *layer) keysInOrder(b bucketID) [][]string {
	l.sortMu.Lock()
	defer l.sortMu.Unlock()
	fresh := l.fresh[b]
	if len(fresh) == 0 {
		return l.runs[b]
	}
	sort.Strings(fresh)
	l.fresh[b] = nil
	old := l.runs[b]
	runs := make([][]string, len(old), len(old)+1) // a reader may hold old
	copy(runs, old)
	runs = append(runs, fresh)
	for n := len(runs); n > 1 && 2*len(runs[n-1]) >= len(runs[n-2]); n-- {
		runs = append(runs[:n-2], mergeSorted(runs[n-2], runs[n-1]))
	}
	l.runs[b] = runs
	return runs
}

// sortedKeys returns the layer's keys in bucket b in one sorted slice.
func (l *layer) sortedKeys(b bucketID) []string {
	runs := l.keysInOrder(b)
	if len(runs) == 0 {
		return nil
	}
	all := runs[len(runs)-1]
	for i := len(runs) - 2; i >= 0; i-- {
		all = mergeSorted(runs[i], all)
	}
	return all
}

// mergeSorted returns the sorted union of a and b, which must be sorted and
// disjoint, in a new slice: a reader may hold either.
func mergeSorted(a, b []string) []string {
	out := make([]string, 0, len(a)+len(b))
	for len(a) > 0 && len(b) > 0 {
		if a[0] < b[0] {
			out, a = append(out, a[0]), a[1:]
		} else {
			out, b = append(out, b[0]), b[1:]
		}
	}
	out = append(out, a...)
	return append(out, b...)
}

// writeTo puts the layer's changes into a bbolt write transaction, in key
// order: neighbouring keys share leaf pages, so each page is visited once.
func (l *layer) writeTo(tx *bolt.Tx) error {
	for b := bucketID(0); b < numBuckets; b++ {
		ks := l.sortedKeys(b)
		if len(ks) == 0 {
			continue
		}
		bk := tx.Bucket(bucketNames[b])
		if bk == nil {
			return fmt.Errorf("fsm: bucket %s missing", bucketNames[b])
		}
		for _, k := range ks {
			s := l.buckets[b][k]
			var err error
			if s.gone {
				err = bk.Delete([]byte(k))
			} else {
				err = bk.Put([]byte(k), s.val)
			}
			if err != nil {
				return fmt.Errorf("fsm: flush %s: %w", bucketNames[b], err)
			}
		}
	}
	return nil
}

// view is the state one command runs against: layers newest first (the
// first takes writes; the second may be nil) over bbolt. Its read
// transaction begins at the first lookup that reaches bbolt: a command that
// finds everything in memory never opens one.
//
// A view must not outlive the hold on FSM.mu it was made under, and the
// apply goroutine must not keep a transaction open while waiting for
// FSM.mu: a flush that grows the file waits for every read transaction to
// end, and queries may be waiting behind the apply goroutine.
type view struct {
	layers [2]*layer
	db     *bolt.DB
	expiry *expiryHint // told of every deadline set; nil in tests
	tx     *bolt.Tx
	bk     [numBuckets]*bolt.Bucket

	// The last lookup, because commands look a key up and then write it
	// (SET reads the old record, put reads it again for the indexes).
	memo struct {
		ok       bool
		b        bucketID
		key, val []byte
	}
}

func (v *view) bucket(b bucketID) *bolt.Bucket {
	if v.bk[b] == nil {
		if v.tx == nil {
			tx, err := v.db.Begin(false)
			if err != nil {
				panic(fmt.Sprintf("fsm: begin: %v", err)) // the file is gone: nothing sensible to answer
			}
			v.tx = tx
		}
		v.bk[b] = v.tx.Bucket(bucketNames[b])
	}
	return v.bk[b]
}

func (v *view) close() {
	if v.tx != nil {
		v.tx.Rollback()
		v.tx = nil
		v.bk = [numBuckets]*bolt.Bucket{}
	}
	v.memo.ok = false
}

// get returns key's value in bucket b, or nil. The value must not be
// modified; it is valid while the view is.
func (v *view) get(b bucketID, key []byte) []byte {
	if m := &v.memo; m.ok && m.b == b && bytes.Equal(m.key, key) {
		return m.val
	}
	val := v.lookup(b, key)
	v.memo.ok, v.memo.b, v.memo.key, v.memo.val = true, b, append(v.memo.key[:0], key...), val
	return val
}

func (v *view) lookup(b bucketID, key []byte) []byte {
	for _, l := range v.layers {
		if l == nil {
			break
		}
		if s, ok := l.get(b, key); ok {
			if s.gone {
				return nil
			}
			if s.val == nil {
				return []byte{}
			}
			return s.val
		}
	}
	return v.bucket(b).Get(key)
}

// put stores val (kept, not copied) under key.
func (v *view) put(b bucketID, key, val []byte) {
	v.forget(b)
	v.layers[0].set(b, key, slot{val: val})
}

// delete removes key (whether or not it exists).
func (v *view) delete(b bucketID, key []byte) {
	v.forget(b)
	v.layers[0].set(b, key, slot{gone: true})
}

func (v *view) forget(b bucketID) {
	if v.memo.b == b {
		v.memo.ok = false
	}
}

// cursor iterates bucket b in key order, merging the layers with bbolt.
func (v *view) cursor(b bucketID) *cursor {
	c := &cursor{bc: v.bucket(b).Cursor()}
	for _, l := range v.layers {
		if l == nil {
			break
		}
		for _, ks := range l.keysInOrder(b) { // a layer's runs are disjoint
			c.layers = append(c.layers, layerIter{l: l, b: b, keys: ks})
		}
	}
	return c
}

// keys returns every key in bucket b, copied, so that the caller may
// change the bucket while going through them.
func (v *view) keys(b bucketID) [][]byte {
	var out [][]byte
	cur := v.cursor(b)
	for k, _ := cur.First(); k != nil; k, _ = cur.Next() {
		out = append(out, append([]byte(nil), k...))
	}
	return out
}

// layerIter walks one sorted run of a layer's keys.
type layerIter struct {
	l    *layer
	b    bucketID
	keys []string
	pos  int
}

func (it *layerIter) key() (string, bool) {
	if it.pos < len(it.keys) {
		return it.keys[it.pos], true
	}
	return "", false
}

// cursor is a merge of bbolt's cursor with the layers' sorted runs; for a
// key in several sources the first layer (the newest) wins. A layer's runs
// are disjoint and come before the next layer's.
type cursor struct {
	bc     *bolt.Cursor
	bk, bv []byte // bbolt's current pair; bk nil when exhausted
	layers []layerIter
}

// Seek moves to the first key ≥ seek and returns it (nil key: the end).
func (c *cursor) Seek(seek []byte) ([]byte, []byte) {
	c.bk, c.bv = c.bc.Seek(seek)
	for i := range c.layers {
		it := &c.layers[i]
		it.pos = sort.SearchStrings(it.keys, string(seek))
	}
	return c.current()
}

// First moves to the first key.
func (c *cursor) First() ([]byte, []byte) { return c.Seek(nil) }

// Next moves past the current key.
func (c *cursor) Next() ([]byte, []byte) {
	k := c.min()
	if k == nil {
		return nil, nil
	}
	c.skip(k)
	return c.current()
}

// min is the smallest key among the sources' current positions (bbolt's
// on a tie), converted once: there are O(log n) runs per layer to compare.
func (c *cursor) min() []byte {
	best, bestKey := -1, "" // the run holding the smallest key; -1: bbolt
	for i := range c.layers {
		k, ok := c.layers[i].key()
		switch {
		case !ok:
		case best < 0 && (c.bk == nil || k < string(c.bk)), best >= 0 && k < bestKey:
			best, bestKey = i, k
		}
	}
	if best < 0 {
		return c.bk // nil when every source is done
	}
	return []byte(bestKey)
}

// skip advances every source positioned at k.
func (c *cursor) skip(k []byte) {
	if c.bk != nil && bytes.Equal(c.bk, k) {
		c.bk, c.bv = c.bc.Next()
	}
	for i := range c.layers {
		if lk, ok := c.layers[i].key(); ok && lk == string(k) {
			c.layers[i].pos++
		}
	}
}

// current returns the pair at the smallest key whose newest version is not
// a deletion, skipping deleted ones.
func (c *cursor) current() ([]byte, []byte) {
	for {
		k := c.min()
		if k == nil {
			return nil, nil
		}
		s, inLayer := c.newest(k)
		switch {
		case !inLayer:
			return c.bk, c.bv // only bbolt has k
		case !s.gone:
			if s.val == nil {
				return k, []byte{}
			}
			return k, s.val
		}
		c.skip(k)
	}
}

// newest is the newest layer's version of k, if a layer has one.
func (c *cursor) newest(k []byte) (slot, bool) {
	for i := range c.layers {
		it := &c.layers[i]
		if lk, ok := it.key(); ok && lk == string(k) {
			return it.l.buckets[it.b][lk], true
		}
	}
	return slot{}, false
}
