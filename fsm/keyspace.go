package fsm

import (
	"bytes"
	"encoding/binary"
	"hash/fnv"
	"sync"

	bolt "go.etcd.io/bbolt"
)

// Storage layout (one bbolt file):
//
//	db<N>    key -> record: type(1) deadline(8, unix ms, 0 = none) payload
//	scan<N>  hash(8) key -> nil: the order SCAN walks, stable under inserts
//	expires  deadline(8) db(1) key -> nil: the active-expiry index
//	meta     applied, now, count<N>, dirty
//
// Keys are kept in key order so prefix patterns (KEYS nodered:context:*)
// seek instead of scanning the keyspace. bbolt refuses empty keys and Redis
// allows them, so every key in db<N> is stored behind a one-byte prefix.

// Value types.
const (
	TypeString byte = 0
)

var typeNames = map[byte]string{TypeString: "string"}

const headerLen = 9

// record is a decoded value; payload aliases bbolt memory valid only inside
// the transaction.
type record struct {
	typ      byte
	deadline int64
	payload  []byte
}

func decodeRecord(b []byte) (record, bool) {
	if len(b) < headerLen {
		return record{}, false
	}
	return record{typ: b[0], deadline: int64(binary.BigEndian.Uint64(b[1:9])), payload: b[headerLen:]}, true
}

func encodeRecord(typ byte, deadline int64, payload []byte) []byte {
	b := make([]byte, headerLen, headerLen+len(payload))
	b[0] = typ
	binary.BigEndian.PutUint64(b[1:9], uint64(deadline))
	return append(b, payload...)
}

// Ctx is what a command runs against: one view of the state, one
// database, one moment. Commands append their reply to out.
type Ctx struct {
	v        *view
	meta     *meta // key counts; the apply goroutine's to change
	DB       int
	Now      int64
	writable bool
	out      []byte
	effects  []effect
	kbuf     []byte
}

// meta is the bookkeeping that goes with the state: the last entry applied
// to it, the time of that entry, and key counts per database.
type meta struct {
	index   uint64
	now     int64
	keys    [Databases]int64 // keys stored
	expires [Databases]int64 // keys with a deadline (INFO keyspace's expires)
}

func (c *Ctx) dbBucket() bucketID   { return bucketIDDB0 + bucketID(c.DB) }
func (c *Ctx) scanBucket() bucketID { return bucketIDScan0 + bucketID(c.DB) }

// keyPrefix makes the empty key storable.
const keyPrefix = 'k'

// MaxKeyLen is the longest key redraft stores: bbolt's key limit less the
// longest prefix a key gets in any bucket, the expires index's deadline and
// database (9 bytes). A key the data bucket could take but an index could
// not would fail halfway through a write. Redis allows longer keys;
// redraft refuses them up front with an error.
const MaxKeyLen = bolt.MaxKeySize - 9

// lookupKey is key as stored, in a scratch buffer: the view copies keys it
// keeps.
func (c *Ctx) lookupKey(key []byte) []byte {
	c.kbuf = append(append(c.kbuf[:0], keyPrefix), key...)
	return c.kbuf
}

// lookup returns the live record for key, treating a passed deadline as
// absence.
func (c *Ctx) lookup(key []byte) (record, bool) {
	v := c.v.get(c.dbBucket(), c.lookupKey(key))
	if v == nil {
		return record{}, false
	}
	r, ok := decodeRecord(v)
	if !ok || (r.deadline != 0 && r.deadline <= c.Now) {
		return record{}, false
	}
	return r, true
}

// lookupString returns the string at key; wrongType is set when the key
// holds another type.
func (c *Ctx) lookupString(key []byte) (val []byte, found, wrongType bool) {
	r, ok := c.lookup(key)
	if !ok {
		return nil, false, false
	}
	if r.typ != TypeString {
		return nil, true, true
	}
	return r.payload, true, false
}

// put stores a record, maintaining the scan and expiry indexes and the key
// count. A stale (expired) previous record is replaced as if absent.
func (c *Ctx) put(key []byte, typ byte, deadline int64, payload []byte) {
	old := c.v.get(c.dbBucket(), c.lookupKey(key))
	hadDeadline := false
	if old != nil {
		r, ok := decodeRecord(old)
		hadDeadline = ok && r.deadline != 0
		if hadDeadline && r.deadline != deadline {
			c.v.delete(bucketIDExpires, expiryKey(r.deadline, c.DB, key))
		}
	} else {
		c.v.put(c.scanBucket(), scanKey(key), nil)
		c.meta.keys[c.DB]++
	}
	if deadline != 0 {
		ek := expiryKey(deadline, c.DB, key)
		c.v.put(bucketIDExpires, ek, nil)
		if c.v.expiry != nil {
			c.v.expiry.lower(ek)
		}
	}
	switch {
	case deadline != 0 && !hadDeadline:
		c.meta.expires[c.DB]++
	case deadline == 0 && hadDeadline:
		c.meta.expires[c.DB]--
	}
	c.v.put(c.dbBucket(), c.lookupKey(key), encodeRecord(typ, deadline, payload))
}

// setDeadline changes a live key's deadline (0 removes it).
func (c *Ctx) setDeadline(key []byte, r record, deadline int64) {
	c.put(key, r.typ, deadline, append([]byte(nil), r.payload...))
}

