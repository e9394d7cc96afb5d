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
			logs[i] = &raft.Log{Index: idx, Type: raft.LogCommand, Data: e.Encode()}
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
