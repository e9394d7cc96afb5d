package raftnode

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Reply for a read that could not be made linearizable in time.
const ReplyReadTimeout = "-CLUSTERDOWN The cluster is down: could not confirm a read with the Raft leader\r\n"

// roundTimeout bounds one read-index round, so a round stuck on a dead
// leader fails and its callers retry with the next one.
const roundTimeout = 2 * time.Second

// ReadBarrier waits until a read on this node will see every write that
// completed before the call: the leader confirms it still leads (unless in
// lease mode) and reports its commit index, and this node waits until it
// has applied that far. Concurrent callers share one round.
func (n *Node) ReadBarrier() error {
	if n.cfg.Reads == Stale {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.ElectionWait)
	defer cancel()
	for {
		var idx uint64
		var err error
		if n.IsLeader() {
			idx, err = n.leaderReads.wait(ctx)
		} else {
			idx, err = n.followerReads.wait(ctx)
		}
		if err == nil {
			return n.fsm.WaitApplied(ctx, idx)
		}
		if ctx.Err() != nil {
			return err
		}
		// Leadership moved during the round: try again with the new leader.
		if _, err := n.waitLeader(ctx); err != nil {
			return err
		}
	}
}

// leaderReadIndex is one read-index round on the leader.
func (n *Node) leaderReadIndex(ctx context.Context) (uint64, error) {
	if !n.IsLeader() {
		return 0, errNotLeader
	}
	// Until the barrier of this term has applied, the commit index may not
	// cover entries committed by the previous leader.
	if !n.ready.Load() {
		if err := n.commitNoop(); err != nil {
			return 0, err
		}
	}
	idx := n.raft.CommitIndex()
	if n.cfg.Reads == Linearizable {
		if err := n.raft.VerifyLeader().Error(); err != nil {
			if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
				return 0, errNotLeader
			}
			return 0, err
		}
	}
	return idx, nil
}

// remoteReadIndex is one read-index round asked of the leader.
func (n *Node) remoteReadIndex(ctx context.Context) (uint64, error) {
	leader, err := n.waitLeader(ctx)
	if err != nil {
		return 0, err
	}
	if string(leader) == n.cfg.Advertise {
		return n.leaderReadIndex(ctx)
	}
	resp, err := n.call(ctx, string(leader), opReadIndex, nil)
	if err != nil {
		return 0, err
	}
	if len(resp) != 8 {
		return 0, errors.New("raftnode: bad read-index reply")
	}
	return getU64(resp), nil
}

// batcher coalesces concurrent read barriers into rounds. A caller joins the
// next round that has not started yet, never one already in flight: the
// commit index a round captures must postdate the caller's arrival. Up to
// maxRounds rounds run at once, so a burst of readers waits for at most one
// round trip, not for the queue of rounds ahead of it.
type batcher struct {
	fetch    func(context.Context) (uint64, error)
	mu       sync.Mutex
	next     *round
	inflight int
}

const maxRounds = 4

type round struct {
	done chan struct{}
	idx  uint64
	err  error
}

func newBatcher(fetch func(context.Context) (uint64, error)) *batcher {
	return &batcher{fetch: fetch}
}

func (b *batcher) wait(ctx context.Context) (uint64, error) {
	b.mu.Lock()
	if b.next == nil {
		b.next = &round{done: make(chan struct{})}
	}
	r := b.next
	b.startLocked()
	b.mu.Unlock()
	select {
	case <-r.done:
		return r.idx, r.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// startLocked starts the waiting round if a slot is free.
func (b *batcher) startLocked() {
	if b.next == nil || b.inflight >= maxRounds {
		return
	}
	r := b.next
	b.next = nil
	b.inflight++
	go b.run(r)
}

func (b *batcher) run(r *round) {
	// A round outlives the caller that started it, so it gets its own
	// deadline rather than that caller's context.
	ctx, cancel := context.WithTimeout(context.Background(), roundTimeout)
	r.idx, r.err = b.fetch(ctx)
	cancel()
	close(r.done)
	b.mu.Lock()
	b.inflight--
	b.startLocked()
	b.mu.Unlock()
}
