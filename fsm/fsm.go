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

// FSM is the state machine. Apply and Restore are called by raft's single
// FSM goroutine; Query, Snapshot and the index accessors may be called from
// any goroutine.
type FSM struct {
	path string

	mu sync.RWMutex // held for writing only while Restore swaps the file
	db *bolt.DB

	applied atomic.Uint64
	lastNow atomic.Int64

	notifyMu sync.Mutex
	notify   chan struct{} // closed and replaced whenever applied advances

	// Hooks lets the node react to effects (pub/sub delivery) once the
	// batch that produced them is committed.
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
	f := &FSM{path: path, notify: make(chan struct{})}
	db, err := openDB(path)
	if err != nil {
		return nil, err
	}
	f.db = db
	if err := f.loadMeta(); err != nil {
		db.Close()
		return nil, err
	}
	return f, nil
}

func openDB(path string) (*bolt.DB, error) {
	opts := &bolt.Options{NoSync: true, NoFreelistSync: true, FreelistType: bolt.FreelistMapType}
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
		f.applied.Store(getU64(m.Get(keyApplied)))
		f.lastNow.Store(int64(getU64(m.Get(keyNow))))
		return nil
	})
}

// Close marks the file clean and closes it.
func (f *FSM) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.db == nil {
		return nil
	}
	err := setDirty(f.db, false)
	if cerr := f.db.Close(); err == nil {
		err = cerr
	}
	f.db = nil
	return err
}

// AppliedIndex is the index of the last log entry applied.
func (f *FSM) AppliedIndex() uint64 { return f.applied.Load() }

// LastNow is the largest entry time applied: FSM time never runs backwards,
// and a new leader stamps no earlier than this.
func (f *FSM) LastNow() int64 { return f.lastNow.Load() }

// WaitApplied blocks until the FSM has applied index idx or ctx ends.
func (f *FSM) WaitApplied(ctx context.Context, idx uint64) error {
	for {
		f.notifyMu.Lock()
		ch := f.notify
		f.notifyMu.Unlock()
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

func (f *FSM) advance(idx uint64) {
	f.applied.Store(idx)
	f.notifyMu.Lock()
	close(f.notify)
	f.notify = make(chan struct{})
	f.notifyMu.Unlock()
}

// Apply implements raft.FSM for a single entry.
func (f *FSM) Apply(l *raft.Log) interface{} {
	return f.ApplyBatch([]*raft.Log{l})[0]
}

// ApplyBatch implements raft.BatchingFSM: one bbolt transaction for the whole
// batch, one reply (RESP bytes) per entry.
func (f *FSM) ApplyBatch(logs []*raft.Log) []interface{} {
	out := make([]interface{}, len(logs))
	f.mu.RLock()
	defer f.mu.RUnlock()
	applied := f.applied.Load()
	now := f.lastNow.Load()
	last := applied
	var effects []effect
	var batch batchState
	tx, err := f.db.Begin(true)
	if err != nil {
		panic(fmt.Sprintf("fsm: begin: %v", err)) // disk gone: let raft replay after restart
	}
	for i, l := range logs {
		if l.Index <= applied {
			continue // already in the file: a restart replays the log's tail
		}
		last = l.Index
		if l.Type != raft.LogCommand {
			continue
		}
		e, err := DecodeEntry(l.Data)
		if err != nil {
			out[i] = AppendError(nil, "ERR "+err.Error())
			continue
		}
		if e.Now > now {
			now = e.Now
		}
		c := Ctx{tx: tx, DB: e.DB, Now: now, writable: true, index: i, batch: &batch}
		out[i] = c.run(e.Args)
		if l.Index > f.quiet.Load() { // not a restart's replay: see QuietThrough
			effects = append(effects, c.effects...)
		}
	}
	batch.flushCounts(tx)
	m := tx.Bucket(bucketMeta)
	if err := m.Put(keyApplied, putU64(last)); err != nil {
		panic(err)
	}
	if err := m.Put(keyNow, putU64(uint64(now))); err != nil {
		panic(err)
	}
	if err := tx.Commit(); err != nil {
		panic(fmt.Sprintf("fsm: commit: %v", err))
	}
	f.lastNow.Store(now)
	// Deliver only after the commit and after advance: a subscriber that
	// reacts to a message by reading (any read mode, on this node) must see
	// every write ordered before the message. Linearizable reads would wait
	// for the index anyway; stale reads would not.
	f.advance(last)
	for _, e := range effects {
		e.deliver(f, out)
	}
	return out
}

// Query runs a read-only command against the current state as of now.
func (f *FSM) Query(db int, now int64, args [][]byte) []byte {
	f.mu.RLock()
	defer f.mu.RUnlock()
	tx, err := f.db.Begin(false)
	if err != nil {
		return AppendError(nil, "ERR "+err.Error())
	}
	defer tx.Rollback()
	if ln := f.lastNow.Load(); ln > now {
		now = ln
	}
	c := Ctx{tx: tx, DB: db, Now: now}
	return c.run(args)
}

// Snapshot implements raft.FSM: a consistent bbolt read transaction taken
// between batches, streamed out by Persist while applies go on.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	tx, err := f.db.Begin(false)
	if err != nil {
		return nil, err
	}
	return &snapshot{tx: tx}, nil
}

type snapshot struct{ tx *bolt.Tx }

func (s *snapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := s.tx.WriteTo(sink); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s *snapshot) Release() { s.tx.Rollback() }

// Restore implements raft.FSM: the snapshot is a whole bbolt file; it
// replaces ours.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	tmp := f.path + ".restore"
	w, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(w, rc); err != nil {
		w.Close()
		return err
	}
	if err := w.Sync(); err != nil {
		w.Close()
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.db.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, f.path); err != nil {
		return err
	}
	db, err := openDB(f.path)
	if err != nil {
		return err
	}
	f.db = db
	if err := f.loadMeta(); err != nil {
		return err
	}
	f.advance(f.applied.Load())
	return nil
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
	f.db.View(func(tx *bolt.Tx) error {
		m := tx.Bucket(bucketMeta)
		for i := range keys {
			keys[i] = int64(getU64(m.Get(countKeys[i])))
			expires[i] = int64(getU64(m.Get(expireKeys[i])))
		}
		return nil
	})
	return keys, expires
}

// Backup writes a consistent copy of the state (a bbolt file) to w while
// applies go on: an online backup.
func (f *FSM) Backup(w io.Writer) (int64, error) {
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
