package raftnode

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A reader must never be answered by a round that started before it
// arrived: that round's commit index may predate writes the reader saw
// acknowledged. fetch returns the round's start sequence; every caller
// checks it got a round that started after it called wait.
func TestBatcherRoundStartsAfterArrival(t *testing.T) {
	var started atomic.Uint64
	release := make(chan struct{})
	var inFetch atomic.Int32
	b := newBatcher(func(context.Context) (readPoint, error) {
		seq := started.Add(1)
		inFetch.Add(1)
		<-release // hold rounds open so that callers pile up behind them
		inFetch.Add(-1)
		return readPoint{index: seq}, nil
	}, roundTimeout)
	var wg sync.WaitGroup
	var bad atomic.Int32
	for i := 0; i < 200; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			before := started.Load()
			r, err := b.wait(context.Background())
			if err != nil || r.index <= before {
				bad.Add(1)
			}
		}()
		if i%20 == 0 {
			// let some rounds start while callers keep arriving
			for inFetch.Load() == 0 {
				time.Sleep(time.Millisecond)
			}
			release <- struct{}{}
		}
	}
	go func() {
		for {
			select {
			case release <- struct{}{}:
			case <-time.After(5 * time.Second):
				return
			}
		}
	}()
	wg.Wait()
	if bad.Load() > 0 {
		t.Fatalf("%d callers were answered by a round that started before they arrived", bad.Load())
	}
	if n := started.Load(); n >= 200 {
		t.Fatalf("%d rounds for 200 callers: concurrent readers must share rounds", n)
	}
}

// Forwarded entries and replies survive the wire format.
func TestEntriesAndRepliesRoundTrip(t *testing.T) {
	in := encodeReplies([][]byte{[]byte("+OK\r\n"), nil, []byte(":1\r\n")})
	out, err := decodeReplies(in)
	if err != nil || len(out) != 3 || string(out[0]) != "+OK\r\n" || len(out[1]) != 0 || string(out[2]) != ":1\r\n" {
		t.Fatalf("replies: %q %v", out, err)
	}
	if _, err := decodeReplies([]byte{5, 1}); err == nil {
		t.Fatal("a truncated frame must be an error")
	}
}
