package raftnode

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/redraft/redraft/fsm"
)

// A lone write reaches the followers' FSMs without waiting for raft's
// CommitTimeout, and without a log entry of its own: the leader tells the
// followers the commit index (commits.go). The cluster runs with a
// CommitTimeout of an hour, so without that the followers would not learn
// of these commits during the test at all.
func TestLeaderTellsFollowersCommits(t *testing.T) {
	open := func(id string, peers []Peer) *Node {
		return openTestNode(t, Config{ID: id, InitialCluster: peers, CommitTimeout: time.Hour})
	}
	// Ports are picked by the OS, so peers cannot be named up front: n1
	// bootstraps alone and the others start from the same one-server
	// configuration (not including themselves, so they never campaign)
	// until n1 adds them.
	leader := open("n1", nil)
	boot := []Peer{{ID: "n1", Addr: leader.RaftAddr()}}
	followers := []*Node{open("n2", boot), open("n3", boot)}
	if r := leader.Write(0, [][][]byte{{[]byte("SET"), []byte("setup"), []byte("1")}}); string(r[0]) != "+OK\r\n" {
		t.Fatalf("first write: %q", r[0])
	}
	for _, f := range followers {
		if err := leader.raft.AddVoter(raft.ServerID(f.cfg.ID), raft.ServerAddress(f.cfg.Advertise), 0, 30*time.Second).Error(); err != nil {
			t.Fatal(err)
		}
	}

	// Lone writes in turn: each needs telling of its own. A stale read on
	// each follower must then see it, and the log must hold nothing after
	// it.
	for i := 0; i < 3; i++ {
		key, val := fmt.Sprintf("k%d", i), fmt.Sprintf("v%d", i)
		e := fsm.Entry{Now: leader.now(), Args: [][]byte{[]byte("SET"), []byte(key), []byte(val)}}
		a := leader.raft.Apply(e.Encode(), 30*time.Second)
		if err := a.Error(); err != nil {
			t.Fatal(err)
		}
		idx := a.Index()
		for j, f := range followers {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			err := f.fsm.WaitApplied(ctx, idx)
			cancel()
			if err != nil {
				t.Fatalf("write %d (index %d) not applied on n%d: applied %d", i, idx, j+2, f.fsm.AppliedIndex())
			}
			if got, want := string(f.Query(0, f.readClock(), [][]byte{[]byte("GET"), []byte(key)})), fmt.Sprintf("$2\r\n%s\r\n", val); got != want {
				t.Fatalf("GET %s on n%d = %q, want %q", key, j+2, got, want)
			}
		}
		if last := leader.raft.LastIndex(); last != idx {
			t.Fatalf("write %d at index %d, but the log runs to %d: telling the commit appended entries", i, idx, last)
		}
	}
}
