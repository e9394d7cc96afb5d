package raftnode

import (
	"bytes"
	"io"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// The store must find the file raft's store writes, so that it syncs as it
// goes, and what it writes must read back whole.
func TestSnapshotsAreSyncedAsTheyAreWritten(t *testing.T) {
	store, err := newSnapshotStore(t.TempDir(), 2, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	_, trans := raft.NewInmemTransport("")
	create := func(index uint64) raft.SnapshotSink {
		t.Helper()
		sink, err := store.Create(raft.SnapshotVersionMax, index, 1, raft.Configuration{}, 1, trans)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := sink.(*syncingSink); !ok {
			t.Fatalf("Create returned %T: raft's snapshot store no longer keeps the layout this store expects", sink)
		}
		return sink
	}

	want := bytes.Repeat([]byte("0123456789abcdef"), 3*snapshotSyncBytes/16+1000)
	sink := create(10)
	for rest := want; len(rest) > 0; {
		n := min(len(rest), 32<<10)
		if _, err := sink.Write(rest[:n]); err != nil {
			t.Fatal(err)
		}
		rest = rest[n:]
	}
	if s := sink.(*syncingSink); s.unsynced >= snapshotSyncBytes {
		t.Fatalf("%d bytes written since the last sync", s.unsynced)
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
