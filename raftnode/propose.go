package raftnode

import (
	"errors"
	"sync"

	"github.com/hashicorp/raft"

	"github.com/redraft/redraft/fsm"
)

// proposer coalesces concurrent writes on the leader into shared log
// entries. Raft's cost is per entry (a future, encoding, a WAL record and
// replication per follower, the FSM's bookkeeping), not per command, so
// fifty clients each writing one command should cost a few entries per
// commit, not fifty. While a batch is in flight, new writes queue and
// leave together in the next batch (see mayStart): the queue fills exactly
// while the log is busy, so a quiet node adds no wait.
//
// Writes from one caller stay in order and contiguous within a database;
// writes of different callers are concurrent, so their order in a batch is
// free.
type proposer struct {
	n        *Node
	mu       sync.Mutex
	queue    []*proposal
	inflight int // batches in flight
	inCmds   int // commands in them
	limit    int // most batches in flight, at least 1
}

// maxProposalsInFlight bounds the batches awaiting commit from this node.
const maxProposalsInFlight = 2

// lightBatch is the load at which a second batch stops paying: see mayStart.
const lightBatch = 4

// mayStart reports whether another batch may leave while inflight batches
// holding cmds commands await commit. The first always may. A second may
// only behind light ones: under load (50 clients: ~25 commands a batch),
// waiting out the commit round makes half as many, twice as big entries,
// and each entry costs an fsync and a round of RPCs on every node, so one
// batch at a time ran SET -c 50 -P 1 8-15 % faster, through the leader or
// a follower, at ~10 % less CPU a write. Light traffic (a publish every
// millisecond) has CPU to spare and would only wait: there the second
// batch keeps a write from sitting out a whole commit round
// (docs/benchmarks.md, ninth session).
func mayStart(inflight, cmds, limit int) bool {
	return inflight == 0 || (inflight < limit && cmds < lightBatch)
}

// Limits on a Run: long pipelines and big batches become several log
// entries, so no entry grows without bound.
const (
	maxRunCommands = 1024
	maxRunBytes    = 64 << 10
)

type proposal struct {
	entries []fsm.Entry
	done    chan struct{}
	replies [][]byte // for a prefix of entries, see propose
}

// propose applies entries through the log on this node as leader and
// returns replies for a prefix of them; the ones after that prefix were
// certainly not applied (this node is not, or no longer, the leader).
func (p *proposer) propose(entries []fsm.Entry) [][]byte {
	r := &proposal{entries: entries, done: make(chan struct{})}
	p.mu.Lock()
	p.queue = append(p.queue, r)
	p.startLocked()
	p.mu.Unlock()
	return p.wait(r)
}

// proposeNow is propose past the queue, for writes already gathered into
// a batch elsewhere: a follower's forwarder packs its clients' writes into
// one RPC, with up to maxForwardRPCs in flight. Queueing those batches
// behind the leader's own would limit the same writes twice, and cost a
// commit round of waiting at moderate load.
func (p *proposer) proposeNow(entries []fsm.Entry) [][]byte {
	r := &proposal{entries: entries, done: make(chan struct{})}
	go p.sendNow(r)
	return p.wait(r)
}

func (p *proposer) sendNow(r *proposal) {
	r.replies = p.n.applyBatch([]*proposal{r})[0]
	close(r.done)
}

// wait returns r's replies once its batch is done.
func (p *proposer) wait(r *proposal) [][]byte {
	select {
	case <-r.done:
		return r.replies
	case <-p.n.raftDown:
		// Raft left our futures unanswered (see await): the send
		// goroutine never returns, and these writes are uncertain.
		replies := make([][]byte, len(r.entries))
		for k := range replies {
			replies[k] = []byte(ReplyUncertain)
		}
		return replies
	}
}

func (p *proposer) startLocked() {
	for len(p.queue) > 0 && mayStart(p.inflight, p.inCmds, p.limit) {
		batch := p.queue
		p.queue = nil
		cmds := 0
		for _, r := range batch {
			cmds += len(r.entries)
		}
		p.inflight++
		p.inCmds += cmds
		go p.send(batch, cmds)
	}
}

func (p *proposer) send(batch []*proposal, cmds int) {
	for i, replies := range p.n.applyBatch(batch) {
		batch[i].replies = replies
		close(batch[i].done)
	}
	p.mu.Lock()
	p.inflight--
	p.inCmds -= cmds
	p.startLocked()
	p.mu.Unlock()
}

