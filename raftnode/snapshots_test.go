package raftnode

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

func openSnapshotStore(t *testing.T, dir string) *syncingSnapshots {
	t.Helper()
	store, err := newSnapshotStore(dir, 2, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	return store
}

// createSnapshot starts a snapshot at index, checking that the store found
// the file raft's store writes (so that it syncs as it goes).
func createSnapshot(t *testing.T, store *syncingSnapshots, index uint64) *syncingSink {
	t.Helper()
	_, trans := raft.NewInmemTransport("")
	sink, err := store.Create(raft.SnapshotVersionMax, index, 1, raft.Configuration{}, 1, trans)
	if err != nil {
		t.Fatal(err)
	}
	s, ok := sink.(*syncingSink)
	if !ok {
		t.Fatalf("Create returned %T: raft's snapshot store no longer keeps the layout this store expects", sink)
	}
	return s
}

// A snapshot is synced as it is written, and reads back whole.
func TestSnapshotsAreSyncedAsTheyAreWritten(t *testing.T) {
	store := openSnapshotStore(t, t.TempDir())
	create := func(index uint64) *syncingSink { return createSnapshot(t, store, index) }

	want := bytes.Repeat([]byte("0123456789abcdef"), 3*snapshotSyncBytes/16+1000)
	sink := create(10)
	for rest := want; len(rest) > 0; {
		n := min(len(rest), 32<<10)
		if _, err := sink.Write(rest[:n]); err != nil {
			t.Fatal(err)
		}
		rest = rest[n:]
	}
	if sink.unsynced >= snapshotSyncBytes {
		t.Fatalf("%d bytes written since the last sync", sink.unsynced)
	}
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}

	cancelled := create(20)
	if _, err := cancelled.Write([]byte("half")); err != nil {
		t.Fatal(err)
	}
	if err := cancelled.Cancel(); err != nil {
		t.Fatal(err)
	}

	list, err := store.List()
	if err != nil || len(list) != 1 || list[0].Index != 10 {
		t.Fatalf("List() = %v, %v; want the one closed snapshot at index 10", list, err)
	}
	_, rc, err := store.Open(list[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("read back %d bytes, wrote %d", len(got), len(want))
	}
}

// A snapshot left half-written by a killed process is deleted when the
// store opens again; finished ones stay.
func TestUnfinishedSnapshotsAreRemoved(t *testing.T) {
	dir := t.TempDir()
	store := openSnapshotStore(t, dir)
	for _, index := range []uint64{10, 20} {
		sink := createSnapshot(t, store, index)
		if _, err := sink.Write([]byte("state")); err != nil {
			t.Fatal(err)
		}
		if index == 10 {
			if err := sink.Close(); err != nil {
				t.Fatal(err)
			}
		} // index 20 is left as a killed process leaves it
	}
	if tmp, _ := filepath.Glob(filepath.Join(dir, "snapshots", "*.tmp")); len(tmp) != 1 {
		t.Fatalf("before reopening: %d unfinished snapshots, want 1", len(tmp))
	}
	store = openSnapshotStore(t, dir)
	if tmp, _ := filepath.Glob(filepath.Join(dir, "snapshots", "*.tmp")); len(tmp) != 0 {
		t.Fatalf("after reopening: %v left", tmp)
	}
	if list, err := store.List(); err != nil || len(list) != 1 || list[0].Index != 10 {
		t.Fatalf("List() = %v, %v; want the finished snapshot at index 10", list, err)
	}
}

func TestSnapshotDue(t *testing.T) {
	const maxEntries, minBytes = 1000, 64 << 20
	for _, c := range []struct {
		entries, logBytes, stateBytes uint64
		due                           bool
	}{
		{entries: 999, logBytes: 10 << 20, stateBytes: 1 << 20, due: false},   // small log, small FSM
		{entries: 1000, logBytes: 10 << 20, stateBytes: 1 << 20, due: true},   // entries alone
		{entries: 10, logBytes: 64 << 20, stateBytes: 1 << 20, due: true},     // the byte floor
		{entries: 10, logBytes: 100 << 20, stateBytes: 240 << 20, due: false}, // a log smaller than the copy it would buy
		{entries: 10, logBytes: 240 << 20, stateBytes: 240 << 20, due: true},
	} {
		if got := snapshotDue(c.entries, c.logBytes, c.stateBytes, maxEntries, minBytes); got != c.due {
			t.Errorf("snapshotDue(entries %d, log %d, state %d) = %v, want %v", c.entries, c.logBytes, c.stateBytes, got, c.due)
		}
	}
}

// A node whose log outgrows its FSM file takes a snapshot and compacts the
// log, though the entries are far below the entry threshold (raft's own
// trigger, which counts entries only, is off). The writes overwrite one
// key, so the log grows and the FSM does not.
func TestLogBytesMakeASnapshotDue(t *testing.T) {
	n := openTestNode(t, Config{
		SnapshotThreshold: 1 << 30, SnapshotLogBytes: 64 << 10, SnapshotInterval: 10 * time.Millisecond, TrailingLogs: 4,
	})
	value := string(bytes.Repeat([]byte("v"), 4<<10))
	for i := 0; n.logs.appended.Load() <= 2*max(64<<10, n.fsm.UsedFileSize()); i++ {
		if i > 1000 {
			t.Fatalf("%d writes and the log (%d bytes) has not outgrown the FSM file (%d bytes)", i, n.logs.appended.Load(), n.fsm.UsedFileSize())
		}
		write(t, n, "SET", "k", value)
	}
	waitFor(t, func() bool { return n.Status().FirstIndex > 1 }, func() string {
		list, _ := n.snaps.List()
		return fmt.Sprintf("no compaction: %d snapshots, log %d..%d, %d bytes written, FSM file %d bytes",
			len(list), n.Status().FirstIndex, n.Status().LastIndex, n.logs.appended.Load(), n.fsm.UsedFileSize())
	})
}

// The next snapshot is due by the size of the last one, not of the FSM
// file: a file whose keys were deleted keeps its pages, and a log grown to
// the file's size would be many times what the snapshot buys back.
func TestLastSnapshotSizesTheNext(t *testing.T) {
	n := openTestNode(t, Config{
		SnapshotThreshold: 1 << 30, SnapshotLogBytes: 64 << 10, SnapshotInterval: 10 * time.Millisecond, TrailingLogs: 4,
	})
	// 10 MiB: past the FSM's flush limit, so the values reach the file
	// before they are deleted.
	big := string(bytes.Repeat([]byte("v"), 16<<10))
	for i := 0; i < 640; i++ {
		write(t, n, "SET", fmt.Sprint("key:", i), big)
	}
	for i := 0; i < 640; i++ {
		write(t, n, "DEL", fmt.Sprint("key:", i))
	}
	if err := n.raft.Snapshot().Error(); err != nil && !errors.Is(err, raft.ErrNothingNewToSnapshot) {
		t.Fatal(err)
	}
	list, err := n.snaps.List()
	if err != nil || len(list) == 0 {
		t.Fatalf("no snapshot after forcing one: %v", err)
	}
	last, file := list[0], n.fsm.UsedFileSize()
	if last.Size > 16<<10 || file < 2<<20 {
		t.Fatalf("snapshot of %d bytes, file of %d: want a small snapshot of a large file", last.Size, file)
	}
	// Due after 64 KiB of log (SnapshotLogBytes; the last snapshot is
	// smaller), counted from when the snapshot loop next looks, which may
	// be a few writes late on a busy machine; by the file's size it would
	// take the whole file (2 MiB and more), so half of it tells them apart.
	from := n.logs.appended.Load()
	small := string(bytes.Repeat([]byte("s"), 4<<10))
	for {
		if list, _ := n.snaps.List(); len(list) > 0 && list[0].Index > last.Index {
			return
		}
		if written := n.logs.appended.Load() - from; written > uint64(file/2) {
			t.Fatalf("no snapshot after %d bytes of log; the last was %d bytes, the file is %d", written, last.Size, file)
		}
		write(t, n, "SET", "k", small)
	}
}
