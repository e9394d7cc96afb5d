package fsm

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"
)

// A snapshot holds the keys and values of the state, not the bbolt file.
//
// The file keeps every page it ever grew to: after 100k values of 1 KB are
// written and deleted it is still ~150 MB, most of it free pages, and a
// copy of it (what redraft's snapshots were) costs every node seconds of
// disk and CPU for a few megabytes of data. The keys and values are only
// what is live, so a snapshot's cost follows the data, not the file's past.
//
// The format, after snapshotMagic: for each bucket, its name, then its
// keys and values in key order, then an empty key; after the last bucket,
// an empty name. Every length is a uvarint. The terminators make a
// truncated snapshot an error (raft's store checks a CRC besides).
//
// Restore also takes a whole bbolt file: the snapshots redraft wrote
// before, still on disk or sent by a leader not yet upgraded. A bbolt file
// starts with page 0's id, eight zero bytes, so the two never look alike.
const snapshotMagic = "redraft state v1\n"

// restoreTxBytes is how much a restore puts in one bbolt transaction:
// enough that commits are few, little enough to bound its memory.
var restoreTxBytes = 32 << 20 // a variable for tests

// snapshotBuckets is every bucket a snapshot carries, in the order written.
// (A function: bucketNames is filled by an init, after variables are.)
func snapshotBuckets() [][]byte { return append([][]byte{bucketMeta}, bucketNames[:]...) }

// Snapshot implements raft.FSM. It runs between batches, so it only
// freezes the active layer: Persist, on raft's snapshot goroutine, writes it
// to bbolt and streams a read transaction of the file, which then holds
// exactly the state at this index. No flush may run in between, so flushMu
// passes from Snapshot to Persist (or to Release, if raft never persists).
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	f.flushMu.Lock()
	l, st, dirty := f.freeze()
	return &snapshot{f: f, layer: l, state: st, dirty: dirty}, nil
}

type snapshot struct {
	f     *FSM
	layer *layer
	state meta
	dirty bool

	once sync.Once
	tx   *bolt.Tx
	err  error
}

// begin writes the frozen layer and opens the read transaction, once, and
// lets flushes run again.
func (s *snapshot) begin() {
	s.once.Do(func() {
		defer s.f.flushMu.Unlock()
		if s.dirty {
			s.f.write(s.layer, s.state)
		}
		s.tx, s.err = s.f.db.Begin(false)
	})
}

func (s *snapshot) Persist(sink raft.SnapshotSink) error {
	s.begin()
	if s.err == nil {
		s.err = writeState(sink, s.tx)
	}
	if s.err != nil {
		sink.Cancel()
		return s.err
	}
	return sink.Close()
}

func (s *snapshot) Release() {
	s.begin()
	if s.tx != nil {
		s.tx.Rollback()
	}
}

// writeState writes the keys and values of tx in the snapshot format.
func writeState(w io.Writer, tx *bolt.Tx) error {
	bw := bufio.NewWriterSize(w, 256<<10)
	var n [binary.MaxVarintLen64]byte
	field := func(b []byte) {
		bw.Write(n[:binary.PutUvarint(n[:], uint64(len(b)))])
		bw.Write(b)
	}
	bw.WriteString(snapshotMagic)
	for _, name := range snapshotBuckets() {
		bk := tx.Bucket(name)
		if bk == nil {
			continue // loadMeta creates it on restore
		}
		field(name)
		var skip []byte // the writer's own marker, not state
		if bytes.Equal(name, bucketMeta) {
			skip = keyDirty
		}
		c := bk.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if skip != nil && bytes.Equal(k, skip) {
				continue
			}
			field(k)
			field(v)
		}
		field(nil)
	}
	field(nil)
	return bw.Flush()
}

// Restore implements raft.FSM: the snapshot's state replaces ours.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	tmp := f.path + ".restore"
	r := bufio.NewReaderSize(rc, 256<<10)
	var err error
	switch head, _ := r.Peek(len(snapshotMagic)); {
	case string(head) == snapshotMagic:
		r.Discard(len(snapshotMagic))
		err = buildState(tmp, r)
	case len(head) >= 8 && bytes.Equal(head[:8], make([]byte, 8)):
		err = copyFile(tmp, r)
	default:
		err = fmt.Errorf("%w: neither redraft's format nor a bbolt file", errBadSnapshot)
	}
	if err == nil {
		err = checkState(tmp)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	f.flushMu.Lock() // a flush in progress finishes into the old file
	defer f.flushMu.Unlock()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.active, f.frozen = newLayer(), nil
	f.expiry.reset()
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
	f.advance(f.applied.Load(), 0)
	return nil
}