// outcome is what became of one command of a batch.
type outcome uint8

const (
	applied    outcome = iota // reply holds its reply
	notApplied                // certainly not applied: may be retried
	uncertain                 // in the log, commit unknown
)

// slot places one command of a batch in a log entry.
type slot struct{ proposal, entry int }

// applyBatch proposes the entries of every proposal, packed into Runs:
// one per database and size limit, each stamped with the leader's clock.
// It returns, for each proposal, replies for a prefix of its entries.
func (n *Node) applyBatch(batch []*proposal) [][][]byte {
	// Group commands by database, keeping each proposal's order.
	var dbs []int
	groups := map[int][]slot{}
	for i, pr := range batch {
		for j, e := range pr.entries {
			if _, ok := groups[e.DB]; !ok {
				dbs = append(dbs, e.DB)
			}
			groups[e.DB] = append(groups[e.DB], slot{i, j})
		}
	}
	type pending struct {
		future raft.ApplyFuture
		slots  []slot
	}
	var entries []pending
	for _, db := range dbs {
		g := groups[db]
		for len(g) > 0 {
			k, size := 1, argsSize(batch[g[0].proposal].entries[g[0].entry].Args)
			for k < len(g) && k < maxRunCommands && size < maxRunBytes {
				size += argsSize(batch[g[k].proposal].entries[g[k].entry].Args)
				k++
			}
			entries = append(entries, pending{n.raft.Apply(n.encodeRun(db, batch, g[:k]), n.cfg.ElectionWait), g[:k]})
			g = g[k:]
		}
	}

	outcomes := make([][]outcome, len(batch))
	replies := make([][][]byte, len(batch))
	for i, pr := range batch {
		outcomes[i] = make([]outcome, len(pr.entries))
		replies[i] = make([][]byte, len(pr.entries))
	}
	for _, e := range entries {
		err := e.future.Error()
		var got [][]byte
		if err == nil {
			switch r := e.future.Response().(type) {
			case []byte:
				got = [][]byte{r}
			case [][]byte:
				got = r
			}
		}
		for k, s := range e.slots {
			switch {
			case err == nil && k < len(got):
				replies[s.proposal][s.entry] = got[k]
			case err == nil:
				// Never expected; but never retry an applied entry.
				outcomes[s.proposal][s.entry] = uncertain
			case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrEnqueueTimeout), errors.Is(err, raft.ErrRaftShutdown):
				outcomes[s.proposal][s.entry] = notApplied
			default:
				// Appended to our log but not known to be committed: ErrLeadershipLost.
				outcomes[s.proposal][s.entry] = uncertain
			}
		}
	}
	for i := range batch {
		replies[i] = settle(replies[i], outcomes[i])
	}
	return replies
}

// settle turns one proposal's outcomes into replies for a prefix of its
// entries. The caller retries what follows the prefix, so the prefix ends
// at the first command not applied only if nothing after it was: a command
// not applied before one that was gets CLUSTERDOWN instead, as a retry
// would reorder it.
func settle(replies [][]byte, outcomes []outcome) [][]byte {
	end := len(outcomes)
	for end > 0 && outcomes[end-1] == notApplied {
		end--
	}
	for k, o := range outcomes[:end] {
		switch o {
		case notApplied:
			replies[k] = []byte(ReplyClusterDown)
		case uncertain:
			replies[k] = []byte(ReplyUncertain)
		}
	}
	return replies[:end]
}

// encodeRun encodes the commands at slots, all in database db, as one log
// entry: an fsm.Entry when there is one, else an fsm.Run.
func (n *Node) encodeRun(db int, batch []*proposal, slots []slot) []byte {
	if len(slots) == 1 {
		e := batch[slots[0].proposal].entries[slots[0].entry]
		e.Now = n.now()
		return e.Encode()
	}
	r := fsm.Run{Now: n.now(), DB: db, Cmds: make([][][]byte, len(slots))}
	for k, s := range slots {
		r.Cmds[k] = batch[s.proposal].entries[s.entry].Args
	}
	return r.Encode()
}

func argsSize(args [][]byte) int {
	n := 0
	for _, a := range args {
		n += len(a)
	}
	return n
}
