package raftnode

import (
	"sync"

	"github.com/hashicorp/raft"
)

// Followers learn the leader's commit index only from the next
// AppendEntries, and once writes stop flowing raft sends that only after
// its CommitTimeout (5-10 ms): the last entry before a quiet gap would
// reach followers' FSMs, and so their subscribers and their read barriers,
// that much later. So at every quiet point (everything in the log has
// applied here) the leader tells each follower the commit index itself,
// with the AppendEntries raft would send it next: no entries, PrevLogEntry
// and LeaderCommitIndex both the applied index, in the leader's term. A
// follower that holds that entry with that term advances its commit index
// and applies; one that does not refuses, as it would refuse raft's own.
//
// This replaced a no-op log entry appended at quiet points, whose own
// AppendEntries carried the commit index. That cost an fsync on every node
// (about 80 µs of system CPU each on this machine) and a round of
// replication before followers applied; at 100 msg/s of pub/sub every
// message needed one.
//
// Only a follower known to hold the entry is told, so that a follower still
// receiving it does not log a failed consistency check: trackingTransport
// watches raft's own AppendEntries succeed. A follower that has not yet
// acknowledged the entry is told when it does.
//
// Safety: the message is one the leader of that term could send at that
// moment. The index has applied on the leader, so it is committed; the
// follower checks that its log matches at that index before committing up
// to it; and it is sent only while this node leads in the entry's own term,
// so the term in it is this node's.

// trackingTransport is raft's network transport, recording how far each
// follower's log is known to match the leader's, from the AppendEntries
// responses raft receives.
type trackingTransport struct {
	*raft.NetworkTransport

	mu      sync.Mutex
	matched map[raft.ServerID]peerMatch
	acked   chan struct{} // capacity 1: a follower acknowledged entries
}

type peerMatch struct {
	addr  raft.ServerAddress
	term  uint64 // the leader's term in which index was acknowledged
	index uint64
}

func newTrackingTransport(t *raft.NetworkTransport) *trackingTransport {
	return &trackingTransport{NetworkTransport: t, matched: map[raft.ServerID]peerMatch{}, acked: make(chan struct{}, 1)}
}

func (t *trackingTransport) AppendEntries(id raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	err := t.NetworkTransport.AppendEntries(id, target, args, resp)
	if err == nil {
		t.observe(id, target, args, resp)
	}
	return err
}

func (t *trackingTransport) AppendEntriesPipeline(id raft.ServerID, target raft.ServerAddress) (raft.AppendPipeline, error) {
	p, err := t.NetworkTransport.AppendEntriesPipeline(id, target)
	if err != nil {
		return nil, err
	}
	tp := &trackingPipeline{AppendPipeline: p, out: make(chan raft.AppendFuture, 128), done: make(chan struct{})}
	go tp.forward(func(f raft.AppendFuture) { t.observe(id, target, f.Request(), f.Response()) })
	return tp, nil
}

// observe records a successful AppendEntries: the follower's log matches
// the leader's through its last entry (or PrevLogEntry, when it had none).
func (t *trackingTransport) observe(id raft.ServerID, addr raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) {
	if !resp.Success || resp.Term != args.Term {
		return
	}
	index := args.PrevLogEntry
	if n := len(args.Entries); n > 0 {
		index = args.Entries[n-1].Index
	}
	if index == 0 {
		return // a heartbeat
	}
	t.mu.Lock()
	// Within a term a follower's match only grows: the leader never
	// rewrites its own entries.
	if m, ok := t.matched[id]; !ok || args.Term > m.term || (args.Term == m.term && index > m.index) {
		t.matched[id] = peerMatch{addr: addr, term: args.Term, index: index}
	}
	t.mu.Unlock()
	t.signalAcked()
}

// signalAcked wakes tellCommits if it waits for acknowledgements.
func (t *trackingTransport) signalAcked() {
	select {
	case t.acked <- struct{}{}:
	default:
	}
}

// followers returns what is known of each follower in term.
func (t *trackingTransport) followers(term uint64) map[raft.ServerID]peerMatch {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[raft.ServerID]peerMatch, len(t.matched))
	for id, m := range t.matched {
		if m.term == term {
			out[id] = m
		}
	}
	return out
}

// trackingPipeline hands raft each pipelined response after recording it.
type trackingPipeline struct {
	raft.AppendPipeline
	out  chan raft.AppendFuture
	done chan struct{}
	once sync.Once
}

func (p *trackingPipeline) forward(observe func(raft.AppendFuture)) {
	in := p.AppendPipeline.Consumer()
	for {
		select {
		case f := <-in:
			observe(f)
			select {
			case p.out <- f:
			case <-p.done:
				return
			}
		case <-p.done:
			return
		}
	}
}

func (p *trackingPipeline) Consumer() <-chan raft.AppendFuture { return p.out }

func (p *trackingPipeline) Close() error {
	p.once.Do(func() { close(p.done) })
	return p.AppendPipeline.Close()
}

// tellCommits runs while this node leads: at each quiet point it tells the
// followers holding the last applied entry that it is committed.
func (n *Node) tellCommits(stop chan struct{}) {
	defer n.wg.Done()
	// Per follower: the highest index told, and whether a message is on
	// its way (at most one at a time). Shared with the senders.
	var mu sync.Mutex
	told := map[raft.ServerID]uint64{}
	busy := map[raft.ServerID]bool{}
	header := raft.RPCHeader{
		ProtocolVersion: raft.ProtocolVersionMax,
		ID:              []byte(n.cfg.ID),
		Addr:            n.trans.EncodePeer(raft.ServerID(n.cfg.ID), n.trans.LocalAddr()),
	}
	for {
		advanced := n.fsm.Advanced()
		index, term := n.fsm.Applied()
		// An entry still in flight will carry the commit index itself, or
		// reach a quiet point of its own. (An entry that never reaches the
		// FSM, raft's own no-op or a barrier, holds this up until the next
		// command.)
		// pending: a follower not yet told this quiet point, because it has
		// not acknowledged the entry or a message to it is on its way. Only
		// then do acknowledgements wake this loop: under load they come by
		// the thousand per second, and there is rarely a quiet point.
		pending := false
		if term != 0 && index == n.raft.LastIndex() && term == n.raft.CurrentTerm() && n.IsLeader() {
			for id, m := range n.trans.followers(term) {
				mu.Lock()
				send := told[id] < index && !busy[id] && m.index >= index
				pending = pending || (told[id] < index && !send)
				busy[id] = busy[id] || send
				mu.Unlock()
				if !send {
					continue
				}
				req := &raft.AppendEntriesRequest{
					RPCHeader: header, Term: term, Leader: header.Addr,
					PrevLogEntry: index, PrevLogTerm: term, LeaderCommitIndex: index,
				}
				// Not in the node's WaitGroup: to a follower that stopped
				// answering this waits out the transport's timeout, and
				// Close need not.
				go func() {
					var resp raft.AppendEntriesResponse
					// A refusal is not retried: raft's next AppendEntries
					// carries the commit index anyway.
					n.trans.NetworkTransport.AppendEntries(id, m.addr, req, &resp)
					mu.Lock()
					told[id], busy[id] = max(told[id], index), false
					mu.Unlock()
					n.trans.signalAcked()
				}()
			}
		}
		var acked <-chan struct{}
		if pending {
			acked = n.trans.acked
		}
		select {
		case <-stop:
			return
		case <-n.stop:
			return
		case <-advanced:
		case <-acked:
		}
	}
}
