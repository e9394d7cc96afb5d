// Package fsm is redraft's replicated state machine: the semantics of every
// data command, their storage in bbolt, TTL deadlines and the expiry index,
// snapshots and restore. It is deterministic: the same log applied to two
// fresh FSMs gives byte-identical state, because time comes only from the
// entries (the leader's stamp) and nothing here reads a clock or a network.
package fsm

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"
)

// Databases is the number of logical databases (SELECT 0..15).
const Databases = 16

var (
	bucketMeta    = []byte("meta")
	bucketExpires = []byte("expires")
	bucketScripts = []byte("scripts")
	keyApplied    = []byte("applied")
	keyNow        = []byte("now")
	keyDirty      = []byte("dirty")
	dbBuckets     [Databases][]byte
	scanBuckets   [Databases][]byte
	countKeys     [Databases][]byte
	expireKeys    [Databases][]byte
)

func init() {
	for i := range dbBuckets {
		dbBuckets[i] = []byte(fmt.Sprintf("db%d", i))
		scanBuckets[i] = []byte(fmt.Sprintf("scan%d", i))
		countKeys[i] = []byte(fmt.Sprintf("count%d", i))
		expireKeys[i] = []byte(fmt.Sprintf("expires%d", i))
	}
}

// FSM is the state machine. Apply, Snapshot and Restore are called by
// raft's single FSM goroutine; Query and the accessors may be called from
// any goroutine.
type FSM struct {
	path string

	// mu orders commands against the state: the apply goroutine holds it
	// for writing while an entry runs, so every command sees whole entries;
	// queries hold it for reading. The flusher takes it briefly to freeze a
	// layer and to drop it once bbolt has it; Restore holds it while it
	// swaps the file.
	mu     sync.RWMutex
	db     *bolt.DB
	active *layer // entries applied since the last freeze
	frozen *layer // being written to bbolt, or nil
	state  meta   // of everything applied to the layers

	flushMu  sync.Mutex // one flush at a time; held by Restore and Close
	flushed  uint64     // meta.index of the state in bbolt (under flushMu)
	kick     chan struct{}
	stopping chan struct{}
	stopped  chan struct{}

	applied atomic.Uint64
	lastNow atomic.Int64

	expiry expiryHint // where the leader's expiry scan starts (Expired)

	notifyMu    sync.Mutex
	notify      chan struct{} // closed and replaced whenever applied advances
	appliedTerm uint64        // the term of the entry at applied, when known (under notifyMu)

	// Hooks lets the node react to effects (pub/sub delivery) once the
	// entries that produced them have applied.
	Hooks Hooks

	// pub/sub (see pubsub.go): hooks set while raft runs, and the last
	// index whose effects a restart must not repeat.
	hooks atomic.Pointer[Hooks]
	quiet atomic.Uint64
}

// Hooks are called after a batch commits, on raft's FSM goroutine; they must
// not block.
type Hooks struct {
	// Publish delivers a message to this node's subscribers and returns how
	// many received it.
	Publish func(channel, message []byte) int
}

// Open opens (or creates) the FSM file at path. The file is written without
// fsync: the Raft log is the durable record. A file left by a crash is
// checked, and a damaged one is discarded so the node rebuilds it from the
// last snapshot and the log (see NeedsRestore).
func Open(path string) (*FSM, error) {
	f := &FSM{path: path, notify: make(chan struct{}), active: newLayer(),
		kick: make(chan struct{}, 1), stopping: make(chan struct{}), stopped: make(chan struct{})}
	db, err := openDB(path)
	if err != nil {
		return nil, err
	}
	f.db = db
	if err := f.loadMeta(); err != nil {
		db.Close()
		return nil, err
	}
	go f.flushLoop()
	return f, nil
}

func openDB(path string) (*bolt.DB, error) {
	// A large initial mapping (address space, not memory) spares the file
	// from being remapped as it grows: a remap waits for every read
	// transaction to end, a snapshot streaming out holds one for seconds,
	// and meanwhile every new transaction, the apply goroutine's too, waits
	// behind the remap.
	opts := &bolt.Options{NoSync: true, NoFreelistSync: true, FreelistType: bolt.FreelistMapType, InitialMmapSize: 1 << 30}
	db, err := bolt.Open(path, 0o600, opts)
	if err == nil {
		if err = checkIfDirty(db); err == nil {
			return db, nil
		}
		db.Close()
	}
	// A file that does not open or does not check out after an unclean stop
	// is only a cache of the log: start empty and let the node restore it.
	if rmErr := os.Remove(path); rmErr != nil && !os.IsNotExist(rmErr) {
		return nil, fmt.Errorf("fsm: %v; and cannot remove it: %v", err, rmErr)
	}
	return bolt.Open(path, 0o600, opts)
}

