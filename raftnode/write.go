package raftnode

import (
	"context"
	"errors"
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
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.ElectionWait)
	defer cancel()
	for len(replies) < len(entries) {
		rest := entries[len(replies):]
		leader, err := n.waitLeader(ctx)
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
			select {
			case <-ctx.Done():
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
	for len(replies) < len(entries) {
		replies = append(replies, []byte(ReplyClusterDown))
	}
	return replies
}

// Limits on a Run: long pipelines become several log entries, so no entry
// grows without bound.
const (
	maxRunCommands = 1024
	maxRunBytes    = 64 << 10
)

// applyLocal proposes entries on this node as leader, stamping them with
// the leader's clock. Consecutive entries in one database (a client's
// pipeline, or the writes a follower forwarded together) go as one log
// entry, an fsm.Run: raft's cost is per entry. It returns replies for a
// prefix of entries; the ones after that prefix were certainly not applied
// (this node is not, or no longer, the leader).
func (n *Node) applyLocal(entries []fsm.Entry) [][]byte {
	type proposal struct {
		future raft.ApplyFuture
		count  int
	}
	var proposals []proposal
	for i := 0; i < len(entries); {
		j, size := i+1, argsSize(entries[i].Args)
		for j < len(entries) && entries[j].DB == entries[i].DB && j-i < maxRunCommands && size < maxRunBytes {
			size += argsSize(entries[j].Args)
			j++
		}
		var data []byte
		if j-i == 1 {
			e := entries[i]
			e.Now = n.now()
			data = e.Encode()
		} else {
			r := fsm.Run{Now: n.now(), DB: entries[i].DB, Cmds: make([][][]byte, 0, j-i)}
			for _, e := range entries[i:j] {
				r.Cmds = append(r.Cmds, e.Args)
			}
			data = r.Encode()
		}
		proposals = append(proposals, proposal{n.raft.Apply(data, n.cfg.ElectionWait), j - i})
		i = j
	}
	replies := make([][]byte, 0, len(entries))
	for _, p := range proposals {
		err := p.future.Error()
		switch {
		case err == nil:
			var got [][]byte
			switch r := p.future.Response().(type) {
			case []byte:
				got = [][]byte{r}
			case [][]byte:
				got = r
			}
			for len(got) < p.count { // never expected; but never retry an applied entry
				got = append(got, []byte(ReplyUncertain))
			}
			replies = append(replies, got[:p.count]...)
		case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrEnqueueTimeout), errors.Is(err, raft.ErrRaftShutdown) && len(replies) == 0:
			return replies
		default:
			// Appended to our log but not known to be committed: ErrLeadershipLost.
			for k := 0; k < p.count; k++ {
				replies = append(replies, []byte(ReplyUncertain))
			}
		}
	}
	return replies
}

func argsSize(args [][]byte) int {
	n := 0
	for _, a := range args {
		n += len(a)
	}
	return n
}

// sweepExpired proposes the deletion of keys past their deadline while this
// node leads. Followers never expire anything themselves: the deletions
// arrive through the log like any write.
func (n *Node) sweepExpired(stop chan struct{}) {
	defer n.wg.Done()
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-n.stop:
			return
		case <-t.C:
		}
		for db, keys := range n.fsm.Expired(n.now(), 1000) {
			args := append([][]byte{[]byte("redraft.expire")}, keys...)
			n.applyLocal([]fsm.Entry{{DB: db, Args: args}})
		}
	}
}