// del removes key, whether live or stale, and reports whether it was live.
func (c *Ctx) del(key []byte) bool {
	old := c.v.get(c.dbBucket(), c.lookupKey(key))
	if old == nil {
		return false
	}
	r, _ := decodeRecord(old)
	c.remove(key, r)
	return r.deadline == 0 || r.deadline > c.Now
}

// remove deletes key, stored as r, with its index entries.
func (c *Ctx) remove(key []byte, r record) {
	if r.deadline != 0 {
		c.v.delete(bucketIDExpires, expiryKey(r.deadline, c.DB, key))
		c.meta.expires[c.DB]--
	}
	c.v.delete(c.scanBucket(), scanKey(key))
	c.v.delete(c.dbBucket(), c.lookupKey(key))
	c.meta.keys[c.DB]--
}

func (c *Ctx) count(db int) int64 { return c.meta.keys[db] }

// flush empties database db.
func (c *Ctx) flush(db int) {
	saved := c.DB
	c.DB = db
	defer func() { c.DB = saved }()
	for _, k := range c.v.keys(c.dbBucket()) {
		c.del(k[1:]) // past keyPrefix
	}
}

// eachKey calls fn for every live key matching pattern, in key order,
// seeking to the pattern's literal prefix.
func (c *Ctx) eachKey(pattern []byte, fn func(key []byte, r record) bool) {
	prefix := literalPrefix(pattern)
	all := len(pattern) == 1 && pattern[0] == '*'
	cur := c.v.cursor(c.dbBucket())
	start := append([]byte{keyPrefix}, prefix...)
	for k, v := cur.Seek(start); k != nil && bytes.HasPrefix(k, start); k, v = cur.Next() {
		k = k[1:]
		r, ok := decodeRecord(v)
		if !ok || (r.deadline != 0 && r.deadline <= c.Now) {
			continue
		}
		if !all && !Match(pattern, k, false) {
			continue
		}
		if !fn(k, r) {
			return
		}
	}
}

// scanKey orders keys by a hash so that a SCAN cursor (the hash to resume
// from) stays valid while keys come and go: every key present for the whole
// iteration is returned, as Redis promises.
func scanKey(key []byte) []byte {
	b := make([]byte, 8, 8+len(key))
	binary.BigEndian.PutUint64(b, scanHash(key))
	return append(b, key...)
}

func scanHash(key []byte) uint64 {
	h := fnv.New64a()
	h.Write(key)
	// Cursor 0 means "start" and "done", so hashes live in [1, 2^63].
	return h.Sum64()>>1 + 1
}

func expiryKey(deadline int64, db int, key []byte) []byte {
	b := make([]byte, 9, 9+len(key))
	binary.BigEndian.PutUint64(b, uint64(deadline))
	b[8] = byte(db)
	return append(b, key...)
}

// Expired lists up to limit keys whose deadline is at or before now,
// grouped by database: what the leader proposes to delete.
func (f *FSM) Expired(now int64, limit int) map[int][][]byte {
	out := map[int][][]byte{}
	f.read(func(v *view, _ *meta) {
		cur := v.cursor(bucketIDExpires)
		k, _ := cur.Seek(f.expiry.start())
		if k != nil {
			f.expiry.advance(k)
		}
		for n := 0; k != nil && n < limit; k, _ = cur.Next() {
			if int64(binary.BigEndian.Uint64(k[:8])) > now {
				break
			}
			db := int(k[8])
			out[db] = append(out[db], append([]byte(nil), k[9:]...))
			n++
		}
	})
	return out
}

// expiryHint is where the live keys of the expires index begin, as far as
// this node knows: no key before it has a live entry. The leader's sweep
// starts there rather than at the first key, because the entries it has
// deleted stay in the index as deletions in the unflushed layers, and
// bbolt's copies with them, for seconds: with 60k keys expiring at once,
// scanning from the start stepped over tens of thousands of them on every
// sweep, up to 60 ms a time with applies held off.
//
// A deletion never makes the hint wrong; a new deadline lowers it when it
// sorts before it; a restore forgets it. It is this node's alone, not part
// of the replicated state: only where a scan starts depends on it, not
// what the scan finds.
//
// f.mu orders lower and reset (under the write lock, in apply and
// restore) against a scan (under the read lock); mu is for two scans at
// once.
type expiryHint struct {
	mu   sync.Mutex
	from []byte // nil: the start of the index; never written in place
}

// start returns where a scan starts. The slice is shared: advance and
// lower replace it rather than write into it.
func (h *expiryHint) start() []byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.from
}

// advance records that the first live key is k, found by a scan from start.
func (h *expiryHint) advance(k []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.from == nil || bytes.Compare(k, h.from) > 0 {
		h.from = bytes.Clone(k)
	}
}

// lower records a deadline set at index key k.
func (h *expiryHint) lower(k []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.from != nil && bytes.Compare(k, h.from) < 0 {
		h.from = bytes.Clone(k)
	}
}

func (h *expiryHint) reset() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.from = nil
}

func must(err error) {
	if err != nil {
		panic("fsm: " + err.Error())
	}
}
