package main

// Pub/sub under faults: a leader killed while publishing, a subscriber that
// never reads, a paused node, a node restarted without its state file.
// Helpers (psConn, subscribe) are in pubsub_test.go.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redraft/redraft/chaos"
)

// Killing the leader (-9) while publishing: no subscriber sees a message
// twice or out of order, subscribers on surviving nodes miss nothing that
// was acknowledged, and nothing refused is delivered.
func TestPubSubLeaderKill(t *testing.T) {
	c := startCluster(t, 3)
	leader, err := c.Leader(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	type sub struct {
		pc     *psConn
		stream chaos.SubStream
		done   chan struct{}
	}
	var subs []*sub
	var mu sync.Mutex // guards streams and pubs
	for i := 0; i < 3; i++ {
		for k := 0; k < 2; k++ {
			s := &sub{pc: subscribe(t, c, i, "SUBSCRIBE", "k"), done: make(chan struct{})}
			s.stream = chaos.SubStream{Subscriber: fmt.Sprintf("n%d-%d", i+1, k), Node: i, Channel: "k", From: time.Since(start)}
			subs = append(subs, s)
			go func() {
				defer close(s.done)
				for {
					_, e, err := s.pc.frame(time.Hour)
					mu.Lock()
					if err != nil {
						s.stream.To = time.Since(start)
						s.stream.CutOff = s.stream.Node == leader
						mu.Unlock()
						return
					}
					if len(e) == 3 && e[0] == "message" {
						s.stream.Messages = append(s.stream.Messages, e[2])
					}
					mu.Unlock()
				}
			}()
		}
	}
	var pubs []chaos.Op
	var acked atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for p := 0; p < 4; p++ {
		wg.Add(1)
		go func(p int) {
			defer wg.Done()
			rng := rand.New(rand.NewSource(int64(p)))
			for m := 0; ; m++ {
				select {
				case <-stop:
					return
				default:
				}
				i := rng.Intn(3)
				if !c.Running(i) {
					continue
				}
				r := redis.NewClient(&redis.Options{Addr: c.RESPAddr(i), MaxRetries: -1, DialTimeout: 300 * time.Millisecond,
					ReadTimeout: 8 * time.Second, PoolSize: 1, Protocol: 2})
				for j := 0; j < 20; j++ {
					op := chaos.Op{Client: p, Node: i, Kind: chaos.KindPublish, Key: "k", Value: fmt.Sprintf("%d-%d-%d", p, m, j), Call: time.Since(start)}
					err := r.Publish(context.Background(), "k", op.Value).Err()
					op.Return = time.Since(start)
					switch {
					case err == nil:
						acked.Add(1)
					case strings.HasPrefix(err.Error(), "CLUSTERDOWN") || errors.Is(err, syscall.ECONNREFUSED):
						op.Status, op.Err = chaos.Failed, err.Error()
					default:
						op.Status, op.Err = chaos.Indeterminate, err.Error()
					}
					mu.Lock()
					pubs = append(pubs, op)
					mu.Unlock()
					if err != nil {
						break
					}
				}
				r.Close()
			}
		}(p)
	}
	waitFor(t, "publishes before the kill", func() bool { return acked.Load() >= 300 })
	if err := c.Kill(leader); err != nil {
		t.Fatal(err)
	}
	before := acked.Load()
	waitFor(t, "publishes after the kill", func() bool { return acked.Load() >= before+300 })
	close(stop)
	wg.Wait()
	// Survivors must get every acknowledged message; give them time, then
	// stop listening.
	want := map[string]bool{}
	for _, p := range pubs {
		if p.Status == chaos.OK {
			want[p.Value] = true
		}
	}
	for _, s := range subs {
		if s.stream.Node == leader {
			<-s.done
			continue
		}
		deadline := time.Now().Add(20 * time.Second)
		for {
			mu.Lock()
			n := 0
			for _, m := range s.stream.Messages {
				if want[m] {
					n++
				}
			}
			mu.Unlock()
			if n >= len(want) || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		s.pc.nc.Close()
		<-s.done
	}
	var streams []chaos.SubStream
	for _, s := range subs {
		streams = append(streams, s.stream)
	}
	for _, v := range chaos.CheckPubSub(pubs, streams) {
		t.Errorf("%s", v.Message)
	}
	t.Logf("%d publishes (%d acknowledged); received per subscriber: %v", len(pubs), len(want), func() (n []int) {
		for _, s := range streams {
			n = append(n, len(s.Messages))
		}
		return
	}())
}

// A subscriber that never reads is cut off at the hard limit (a flag here,
// to keep the test fast) while the others keep receiving; a paused node's
// subscribers get what was committed meanwhile, in order; a restarted node
// whose state file is gone re-applies its log without re-delivering.
func TestPubSubSlowPausedRestarted(t *testing.T) {
	c := startCluster(t, 3, "--pubsub-hard-limit", "1048576")
	leader, err := c.Leader(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	f := (leader + 1) % 3
	ctx := context.Background()
	pub := client(t, c, leader)

	t.Run("slow", func(t *testing.T) {
		small := func(d *net.Dialer) {
			d.Control = func(_, _ string, rc syscall.RawConn) error {
				return rc.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
			}
		}
		slow := subscribe(t, c, f, "SUBSCRIBE", "bulk", small)
		fast := subscribe(t, c, f, "SUBSCRIBE", "bulk")
		payload := strings.Repeat("x", 16<<10)
		const n = 800 // ~13 MB: past the kernel's buffers and the 1 MB limit
		got := make(chan error, 1)
		go func() {
			msgs, err := fast.messages(30*time.Second, n)
			if err == nil && len(msgs) != n {
				err = fmt.Errorf("fast subscriber got %d messages", len(msgs))
			}
			got <- err
		}()
		for i := 0; i < n; i += 20 {
			pipe := pub.Pipeline()
			for j := i; j < i+20; j++ {
				pipe.Publish(ctx, "bulk", payload)
			}
			if _, err := pipe.Exec(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if err := <-got; err != nil {
			t.Fatal(err)
		}
		slow.nc.SetReadDeadline(time.Now().Add(20 * time.Second))
		if _, err := io.Copy(io.Discard, slow.nc); err != nil {
			t.Fatalf("the slow subscriber was not disconnected: %v", err)
		}
		info, _ := client(t, c, f).Info(ctx, "stats").Result()
		if infoField(info, "pubsub_subscribers_dropped") != "1" {
			t.Fatalf("INFO stats: %s", info)
		}
	})

	t.Run("paused", func(t *testing.T) {
		pc := subscribe(t, c, f, "SUBSCRIBE", "meanwhile")
		if err := c.Pause(f); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 50; i++ {
			if err := pub.Publish(ctx, "meanwhile", strconv.Itoa(i)).Err(); err != nil {
				c.Resume(f)
				t.Fatal(err)
			}
		}
		if err := c.Resume(f); err != nil {
			t.Fatal(err)
		}
		msgs, err := pc.messages(20*time.Second, 50)
		if err != nil {
			t.Fatal(err, msgs)
		}
		for i, m := range msgs {
			if m != strconv.Itoa(i) {
				t.Fatalf("after the pause: %v", msgs)
			}
		}
	})

	t.Run("restarted", func(t *testing.T) {
		for i := 0; i < 2000; i += 200 {
			pipe := pub.Pipeline()
			for j := i; j < i+200; j++ {
				pipe.Publish(ctx, "old", "old-"+strconv.Itoa(j))
			}
			if _, err := pipe.Exec(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if err := c.Stop(f); err != nil {
			t.Fatal(err)
		}
		// Without its state file the node re-applies its whole log; with its
		// peers paused it cannot start doing so before we subscribe.
		if err := os.Remove(filepath.Join(c.Nodes()[f].DataDir, "fsm.db")); err != nil {
			t.Fatal(err)
		}
		others := []int{(f + 1) % 3, (f + 2) % 3}
		for _, o := range others {
			if err := c.Pause(o); err != nil {
				t.Fatal(err)
			}
		}
		err := c.Start(f)
		var pc *psConn
		if err == nil {
			pc = subscribe(t, c, f, "PSUBSCRIBE", "*")
		}
		for _, o := range others {
			c.Resume(o)
		}
		if err != nil {
			t.Fatal(err)
		}
		assertConverged(t, c)
		r := client(t, c, f)
		waitFor(t, "a publish after the restart", func() bool { return r.Publish(ctx, "new", "fresh").Err() == nil })
		msgs, err := pc.messages(10*time.Second, 1)
		if err != nil || !slices.Equal(msgs, []string{"fresh"}) {
			t.Fatalf("a subscriber on the restarted node received %v (%v), want [fresh] first", msgs, err)
		}
		if n, _ := r.Do(ctx, "pubsub", "numpat").Int(); n != 1 {
			t.Fatalf("PUBSUB NUMPAT on the restarted node = %d", n)
		}
	})
}
