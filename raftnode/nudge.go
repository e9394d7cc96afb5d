package raftnode

import (
	"context"

	"github.com/redraft/redraft/fsm"
)

// nudgeCommits runs while this node leads. Followers learn the leader's
// commit index only from the next AppendEntries, and once writes stop
// flowing raft sends that only after CommitTimeout (5-10 ms): the last
// entry before a quiet gap would reach followers' FSMs, and so their
// subscribers and their read barriers, that much later. So whenever
// everything appended has applied here (a quiet point), the leader appends
// one no-op: its AppendEntries carries the new commit index to the
// followers at once. Under steady load the next write usually does that
// anyway: the log is rarely caught up with the FSM, so nudges are rare.
//
// The nudge's own commit is not nudged, or the leader would nudge forever:
// it changes no state, so followers lose nothing by learning it late.
//
// A nudge is sent at once, not after a short wait for a write that might
// be on its way and carry the commit index instead. Measured (pubsub bench,
// 3 nodes, 100 subscribers): at 1,000 msg/s a 200 µs wait cut the nudges
// from ~23% to ~17% of the messages without changing latency; at 100 msg/s
// every write is lone, so the wait saves nothing and only delays followers.
func (n *Node) nudgeCommits(stop chan struct{}) {
	defer n.wg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-stop:
		case <-n.stop:
		case <-ctx.Done():
		}
		cancel()
	}()
	noop := fsm.Entry{Args: [][]byte{[]byte("redraft.noop")}}
	var nudged uint64 // the last nudge that carried everything before it
	for {
		applied := n.fsm.AppliedIndex()
		wait := applied + 1
		switch last := n.raft.LastIndex(); {
		case last > applied:
			// Entries in flight: look again once they have applied. (An
			// entry that never reaches the FSM, raft's own no-op or a
			// barrier, holds this up until the next command.)
			wait = last
		case applied > nudged:
			noop.Now = n.now()
			f := n.raft.Apply(noop.Encode(), n.cfg.ElectionWait)
			switch {
			case n.await(f) != nil:
				// Leadership lost or moving, or shutting down: stop
				// arrives by itself. Do not retry this point; a
				// leader that stays retries at the next one.
				nudged = applied
			case f.Index() == applied+1:
				nudged = f.Index()
			default:
				// Writes were appended between the quiet point and
				// the nudge: its AppendEntries may have carried only
				// the quiet point's commit index, not theirs. Nudge
				// again.
				nudged = applied
			}
			continue
		}
		if n.fsm.WaitApplied(ctx, wait) != nil {
			return
		}
	}
}