// checkIfDirty verifies the file's structure when the previous process did
// not close it cleanly, then marks it dirty (synced) until Close.
func checkIfDirty(db *bolt.DB) error {
	dirty := false
	db.View(func(tx *bolt.Tx) error {
		if m := tx.Bucket(bucketMeta); m != nil && m.Get(keyDirty) != nil {
			dirty = true
		}
		return nil
	})
	if dirty {
		var bad error
		db.View(func(tx *bolt.Tx) error {
			for err := range tx.Check() {
				bad = err
				break
			}
			return nil
		})
		if bad != nil {
			return fmt.Errorf("fsm: file damaged after unclean stop: %w", bad)
		}
	}
	return setDirty(db, true)
}

func setDirty(db *bolt.DB, dirty bool) error {
	err := db.Update(func(tx *bolt.Tx) error {
		m, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		if dirty {
			return m.Put(keyDirty, []byte{1})
		}
		return m.Delete(keyDirty)
	})
	if err != nil {
		return err
	}
	return db.Sync()
}

// loadMeta reads the bookkeeping of the state in the file.
func (f *FSM) loadMeta() error {
	return f.db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketMeta, bucketExpires, bucketScripts} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		for i := 0; i < Databases; i++ {
			if _, err := tx.CreateBucketIfNotExists(dbBuckets[i]); err != nil {
				return err
			}
			if _, err := tx.CreateBucketIfNotExists(scanBuckets[i]); err != nil {
				return err
			}
		}
		m := tx.Bucket(bucketMeta)
		st := meta{index: getU64(m.Get(keyApplied)), now: int64(getU64(m.Get(keyNow)))}
		for i := 0; i < Databases; i++ {
			st.keys[i] = int64(getU64(m.Get(countKeys[i])))
			st.expires[i] = int64(getU64(m.Get(expireKeys[i])))
		}
		f.state = st
		f.flushed = st.index
		f.applied.Store(st.index)
		f.lastNow.Store(st.now)
		return nil
	})
}

// writeMeta records the bookkeeping of the state a flush brings bbolt to.
func writeMeta(tx *bolt.Tx, st *meta) error {
	m := tx.Bucket(bucketMeta)
	put := func(k []byte, v uint64) error { return m.Put(k, putU64(v)) }
	if err := put(keyApplied, st.index); err != nil {
		return err
	}
	if err := put(keyNow, uint64(st.now)); err != nil {
		return err
	}
	for i := 0; i < Databases; i++ {
		if err := put(countKeys[i], uint64(st.keys[i])); err != nil {
			return err
		}
		if err := put(expireKeys[i], uint64(st.expires[i])); err != nil {
			return err
		}
	}
	return nil
}

// Close writes what is not yet in the file, marks it clean and closes it.
// It must not race with itself.
func (f *FSM) Close() error {
	select {
	case <-f.stopping:
		return nil // closed already
	default:
	}
	close(f.stopping)
	<-f.stopped
	f.flush()
	f.flushMu.Lock()
	defer f.flushMu.Unlock()
	f.mu.Lock()
	defer f.mu.Unlock()
	err := setDirty(f.db, false)
	if cerr := f.db.Close(); err == nil {
		err = cerr
	}
	f.db = nil
	return err
}

// UsedFileSize is the size of the file's pages in use (bbolt grows the file
// ahead of them), free pages included: an upper bound on a snapshot's size.
func (f *FSM) UsedFileSize() (size uint64) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	f.db.View(func(tx *bolt.Tx) error {
		size = uint64(tx.Size())
		return nil
	})
	return size
}

// AppliedIndex is the index of the last log entry applied.
func (f *FSM) AppliedIndex() uint64 { return f.applied.Load() }

// LastNow is the largest entry time applied: FSM time never runs backwards,
// and a new leader stamps no earlier than this.
func (f *FSM) LastNow() int64 { return f.lastNow.Load() }

