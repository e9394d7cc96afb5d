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
// lease mode) and reports its commit index and its clock, and this node
// waits until it has applied that far. Concurrent callers share one round.
// It returns the time the read evaluates TTL deadlines at: the leader's
// clock, so a key expires at the same moment whichever node is asked.
func (n *Node) ReadBarrier() (int64, error) {
	if n.cfg.Reads == Stale {
		return n.readClock(), nil
	}
	// The common case first, with no deadline of its own (a round has one)
	// and nothing allocated: one round succeeds and this node has applied
	// what it asks for. On the leader that is every read that is not racing
	// an election, and these few allocations were a few per cent of a GET.
	start := time.Now()
	r, err := n.readRound(nil)
	if err == nil && n.fsm.AppliedIndex() >= r.index {
		return r.now, nil
	}
	ctx, cancel := context.WithDeadline(context.Background(), start.Add(n.cfg.ElectionWait))
	defer cancel()
	for err != nil {
		if ctx.Err() != nil {
			return 0, err
		}
		// Leadership moved during the round: try again with the new leader.
		if _, err := n.waitLeader(ctx); err != nil {
			return 0, err
		}
		r, err = n.readRound(ctx)
	}
	return r.now, n.fsm.WaitApplied(ctx, r.index)
}

// readRound joins the next read-index round, as leader or through it. A nil
// ctx waits for the round to end, which it does within its own timeout (at
// most half the election wait), after at most one round ahead of it.
func (n *Node) readRound(ctx context.Context) (readPoint, error) {
	if n.IsLeader() {
		return n.leaderReads.wait(ctx)
	}
	return n.followerReads.wait(ctx)
}

// readPoint is what a read waits for: an index to have applied, and the
// leader's time at the start of the round.
type readPoint struct {
	index uint64
	now   int64
}

// leaderReadIndex is one read-index round on the leader.
func (n *Node) leaderReadIndex(ctx context.Context) (readPoint, error) {
	if !n.IsLeader() {
		return readPoint{}, errNotLeader
	}
	// Until the barrier of this term has applied, the commit index may not
	// cover entries committed by the previous leader.
	if !n.ready.Load() {
		if err := n.commitNoop(); err != nil {
			return readPoint{}, err
		}
	}
	r := readPoint{index: n.raft.CommitIndex(), now: n.readClock()}
	if n.cfg.Reads == Linearizable {
		if err := n.raft.VerifyLeader().Error(); err != nil {
			if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
				return readPoint{}, errNotLeader
			}
			return readPoint{}, err
		}
	}
	return r, nil
}

// remoteReadIndex is one read-index round asked of the leader.
func (n *Node) remoteReadIndex(ctx context.Context) (readPoint, error) {
	leader, err := n.waitLeader(ctx)
	if err != nil {
		return readPoint{}, err
	}
	if string(leader) == n.cfg.Advertise {
		return n.leaderReadIndex(ctx)
	}
	resp, err := n.call(ctx, string(leader), opReadIndex, nil)
	if err != nil {
		return readPoint{}, err
	}
	if len(resp) != 16 {
		return readPoint{}, errors.New("raftnode: bad read-index reply")
	}
	return readPoint{index: getU64(resp[:8]), now: int64(getU64(resp[8:]))}, nil
}

// batcher coalesces concurrent read barriers into rounds. A caller joins the
// next round that has not started yet, never one already in flight: the
// commit index a round captures must postdate the caller's arrival. Up to
// maxRounds rounds run at once, so a burst of readers waits for at most one
// round trip, not for the queue of rounds ahead of it.
type batcher struct {
	fetch    func(context.Context) (readPoint, error)
	timeout  time.Duration // a round's deadline
	mu       sync.Mutex
	next     *round
	inflight int
}

const maxRounds = 4

type round struct {
	done chan struct{}
	at   readPoint
	err  error
}

// newBatcher makes a batcher whose rounds end within timeout.
func newBatcher(fetch func(context.Context) (readPoint, error), timeout time.Duration) *batcher {
	return &batcher{fetch: fetch, timeout: timeout}
}

func (b *batcher) wait(ctx context.Context) (readPoint, error) {
	b.mu.Lock()
	if b.next == nil {
		b.next = &round{done: make(chan struct{})}
	}
	r := b.next
	b.startLocked()
	b.mu.Unlock()
	if ctx == nil {
		<-r.done
		return r.at, r.err
	}
	select {
	case <-r.done:
		return r.at, r.err
	case <-ctx.Done():
		return readPoint{}, ctx.Err()
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
	ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
	r.at, r.err = b.fetch(ctx)
	cancel()
	close(r.done)
	b.mu.Lock()
	b.inflight--
	b.startLocked()
	b.mu.Unlock()
}
