package raftnode

import (
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// snapshotSyncBytes is how much of a snapshot may sit in the page cache
// before it is pushed to disk.
//
// raft's file snapshot store syncs a snapshot once, when it closes it. A
// snapshot holds the whole state (hundreds of megabytes, it may be), so that
// one sync hands the disk all of it at once, and every log fsync queued
// behind it waits: with a 240 MB FSM, a publish's p99 went from 19 to
// 130 ms while the three nodes snapshotted, and to 34–44 ms syncing every
// 256 KiB to 1 MiB. Syncing as it goes keeps at most this much ahead of a
// log fsync.
const snapshotSyncBytes = 256 << 10

// syncingSnapshots is raft's file snapshot store with snapshots written to
// disk as they are written rather than at the end.
type syncingSnapshots struct {
	*raft.FileSnapshotStore
	dir string // where FileSnapshotStore keeps them: <data dir>/snapshots
}

func newSnapshotStore(dataDir string, retain int, logger hclog.Logger) (*syncingSnapshots, error) {
	store, err := raft.NewFileSnapshotStoreWithLogger(dataDir, retain, logger)
	if err != nil {
		return nil, err
	}
	s := &syncingSnapshots{FileSnapshotStore: store, dir: filepath.Join(dataDir, "snapshots")}
	return s, s.removeUnfinished()
}

// removeUnfinished deletes snapshots left half-written by a process that
// died writing them (<id>.tmp). raft's store skips them but never deletes
// them, and each is up to a copy of the whole FSM. Called before raft
// starts, when none can be in progress.
func (s *syncingSnapshots) removeUnfinished() error {
	dirs, err := filepath.Glob(filepath.Join(s.dir, "*.tmp"))
	if err != nil {
		return err
	}
	for _, d := range dirs {
		if err := os.RemoveAll(d); err != nil {
			return err
		}
	}
	return nil
}

// Create opens a second handle on the state file the store just created
// (its layout, <id>.tmp/state.bin, is FileSnapshotStore's), to sync it.
// Were the layout ever different, snapshots would still be written, synced
// once at the end as before.
func (s *syncingSnapshots) Create(version raft.SnapshotVersion, index, term uint64,
	configuration raft.Configuration, configurationIndex uint64, trans raft.Transport) (raft.SnapshotSink, error) {
	sink, err := s.FileSnapshotStore.Create(version, index, term, configuration, configurationIndex, trans)
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(s.dir, sink.ID()+".tmp", "state.bin"), os.O_WRONLY, 0)
	if err != nil {
		return sink, nil
	}
	return &syncingSink{SnapshotSink: sink, file: f}, nil
}

type syncingSink struct {
	raft.SnapshotSink
	file     *os.File
	unsynced int
}

func (s *syncingSink) Write(p []byte) (int, error) {
	n, err := s.SnapshotSink.Write(p)
	s.unsynced += n
	if err == nil && s.unsynced >= snapshotSyncBytes {
		s.unsynced = 0
		err = s.file.Sync()
	}
	return n, err
}

func (s *syncingSink) Close() error {
	s.file.Close()
	return s.SnapshotSink.Close()
}

func (s *syncingSink) Cancel() error {
	s.file.Close()
	return s.SnapshotSink.Cancel()
}

// snapshotDue is the policy: a snapshot writes out the whole state and
// buys a shorter log, so one is due when the log written since the last
// snapshot is at least as large as the snapshot would be (and at least
// minBytes), as the Raft dissertation suggests (§5.1.3), or when it holds
// maxEntries entries. raft's own trigger counts only entries, so a stream
// of small entries (publishes, lone writes) copied the whole FSM every
// 8,192 of them: with a 240 MB FSM, every ~8 s at 1,000 publishes/s.
func snapshotDue(entries, logBytes, stateBytes, maxEntries, minBytes uint64) bool {
	return entries >= maxEntries || logBytes >= max(minBytes, stateBytes)
}

// snapshotWhenDue runs while the node lives, checking the policy every
// SnapshotInterval or so (jittered, so that the nodes, which write the
// same log, do not all copy their FSMs at the same moment).
func (n *Node) snapshotWhenDue() {
	defer n.wg.Done()
	logs := n.logs
	// latest is the newest snapshot, this node's or one installed from the
	// leader: its index, and its size, which the next one will be close to
	// (a snapshot holds the live keys, so the FSM file, which keeps every
	// page it ever grew to, can be many times larger).
	latest := func() (index, size uint64) {
		list, err := n.snaps.List()
		if err != nil || len(list) == 0 {
			return 0, 0
		}
		return list[0].Index, uint64(list[0].Size)
	}
	since, size := latest()
	bytesThen := logs.appended.Load()
	for {
		select {
		case <-n.stop:
			return
		case <-time.After(n.cfg.SnapshotInterval + rand.N(n.cfg.SnapshotInterval)):
		}
		if idx, sz := latest(); idx != since {
			since, size, bytesThen = idx, sz, logs.appended.Load()
		}
		if since == 0 {
			size = n.fsm.UsedFileSize() // no snapshot yet: this bounds one
		}
		last := n.raft.LastIndex()
		entries := last - min(since, last)
		if !snapshotDue(entries, logs.appended.Load()-bytesThen, size, n.cfg.SnapshotThreshold, n.cfg.SnapshotLogBytes) {
			continue
		}
		bytesNow := logs.appended.Load()
		if err := n.raft.Snapshot().Error(); err != nil {
			if !errors.Is(err, raft.ErrNothingNewToSnapshot) {
				n.log.Warn("snapshot failed", "err", err)
			}
			continue
		}
		since, size = latest()
		bytesThen = bytesNow
	}
}