// WaitApplied blocks until the FSM has applied index idx or ctx ends.
func (f *FSM) WaitApplied(ctx context.Context, idx uint64) error {
	for {
		ch := f.Advanced()
		if f.applied.Load() >= idx {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Applied returns the index of the last entry applied and its term, 0 when
// unknown (before the first entry applies after a restart or restore),
// read together.
func (f *FSM) Applied() (index, term uint64) {
	f.notifyMu.Lock()
	defer f.notifyMu.Unlock()
	return f.applied.Load(), f.appliedTerm
}

// Advanced returns a channel that is closed when the applied index next
// moves.
func (f *FSM) Advanced() <-chan struct{} {
	f.notifyMu.Lock()
	defer f.notifyMu.Unlock()
	return f.notify
}

func (f *FSM) advance(idx, term uint64) {
	f.notifyMu.Lock()
	f.applied.Store(idx)
	f.appliedTerm = term
	close(f.notify)
	f.notify = make(chan struct{})
	f.notifyMu.Unlock()
}

// Apply implements raft.FSM for a single entry.
func (f *FSM) Apply(l *raft.Log) interface{} {
	return f.ApplyBatch([]*raft.Log{l})[0]
}

// ApplyBatch implements raft.BatchingFSM: the entries apply to the active
// layer in memory, one reply (RESP bytes) per entry, or a slice of them for
// a Run; the flusher writes them to bbolt later (flush.go). A crash before
// that loses nothing: the file's applied index says where the log must be
// replayed from.
func (f *FSM) ApplyBatch(logs []*raft.Log) []interface{} {
	out := make([]interface{}, len(logs))
	f.throttle()
	applied := f.applied.Load()
	last, lastTerm := applied, uint64(0)
	var effects []effect
	for i, l := range logs {
		if l.Index <= applied {
			continue // already in the file: a restart replays the log's tail
		}
		last, lastTerm = l.Index, l.Term
		var r Run
		var err error
		if l.Type == raft.LogCommand {
			r, err = decodeLog(l.Data)
		}
		f.mu.Lock() // for the whole entry: a flush must not split a run
		now := max(r.Now, f.state.now)
		switch {
		case l.Type != raft.LogCommand:
		case err != nil:
			out[i] = AppendError(nil, "ERR "+err.Error())
		default:
			v := f.view()
			replies := make([][]byte, len(r.Cmds))
			for k, args := range r.Cmds {
				c := Ctx{v: &v, meta: &f.state, DB: r.DB, Now: now, writable: true}
				replies[k] = c.run(args)
				if l.Index > f.quiet.Load() { // not a restart's replay: see QuietThrough
					effects = append(effects, c.effects...)
				}
			}
			v.close()
			if l.Data[0] == runVersion {
				out[i] = replies
			} else {
				out[i] = replies[0]
			}
		}
		f.state.index, f.state.now = l.Index, now
		f.mu.Unlock()
	}
	f.lastNow.Store(f.state.now)
	f.maybeFlush()
	// Deliver only after advance: a subscriber that reacts to a message by
	// reading (any read mode, on this node) must see every write ordered
	// before the message. Linearizable reads would wait for the index
	// anyway; stale reads would not.
	if last > applied {
		f.advance(last, lastTerm)
	}
	for _, e := range effects {
		e.deliver(f)
	}
	return out
}

// Query runs a read-only command against the current state as of now.
func (f *FSM) Query(db int, now int64, args [][]byte) (reply []byte) {
	f.read(func(v *view, st *meta) {
		c := Ctx{v: v, meta: st, DB: db, Now: max(now, st.now)}
		reply = c.run(args)
	})
	return reply
}

func putU64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func getU64(b []byte) uint64 {
	if len(b) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

// KeyCounts is the number of keys stored in each database, and of those
// with a deadline (including keys past their deadline that the sweeper has
// not removed yet, as Redis counts them).
func (f *FSM) KeyCounts() (keys, expires [Databases]int64) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.state.keys, f.state.expires
}

// Backup writes a consistent copy of the state (a bbolt file) to w while
// applies go on: an online backup.
func (f *FSM) Backup(w io.Writer) (int64, error) {
	f.flush()
	f.mu.RLock()
	tx, err := f.db.Begin(false)
	f.mu.RUnlock()
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	return tx.WriteTo(w)
}

// Seed installs a backup as the state of a node that has no Raft state yet.
// The applied index is reset: the new cluster's log starts from 1 and must
// apply on top of the seeded data, not be skipped as already applied. Every
// node of the new cluster is seeded with the same file before its first
// start, so they begin identical.
func Seed(path string, backup io.Reader) error {
	tmp := path + ".seed"
	w, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(w, backup); err != nil {
		w.Close()
		os.Remove(tmp)
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	db, err := bolt.Open(tmp, 0o600, nil)
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("not a redraft backup: %w", err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		m := tx.Bucket(bucketMeta)
		if m == nil {
			return errors.New("not a redraft backup: no meta bucket")
		}
		if err := m.Delete(keyDirty); err != nil {
			return err
		}
		return m.Put(keyApplied, putU64(0))
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}
