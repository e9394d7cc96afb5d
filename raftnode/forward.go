package raftnode

import (
	"context"
	"sync"

	"github.com/redraft/redraft/fsm"
)

// forwarder coalesces concurrent forwards to the leader: while RPCs are in
// flight, new requests queue up and leave together in the next one. Fifty
// clients on a follower then cost a few RPCs per commit instead of fifty.
type forwarder struct {
	n        *Node
	mu       sync.Mutex
	queue    []*forwardReq
	inflight int // RPCs in flight
	inCmds   int // commands in them
}

// maxForwardRPCs bounds the forwarding RPCs in flight from one node. Each
// RPC becomes its own log entries on the leader (proposeNow), so this is
// the follower's counterpart of maxProposalsInFlight and has its value:
// with more, the same writes arrive in more, smaller entries, each costing
// encoding, an append and replication work on every node. At 4, SET -c 50
// through a follower made 0.13 log entries per command against the
// leader's 0.077, cost 142 µs of CPU per command across the machine
// against 120, and ran at 0.80 × the leader; at 2, 0.075 entries and 0.96
// × (docs/benchmarks.md, seventh session). The second RPC leaves only
// behind light ones, by the leader's rule (mayStart).
const maxForwardRPCs = maxProposalsInFlight

// maxForwardBatch bounds the entries one forwarding RPC carries.
const maxForwardBatch = 4096

type forwardReq struct {
	leader    string
	entries   []fsm.Entry
	done      chan struct{}
	replies   [][]byte
	uncertain bool
}

// do forwards entries (in order) to leader and returns the replies of a
// prefix of them; see forwardRPC.
func (f *forwarder) do(leader string, entries []fsm.Entry) ([][]byte, bool) {
	r := &forwardReq{leader: leader, entries: entries, done: make(chan struct{})}
	f.mu.Lock()
	f.queue = append(f.queue, r)
	f.startLocked()
	f.mu.Unlock()
	<-r.done // bounded: every RPC has a deadline
	return r.replies, r.uncertain
}

// startLocked sends queued requests while RPC slots are free, each RPC
// taking the queued requests bound for the same leader.
func (f *forwarder) startLocked() {
	for len(f.queue) > 0 && mayStart(f.inflight, f.inCmds, maxForwardRPCs) {
		leader := f.queue[0].leader
		var batch, rest []*forwardReq
		size := 0
		for _, r := range f.queue {
			if r.leader == leader && (len(batch) == 0 || size+len(r.entries) <= maxForwardBatch) {
				batch = append(batch, r)
				size += len(r.entries)
			} else {
				rest = append(rest, r)
			}
		}
		f.queue = rest
		f.inflight++
		f.inCmds += size
		go f.send(leader, batch, size)
	}
}

func (f *forwarder) send(leader string, batch []*forwardReq, size int) {
	var all []fsm.Entry
	for _, r := range batch {
		all = append(all, r.entries...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), f.n.cfg.ElectionWait)
	replies, uncertain := f.n.forwardRPC(ctx, leader, all)
	cancel()
	// The replies cover a prefix of all: hand each request its share.
	for _, r := range batch {
		k := min(len(r.entries), len(replies))
		r.replies, replies = replies[:k], replies[k:]
		r.uncertain = uncertain && k < len(r.entries)
		close(r.done)
	}
	f.mu.Lock()
	f.inflight--
	f.inCmds -= size
	f.startLocked()
	f.mu.Unlock()
}
