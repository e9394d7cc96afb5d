package raftnode

import (
	"context"
	"sync"

	"github.com/redraft/redraft/fsm"
)

// forwarder coalesces concurrent forwards to the leader: while an RPC is in
// flight, new requests queue up and leave together in the next one. Fifty
// clients on a follower then cost a few RPCs per commit instead of fifty.
//
// Requests queue by the leader they are bound for, each leader with its
// own RPCs in flight: an RPC to a leader that stopped answering (deposed,
// or cut off one way) waits out its deadline, and must not hold up writes
// bound for its successor.
type forwarder struct {
	n      *Node
	mu     sync.Mutex
	routes map[string]*route // by leader address
}

// route is the forwarding state toward one leader.
type route struct {
	queue []*forwardReq
	rpcs  int // RPCs in flight
	cmds  int // commands in them
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
	entries   []fsm.Entry
	done      chan struct{}
	replies   [][]byte
	uncertain bool
}

// do forwards entries (in order) to leader and returns the replies of a
// prefix of them; see forwardRPC.
func (f *forwarder) do(leader string, entries []fsm.Entry) ([][]byte, bool) {
	r := &forwardReq{entries: entries, done: make(chan struct{})}
	f.mu.Lock()
	rt := f.routes[leader]
	if rt == nil {
		rt = &route{}
		f.routes[leader] = rt
	}
	rt.queue = append(rt.queue, r)
	f.startLocked(leader, rt)
	f.mu.Unlock()
	<-r.done // bounded: every RPC has a deadline
	return r.replies, r.uncertain
}

// startLocked sends rt's queued requests while it may have another RPC in
// flight, and forgets rt once it is idle.
func (f *forwarder) startLocked(leader string, rt *route) {
	for len(rt.queue) > 0 && mayStart(rt.rpcs, rt.cmds, maxForwardRPCs) {
		k, size := 1, len(rt.queue[0].entries)
		for k < len(rt.queue) && size+len(rt.queue[k].entries) <= maxForwardBatch {
			size += len(rt.queue[k].entries)
			k++
		}
		batch := rt.queue[:k:k]
		rt.queue = rt.queue[k:]
		rt.rpcs++
		rt.cmds += size
		go f.send(leader, rt, batch, size)
	}
	if len(rt.queue) == 0 && rt.rpcs == 0 {
		delete(f.routes, leader)
	}
}

func (f *forwarder) send(leader string, rt *route, batch []*forwardReq, size int) {
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
	rt.rpcs--
	rt.cmds -= size
	f.startLocked(leader, rt)
	f.mu.Unlock()
}
