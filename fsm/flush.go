package fsm

import (
	"fmt"
	"math/rand/v2"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Write-back: entries apply to the active layer; the flusher freezes it
// (a new active layer takes the next entries) and writes the frozen one to
// bbolt in one transaction, in key order, without holding up applies or
// queries. The transaction also records the applied index, so the file is
// always a consistent prefix of the log: after a crash the node replays
// the log from there. Raft keeps that log: a snapshot flushes first, and
// raft compacts only behind its snapshots.
//
// A flush starts when the active layer reaches flushEntries or flushBytes,
// or flushInterval after the last one, each scaled by a random factor in
// [0.5, 1) (per layer for the sizes, per wait for the interval: see
// jitter), so the nodes, which apply the same entries, do not all flush at
// once. While one runs, a layer that grows
// past hardFactor times those limits makes the apply goroutine wait for it
// and flush in turn, which bounds memory when the disk is slower than the
// log.
//
// Bigger, rarer flushes cost less per entry: random keys dirty most leaf
// pages whatever the flush's size, and a commit rewrites every dirty page.
// Measured (-r 100000 random keys, 3 nodes): from 16k entries / 1 s to
// 64k / 4 MiB / 2 s, -P 16 SETs took 15 % less CPU across the cluster; to
// these, another 10-15 % at -P 1 and -P 16. The byte limit is what bounds
// memory: with GOGC=400 (cmd/redraft) every byte a layer holds costs up to
// five in RSS. With 100k 1 KB values a node measured ~210 MB at 4 MiB
// (when raft's log cache still held 32 MiB, raftnode/logcache.go), 160-190
// MB at 8 MiB, and 220-300 MB at 12 MiB.
const (
	flushEntries  = 131072
	flushBytes    = 8 << 20
	flushInterval = 4 * time.Second
	hardFactor    = 4
)

func (f *FSM) flushLoop() {
	defer close(f.stopped)
	t := time.NewTimer(flushInterval)
	defer t.Stop()
	for {
		select {
		case <-f.stopping:
			return
		case <-f.kick:
		case <-t.C:
		}
		f.flush()
		// Jittered like the size limits (newLayer), so nodes drift apart.
		t.Reset(time.Duration(jitter() * float64(flushInterval)))
	}
}

// flush writes everything applied so far to bbolt and returns once it is
// there.
func (f *FSM) flush() {
	f.flushMu.Lock()
	defer f.flushMu.Unlock()
	if l, st, ok := f.freeze(); ok {
		f.write(l, st)
	}
}

// freeze makes the active layer the frozen one, to be written, and starts
// a new active layer; it reports false when there is nothing to write.
// Called with flushMu held (so no layer is frozen already).
func (f *FSM) freeze() (*layer, meta, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.db == nil || (f.active.n == 0 && f.state.index == f.flushed) {
		return nil, meta{}, false
	}
	l, st := f.active, f.state
	f.frozen, f.active = l, newLayer()
	return l, st, true
}

// write puts the frozen layer l, and st, the state it brings the file to,
// into bbolt in one transaction, then drops the layer. Called with flushMu
// held.
//
// A file that no longer takes writes (disk full or gone) stops the node
// rather than let it serve a state that is never persisted: the Raft log
// holds every entry, and a restart replays them.
func (f *FSM) write(l *layer, st meta) {
	err := f.db.Update(func(tx *bolt.Tx) error {
		if err := l.writeTo(tx); err != nil {
			return err
		}
		return writeMeta(tx, &st)
	})
	if err != nil {
		panic(fmt.Sprintf("fsm: flush through index %d: %v", st.index, err))
	}
	f.mu.Lock()
	f.frozen = nil
	f.mu.Unlock()
	f.flushed = st.index
}

// jitter is a random factor in [0.5, 1) for a node's flush limits: see
// newLayer.
func jitter() float64 { return 0.5 + rand.Float64()/2 }

// maybeFlush starts a flush when the active layer is big enough.
func (f *FSM) maybeFlush() {
	f.mu.RLock()
	l := f.active
	full := float64(l.n) >= l.scale*flushEntries || float64(l.bytes) >= l.scale*flushBytes
	f.mu.RUnlock()
	if full {
		select {
		case f.kick <- struct{}{}:
		default:
		}
	}
}

// throttle makes the apply goroutine flush for itself when the active
// layer has outgrown the flusher. Called with no view open.
func (f *FSM) throttle() {
	f.mu.RLock()
	over := f.active.n >= hardFactor*flushEntries || f.active.bytes >= hardFactor*flushBytes
	f.mu.RUnlock()
	if over {
		f.flush()
	}
}

// view returns the state as it is now: the layers over bbolt. The view
// is valid while f.mu is held (either way): the frozen layer is dropped only
// under f.mu, so a view that holds it sees it whether its bbolt transaction
// began before or after the flush committed.
func (f *FSM) view() view {
	v := view{db: f.db, expiry: &f.expiry}
	v.layers[0] = f.active
	v.layers[1] = f.frozen
	return v
}

// read runs fn against the current state, holding off applies meanwhile.
func (f *FSM) read(fn func(v *view, st *meta)) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	v := f.view()
	defer v.close()
	fn(&v, &f.state)
}
