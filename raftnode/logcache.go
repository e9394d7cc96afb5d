package raftnode

import (
	"sync"
	"sync/atomic"

	"github.com/hashicorp/raft"
)

// logCache keeps the newest log entries in memory in front of the log
// store, as raft.LogCache does: the leader reads every entry back to
// replicate it, and followers read every entry back to apply it, right
// after storing it. Unlike raft.LogCache it is bounded in bytes as well as
// in entries. A batched entry holds up to 64 KiB of commands, so raft's
// 512-entry cache held up to 32 MiB, and measured on a node filled with
// 100k 1 KB values it was two thirds of the live heap, which GOGC=400
// (cmd/redraft) multiplies into RSS. Replication and apply only need the
// few entries in flight.
type logCache struct {
	raft.LogStore
	maxBytes int

	appended atomic.Uint64 // bytes of entry data stored since the process started

	mu     sync.RWMutex
	ring   []*raft.Log // entry i at ring[i%len(ring)]
	lo, hi uint64      // the cached indexes are [lo, hi)
	bytes  int         // data held by the cached entries
}

func newLogCache(store raft.LogStore, maxEntries, maxBytes int) *logCache {
	return &logCache{LogStore: store, maxBytes: maxBytes, ring: make([]*raft.Log, maxEntries)}
}

func (c *logCache) GetLog(idx uint64, log *raft.Log) error {
	c.mu.RLock()
	if idx >= c.lo && idx < c.hi {
		*log = *c.ring[idx%uint64(len(c.ring))]
		c.mu.RUnlock()
		return nil
	}
	c.mu.RUnlock()
	return c.LogStore.GetLog(idx, log)
}

func (c *logCache) StoreLog(log *raft.Log) error { return c.StoreLogs([]*raft.Log{log}) }

// StoreLogs caches the entries once the store has them. Entries come in
// index order; one that does not follow the cached ones (after a
// truncation) starts the cache afresh.
func (c *logCache) StoreLogs(logs []*raft.Log) error {
	if err := c.LogStore.StoreLogs(logs); err != nil {
		return err
	}
	var size uint64
	for _, l := range logs {
		size += uint64(len(l.Data))
	}
	c.appended.Add(size)
	c.mu.Lock()
	defer c.mu.Unlock()
	n := uint64(len(c.ring))
	for _, l := range logs {
		if l.Index != c.hi {
			c.clear()
			c.lo, c.hi = l.Index, l.Index
		}
		if c.hi-c.lo == n {
			c.evict()
		}
		c.ring[c.hi%n] = l
		c.hi++
		c.bytes += len(l.Data)
		for c.bytes > c.maxBytes && c.hi-c.lo > 1 {
			c.evict()
		}
	}
	return nil
}

func (c *logCache) DeleteRange(min, max uint64) error {
	c.mu.Lock()
	c.clear()
	c.mu.Unlock()
	return c.LogStore.DeleteRange(min, max)
}

// IsMonotonic passes on raft-wal's promise (raft.MonotonicLogStore).
func (c *logCache) IsMonotonic() bool {
	m, ok := c.LogStore.(raft.MonotonicLogStore)
	return ok && m.IsMonotonic()
}

// evict drops the oldest cached entry. Called with mu held.
func (c *logCache) evict() {
	i := c.lo % uint64(len(c.ring))
	c.bytes -= len(c.ring[i].Data)
	c.ring[i] = nil
	c.lo++
}

// clear empties the cache, letting go of the entries. Called with mu held.
func (c *logCache) clear() {
	for c.lo < c.hi {
		c.evict()
	}
	c.lo, c.hi, c.bytes = 0, 0, 0
}
