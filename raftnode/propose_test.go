package raftnode

import (
	"bytes"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// Writes that queue while the proposer's slots are busy leave as one batch:
// one log entry per database, each caller's commands contiguous and in
// order, and each caller gets exactly its own replies.
func TestProposerPacksQueuedWritesIntoOneEntryPerDatabase(t *testing.T) {
	n := openTestNode(t, Config{})
	write(t, n, "SET", "setup", "1")

	// Hold every slot, as if batches were in flight, so writes queue.
	p := n.prop
	p.mu.Lock()
	held := p.limit - p.inflight
	p.inflight = p.limit
	p.mu.Unlock()

	const callers = 40
	type result struct {
		i       int
		replies [][]byte
	}
	results := make(chan result, callers)
	for i := 0; i < callers; i++ {
		go func() {
			key := []byte(fmt.Sprintf("counter:%d", i))
			cmds := [][][]byte{{[]byte("INCR"), key}, {[]byte("INCRBY"), key, []byte("10")}, {[]byte("GET"), key}}
			results <- result{i, n.Write(i%2, cmds)}
		}()
	}
	for queued := 0; queued < callers; {
		time.Sleep(time.Millisecond) // polling the queue: nothing to wait on
		p.mu.Lock()
		queued = len(p.queue)
		p.mu.Unlock()
	}
	before := n.raft.LastIndex()
	p.mu.Lock()
	p.inflight -= held
	p.startLocked()
	p.mu.Unlock()

	want := []string{":1\r\n", ":11\r\n", "$2\r\n11\r\n"}
	for range callers {
		r := <-results
		got := make([]string, len(r.replies))
		for k, b := range r.replies {
			got[k] = string(b)
		}
		if !slices.Equal(got, want) {
			t.Errorf("caller %d: replies %q, want %q", r.i, got, want)
		}
	}
	// Count the entries carrying the callers' commands.
	entries := 0
	for i := before + 1; i <= n.raft.LastIndex(); i++ {
		var l raft.Log
		if err := n.store.GetLog(i, &l); err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(l.Data, []byte("INCR")) {
			entries++
		}
	}
	if entries != 2 {
		t.Errorf("%d callers in 2 databases took %d log entries, want 2", callers, entries)
	}
}

// A second batch leaves while one is in flight only if that one is light:
// behind a heavy batch, writes queue for the next.
func TestProposerStartsASecondBatchOnlyBehindALightOne(t *testing.T) {
	n := openTestNode(t, Config{})
	write(t, n, "SET", "setup", "1")
	p := n.prop
	queued := func() int {
		p.mu.Lock()
		defer p.mu.Unlock()
		return len(p.queue)
	}

	// As if a batch of lightBatch commands were in flight.
	p.mu.Lock()
	p.inflight, p.inCmds = 1, lightBatch
	p.mu.Unlock()
	done := make(chan [][]byte, 1)
	go func() { done <- n.Write(0, [][][]byte{{[]byte("SET"), []byte("k"), []byte("v")}}) }()
	waitFor(t, func() bool { return queued() == 1 || len(done) == 1 }, func() string { return "the write neither queued nor finished" })
	if len(done) == 1 {
		t.Fatalf("a write left beside a batch of %d commands: %q", lightBatch, <-done)
	}

	// The batch in flight is light after all: the queued write leaves.
	p.mu.Lock()
	p.inCmds = lightBatch - 1
	p.startLocked()
	p.mu.Unlock()
	if r := <-done; string(r[0]) != "+OK\r\n" {
		t.Fatalf("SET behind a light batch: %q", r[0])
	}
	p.mu.Lock()
	if p.inflight != 1 || p.inCmds != lightBatch-1 {
		t.Errorf("after the second batch: %d in flight holding %d commands, want 1 and %d", p.inflight, p.inCmds, lightBatch-1)
	}
	p.inflight, p.inCmds = 0, 0
	p.mu.Unlock()
}

func TestSettleKeepsRetriesInOrder(t *testing.T) {
	ok := []byte("+OK\r\n")
	for _, c := range []struct {
		name     string
		outcomes []outcome
		want     []string
	}{
		{"all applied", []outcome{applied, applied}, []string{"+OK\r\n", "+OK\r\n"}},
		{"a tail not applied is left to retry", []outcome{applied, notApplied, notApplied}, []string{"+OK\r\n"}},
		{"nothing applied", []outcome{notApplied, notApplied}, []string{}},
		{"not applied before applied is not retried", []outcome{notApplied, applied}, []string{ReplyClusterDown, "+OK\r\n"}},
		{"uncertain", []outcome{applied, uncertain, notApplied}, []string{"+OK\r\n", ReplyUncertain}},
	} {
		replies := make([][]byte, len(c.outcomes))
		for k, o := range c.outcomes {
			if o == applied {
				replies[k] = ok
			}
		}
		got := []string{}
		for _, r := range settle(replies, c.outcomes) {
			got = append(got, string(r))
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}
