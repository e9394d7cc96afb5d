package fsm

import (
	"fmt"
	"math/rand"
	"path/filepath"
	"testing"

	"github.com/hashicorp/raft"
)

// benchApply measures the state machine alone: SETs of random keys over
// 100k existing keys, applied in raft batches of the given size. It is the
// floor under every replicated write: each node pays it.
func benchApply(b *testing.B, batch int) {
	f, err := Open(filepath.Join(b.TempDir(), "fsm.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	rng := rand.New(rand.NewSource(1))
	idx := uint64(1)
	mk := func(n int) []*raft.Log {
		logs := make([]*raft.Log, n)
		for i := range logs {
			e := Entry{Now: 1, Args: [][]byte{[]byte("set"), []byte(fmt.Sprintf("key:%012d", rng.Intn(100000))), []byte("xxx")}}
			logs[i] = entryLog(idx, e)
			idx++
		}
		return logs
	}
	for i := 0; i < 100000/500; i++ {
		f.ApplyBatch(mk(500))
	}
	f.flush()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		f.ApplyBatch(mk(batch))
	}
	f.flush()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/entry")
}

func BenchmarkApply40(b *testing.B)   { benchApply(b, 40) }
func BenchmarkApply320(b *testing.B)  { benchApply(b, 320) }
func BenchmarkApply2000(b *testing.B) { benchApply(b, 2000) }

// BenchmarkExpirySweep is the leader's search for due keys (Expired) while
// 60k keys with a TTL, already flushed to bbolt, expire and new ones keep
// arriving. Between searches (not timed) it applies the deletion of the 200
// keys found and 200 new SETs with a TTL, as the sweep's entry and the
// clients' would.
func BenchmarkExpirySweep(b *testing.B) {
	f, err := Open(filepath.Join(b.TempDir(), "fsm.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	idx, next := uint64(1), 0
	set := func(now int64, n int) {
		var cmds []string
		for ; n > 0; n-- {
			cmds = append(cmds, fmt.Sprintf("set lock:%09d host px 10", next))
			next++
		}
		f.ApplyBatch(logOf(idx, []int64{now}, cmds...))
		idx += uint64(len(cmds))
	}
	for i := 0; i < 60000/500; i++ {
		set(1, 500)
	}
	f.flush()
	now := int64(1000) // every key so far is due
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StartTimer()
		due := f.Expired(now, 200)[0]
		b.StopTimer()
		e := Entry{Now: now, Args: append([][]byte{[]byte("redraft.expire")}, due...)}
		f.ApplyBatch([]*raft.Log{entryLog(idx, e)})
		idx++
		set(now, 200)
		if len(due) == 0 { // caught up: make the next round's keys due
			now += 1000
		}
	}
}
