package raftnode

import (
	"fmt"
	"net"
	"sync"
	"testing"

	"github.com/redraft/redraft/fsm"
)

// An RPC to a leader that stopped answering (here: a peer that takes
// requests and never replies, as a leader cut off one way) waits out its
// deadline. Writes bound for another leader meanwhile must not queue
// behind it.
func TestForwardsToANewLeaderPassAnRPCStuckOnTheOld(t *testing.T) {
	n := openTestNode(t, Config{})
	write(t, n, "SET", "setup", "1") // n leads: forwarding to itself applies

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var held []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	release := func() {
		ln.Close()
		mu.Lock()
		for _, c := range held {
			c.Close()
		}
		mu.Unlock()
	}
	defer release()

	set := func(k int) fsm.Entry {
		return fsm.Entry{Args: [][]byte{[]byte("SET"), []byte(fmt.Sprint("k", k)), []byte("v")}}
	}
	old := ln.Addr().String()
	stuck := make(chan struct{})
	go func() {
		defer close(stuck)
		heavy := make([]fsm.Entry, lightBatch)
		for i := range heavy {
			heavy[i] = set(i)
		}
		n.fwd.do(old, heavy)
	}()
	inFlight := func() bool {
		n.fwd.mu.Lock()
		defer n.fwd.mu.Unlock()
		rt := n.fwd.routes[old]
		return rt != nil && rt.rpcs == 1
	}
	waitFor(t, inFlight, func() string { return "the RPC to the silent peer never left" })

	replies, uncertain := n.fwd.do(n.cfg.Advertise, []fsm.Entry{set(lightBatch)})
	if uncertain || len(replies) != 1 || string(replies[0]) != "+OK\r\n" {
		t.Fatalf("forward to the live leader: %q (uncertain %v)", replies, uncertain)
	}
	if !inFlight() {
		t.Fatal("the forward to the live leader waited for the RPC to the silent peer to end")
	}
	release()
	<-stuck
}
