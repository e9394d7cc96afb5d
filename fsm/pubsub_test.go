package fsm

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/hashicorp/raft"
)

type published struct {
	channel, message string
	applied          uint64 // the FSM's applied index when the hook ran
	value            string // GET k as the hook saw it
}

func recordPublishes(f *FSM) *[]published {
	var got []published
	f.SetHooks(Hooks{Publish: func(ch, msg []byte) int {
		v := reply(f.Query(0, 0, cmd("get k")))
		got = append(got, published{string(ch), string(msg), f.AppliedIndex(), v})
		return 0
	}})
	return &got
}

// PUBLISH is delivered after its batch commits, in log order, and the hook
// sees every write before it; it changes no state.
func TestPublishDeliveredAfterCommitInOrder(t *testing.T) {
	f := open(t)
	got := recordPublishes(f)
	replies := f.ApplyBatch(logOf(1, []int64{1000}, "publish ch a", "set k v1", "publish ch b", "publish other c"))
	for i, want := range []string{":0\r\n", "+OK\r\n", ":0\r\n", ":0\r\n"} {
		if reply(replies[i]) != want {
			t.Fatalf("reply %d = %q, want %q", i, reply(replies[i]), want)
		}
	}
	want := []published{{"ch", "a", 4, "$2\r\nv1\r\n"}, {"ch", "b", 4, "$2\r\nv1\r\n"}, {"other", "c", 4, "$2\r\nv1\r\n"}}
	if fmt.Sprint(*got) != fmt.Sprint(want) {
		t.Fatalf("published %v, want %v", *got, want)
	}
	same := open(t) // the same writes without the publishes
	same.ApplyBatch(logOf(1, []int64{1000}, "set k v1"))
	if a, b := digestOf(f), digestOf(same); a != b {
		t.Fatalf("publishes changed the state: digest %s, without them %s", a, b)
	}
}

// Entries already applied, or in the log before a restart (QuietThrough),
// are not delivered again; later ones are.
func TestPublishNotReplayedAfterRestart(t *testing.T) {
	f := open(t)
	got := recordPublishes(f)
	f.ApplyBatch(logOf(1, []int64{1000}, "publish ch m1", "publish ch m2"))
	// raft replays the log's tail over the file after a restart: entries
	// the file has are skipped, the rest re-applied but kept quiet.
	f.QuietThrough(4)
	f.ApplyBatch(logOf(1, []int64{1000}, "publish ch m1", "publish ch m2", "publish ch m3", "publish ch m4", "publish ch m5"))
	var msgs []string
	for _, p := range *got {
		msgs = append(msgs, p.message)
	}
	if fmt.Sprint(msgs) != "[m1 m2 m5]" {
		t.Fatalf("delivered %v, want [m1 m2 m5]", msgs)
	}
}

// Pure publishes change no key, so they must not grow the state a snapshot
// carries.
func TestPublishDoesNotGrowSnapshots(t *testing.T) {
	f := open(t)
	size := func() int { return len(persist(t, f)) }
	payload := bytes.Repeat([]byte("x"), 4096)
	idx := uint64(1)
	publish := func(n int) {
		for b := 0; b < n; b += 100 {
			var logs []*raft.Log
			for i := 0; i < 100; i++ {
				e := Entry{Now: 1000, Args: [][]byte{[]byte("publish"), []byte("ch"), payload}}
				logs = append(logs, entryLog(idx, e))
				idx++
			}
			f.ApplyBatch(logs)
		}
	}
	publish(200)
	base := size()
	publish(5000) // ~20 MB of messages
	if grown := size(); grown > base+64<<10 {
		t.Fatalf("snapshot grew from %d to %d bytes with publishes only", base, grown)
	}
}
