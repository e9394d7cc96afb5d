package raftnode

import (
	"context"
	"time"

	"github.com/hashicorp/raft"

	"github.com/redraft/redraft/fsm"
)

// Errors a client can see from the write path. CLUSTERDOWN means the write
// was certainly not applied; UNCERTAIN means it may or may not have been
// (leadership changed while it was in flight), so a careful client reads
// before retrying.
const (
	ReplyClusterDown = "-CLUSTERDOWN The cluster is down: no Raft leader could be reached\r\n"
	ReplyUncertain   = "-UNCERTAIN leadership changed while the write was in flight; it may or may not have been applied\r\n"
)

// Write proposes cmds, in order, in database db and returns one RESP reply
// per command. On a follower the commands are forwarded to the leader; the
// caller never sees the difference. While there is no leader, Write waits
// up to the election wait.
func (n *Node) Write(db int, cmds [][][]byte) [][]byte {
	entries := make([]fsm.Entry, len(cmds))
	for i, args := range cmds {
		entries[i] = fsm.Entry{DB: db, Args: args}
	}
	replies := make([][]byte, 0, len(cmds))
	deadline := time.Now().Add(n.cfg.ElectionWait)
	for len(replies) < len(entries) {
		rest := entries[len(replies):]
		leader, err := n.leaderBy(deadline)
		if err != nil {
			break
		}
		var got [][]byte
		var uncertain bool
		if string(leader) == n.cfg.Advertise {
			got = n.applyLocal(rest)
		} else {
			got, uncertain = n.fwd.do(string(leader), rest)
		}
		replies = append(replies, got...)
		if uncertain {
			for len(replies) < len(entries) {
				replies = append(replies, []byte(ReplyUncertain))
			}
		}
		if len(replies) < len(entries) {
			// The rest were certainly not applied: wait for a (new) leader.
			wait := min(5*time.Millisecond, time.Until(deadline))
			if wait <= 0 {
				break
			}
			time.Sleep(wait)
		}
	}
	for len(replies) < len(entries) {
		replies = append(replies, []byte(ReplyClusterDown))
	}
	return replies
}

// leaderBy returns the leader, waiting for one until deadline. A known
// leader, the common case, costs no context or timer: Write runs once per
// client command.
func (n *Node) leaderBy(deadline time.Time) (raft.ServerAddress, error) {
	if addr, _ := n.raft.LeaderWithID(); addr != "" {
		return addr, nil
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	return n.waitLeader(ctx)
}

// applyLocal proposes entries on this node as leader, through the
// proposer that packs concurrent writes into shared log entries. It returns
// replies for a prefix of entries; the ones after that prefix were
// certainly not applied (this node is not, or no longer, the leader).
func (n *Node) applyLocal(entries []fsm.Entry) [][]byte {
	return n.prop.propose(entries)
}

// Active expiry deletes up to sweepKeys keys every sweepEvery (at most 10k
// keys a second), in small entries. Each entry applies whole on every node,
// and whatever committed behind it (a PUBLISH, say) waits: a 1,000-key
// entry took ~6 ms to apply, and while 60k keys expired at once pub/sub
// delivery p99 went from ~8 to 20-50 ms.
const (
	sweepEvery = 20 * time.Millisecond
	sweepKeys  = 200
)

// sweepExpired proposes the deletion of keys past their deadline while this
// node leads. Followers never expire anything themselves: the deletions
// arrive through the log like any write.
func (n *Node) sweepExpired(stop chan struct{}) {
	defer n.wg.Done()
	t := time.NewTicker(sweepEvery)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-n.stop:
			return
		case <-t.C:
		}
		for db, keys := range n.fsm.Expired(n.now(), sweepKeys) {
			args := append([][]byte{[]byte("redraft.expire")}, keys...)
			n.applyLocal([]fsm.Entry{{DB: db, Args: args}})
		}
	}
}
