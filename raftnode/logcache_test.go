package raftnode

import (
	"testing"

	"github.com/hashicorp/raft"
)

// countingStore is an in-memory raft.LogStore that counts reads, so the
// test can tell a cache hit from a miss.
type countingStore struct {
	*raft.InmemStore
	reads int
}

func (s *countingStore) GetLog(idx uint64, log *raft.Log) error {
	s.reads++
	return s.InmemStore.GetLog(idx, log)
}

func TestLogCacheBoundsEntriesAndBytes(t *testing.T) {
	store := &countingStore{InmemStore: raft.NewInmemStore()}
	c := newLogCache(store, 4, 100)
	entry := func(i uint64, size int) *raft.Log {
		return &raft.Log{Index: i, Term: 1, Data: make([]byte, size)}
	}
	// hit reports whether idx is served from memory, and checks the entry.
	hit := func(idx uint64) bool {
		t.Helper()
		before := store.reads
		var l raft.Log
		if err := c.GetLog(idx, &l); err != nil {
			t.Fatalf("GetLog(%d): %v", idx, err)
		}
		if l.Index != idx {
			t.Fatalf("GetLog(%d) returned index %d", idx, l.Index)
		}
		return store.reads == before
	}
	store1 := func(logs ...*raft.Log) {
		t.Helper()
		if err := c.StoreLogs(logs); err != nil {
			t.Fatal(err)
		}
	}

	// Six small entries: only the newest four fit the ring.
	for i := uint64(1); i <= 6; i++ {
		store1(entry(i, 10))
	}
	for i, want := range map[uint64]bool{1: false, 2: false, 3: true, 6: true} {
		if got := hit(i); got != want {
			t.Errorf("entries bound: index %d cached = %v, want %v", i, got, want)
		}
	}
	// A 90-byte entry pushes the older ones out to stay within 100 bytes.
	store1(entry(7, 90))
	for i, want := range map[uint64]bool{5: false, 6: true, 7: true} {
		if got := hit(i); got != want {
			t.Errorf("bytes bound: index %d cached = %v, want %v", i, got, want)
		}
	}
	// An entry bigger than the bound is still cached alone: it is the one
	// about to be replicated and applied.
	store1(entry(8, 500))
	if !hit(8) || hit(7) {
		t.Error("an oversized entry should replace everything else")
	}
	// A truncation empties the cache; entries stored after it are cached
	// from their own index on.
	if err := c.DeleteRange(8, 8); err != nil {
		t.Fatal(err)
	}
	store1(entry(8, 10), entry(9, 10))
	if !hit(8) || !hit(9) {
		t.Error("entries stored after a truncation should be cached")
	}
	if c.bytes != 20 {
		t.Errorf("cached bytes = %d, want 20", c.bytes)
	}
}