// copyFile writes a snapshot that is a whole bbolt file to path.
func copyFile(path string, r io.Reader) error {
	w, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(w, r)
	if err == nil {
		err = w.Sync()
	}
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	return err
}

var errBadSnapshot = errors.New("fsm: snapshot is damaged or truncated")

// checkState opens the file a restore wrote and checks it holds a state,
// before it replaces ours: openDB would quietly start empty from a file
// that does not open, and raft would then apply the log after the
// snapshot's index to nothing. (The checks stop short of reading pages a
// truncated file lacks: bbolt panics on those. Raft's CRC guards the rest.)
func checkState(path string) error {
	info, err := os.Stat(path)
	if err != nil {
		return err
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return fmt.Errorf("%w: %v", errBadSnapshot, err)
	}
	defer db.Close()
	return db.View(func(tx *bolt.Tx) error {
		if info.Size() < tx.Size() {
			return fmt.Errorf("%w: the file is shorter than its pages", errBadSnapshot)
		}
		if tx.Bucket(bucketMeta) == nil {
			return fmt.Errorf("%w: no %s bucket", errBadSnapshot, bucketMeta)
		}
		return nil
	})
}

// buildState writes the state a snapshot holds into a new bbolt file at
// path. The keys come in order, so pages are filled whole.
func buildState(path string, r *bufio.Reader) error {
	os.Remove(path)
	db, err := bolt.Open(path, 0o600, &bolt.Options{NoSync: true, NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return err
	}
	err = fillState(db, r)
	if err == nil {
		err = db.Sync()
	}
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	return err
}

func fillState(db *bolt.DB, r *bufio.Reader) error {
	known := map[string]bool{}
	for _, name := range snapshotBuckets() {
		known[string(name)] = true
	}
	tx, err := db.Begin(true)
	if err != nil {
		return err
	}
	defer func() { tx.Rollback() }()
	pending := 0 // bytes put in tx
	for {
		name, err := readField(r, bolt.MaxKeySize)
		if err != nil {
			return err
		}
		if len(name) == 0 {
			return tx.Commit()
		}
		if !known[string(name)] {
			return fmt.Errorf("%w: unknown bucket %q", errBadSnapshot, name)
		}
		bk, err := tx.CreateBucketIfNotExists(name)
		if err != nil {
			return err
		}
		bk.FillPercent = 1 // keys arrive in order: fill each page whole
		for {
			k, err := readField(r, bolt.MaxKeySize)
			if err != nil {
				return err
			}
			if len(k) == 0 {
				break
			}
			v, err := readField(r, bolt.MaxValueSize)
			if err != nil {
				return err
			}
			// bbolt keeps k and v, not copies, until the commit.
			if err := bk.Put(k, v); err != nil {
				return err
			}
			if pending += len(k) + len(v); pending >= restoreTxBytes {
				if err := tx.Commit(); err != nil {
					return err
				}
				next, err := db.Begin(true)
				if err != nil {
					return err
				}
				tx = next
				bk, pending = tx.Bucket(name), 0
				bk.FillPercent = 1
			}
		}
	}
}

// readField reads one length-prefixed field, at most limit bytes long.
func readField(r *bufio.Reader, limit int) ([]byte, error) {
	n, err := binary.ReadUvarint(r)
	if err != nil {
		return nil, errBadSnapshot
	}
	if n > uint64(limit) {
		return nil, fmt.Errorf("%w: a field of %d bytes", errBadSnapshot, n)
	}
	if n > 1<<20 { // read what is there, not what a damaged length claims
		b, err := io.ReadAll(io.LimitReader(r, int64(n)))
		if err != nil || uint64(len(b)) != n {
			return nil, errBadSnapshot
		}
		return b, nil
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, errBadSnapshot
	}
	return b, nil
}
