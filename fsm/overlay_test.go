package fsm

import (
	"fmt"
	"math/bits"
	"math/rand"
	"path/filepath"
	"sort"
	"testing"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"
)

// A view over bbolt and two layers, each with keys in several sorted runs,
// reads like the single map you get by applying the file, then the frozen
// layer, then the active one: Get, full iteration and Seek.
func TestViewMergesLayers(t *testing.T) {
	rng := rand.New(rand.NewSource(7))
	db, err := bolt.Open(filepath.Join(t.TempDir(), "v.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	const b = bucketIDDB0
	key := func() string { return fmt.Sprintf("k%03d", rng.Intn(300)) }
	model := map[string]string{}
	err = db.Update(func(tx *bolt.Tx) error {
		bk, err := tx.CreateBucket(bucketNames[b])
		if err != nil {
			return err
		}
		for i := 0; i < 150; i++ {
			k, v := key(), fmt.Sprint("file", i)
			model[k] = v
			if err := bk.Put([]byte(k), []byte(v)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	frozen, active := newLayer(), newLayer()
	for _, l := range []*layer{frozen, active} {
		for i := 0; i < 120; i++ {
			if rng.Intn(15) == 0 {
				l.keysInOrder(b) // several sorted runs per layer
			}
			k := key()
			if rng.Intn(3) == 0 {
				l.set(b, []byte(k), slot{gone: true})
				delete(model, k)
			} else {
				v := fmt.Sprint("layer", i)
				l.set(b, []byte(k), slot{val: []byte(v)})
				model[k] = v
			}
		}
	}
	var want []string
	for k := range model {
		want = append(want, k)
	}
	sort.Strings(want)

	v := view{db: db, layers: [2]*layer{active, frozen}}
	defer v.close()
	for i := 0; i < 300; i++ {
		k := fmt.Sprintf("k%03d", i)
		got := v.get(b, []byte(k))
		_, ok := model[k]
		if (got != nil) != ok || (ok && string(got) != model[k]) {
			t.Fatalf("get %s = %q, want %q (present %v)", k, got, model[k], ok)
		}
	}
	var got []string
	cur := v.cursor(b)
	for k, val := cur.First(); k != nil; k, val = cur.Next() {
		if string(val) != model[string(k)] {
			t.Fatalf("iteration: %s = %q, want %q", k, val, model[string(k)])
		}
		got = append(got, string(k))
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("iteration:\n got %v\nwant %v", got, want)
	}
	for i := 0; i < 100; i++ {
		seek := fmt.Sprintf("k%03d", rng.Intn(310))
		j := sort.SearchStrings(want, seek)
		cur := v.cursor(b)
		k, _ := cur.Seek([]byte(seek))
		for n := 0; n < 5; n++ {
			if j+n >= len(want) {
				if k != nil {
					t.Fatalf("seek %s: step %d: %s past the end", seek, n, k)
				}
				break
			}
			if string(k) != want[j+n] {
				t.Fatalf("seek %s: step %d: %s, want %s", seek, n, k, want[j+n])
			}
			k, _ = cur.Next()
		}
	}
}

// A layer's sorted runs stay right while keys keep arriving between reads
// (they are sorted into new runs and merged, not re-sorted): each run is
// sorted, together they hold every key once, there are O(log n) of them,
// and runs handed out earlier are left as they were.
func TestLayerKeysInOrderAcrossWrites(t *testing.T) {
	rng := rand.New(rand.NewSource(11))
	const b = bucketIDExpires
	l := newLayer()
	var prev [][]string
	prevWant := fmt.Sprint(prev)
	for round := 0; round < 300; round++ {
		for i := rng.Intn(40); i > 0; i-- {
			k := fmt.Sprintf("k%05d", rng.Intn(20000))
			l.set(b, []byte(k), slot{gone: rng.Intn(2) == 0})
		}
		var want []string
		for k := range l.buckets[b] {
			want = append(want, k)
		}
		sort.Strings(want)
		runs := l.keysInOrder(b)
		var got []string
		for i, run := range runs {
			if !sort.StringsAreSorted(run) {
				t.Fatalf("round %d: run %d is not sorted", round, i)
			}
			got = append(got, run...)
		}
		sort.Strings(got)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("round %d:\n got %v\nwant %v", round, got, want)
		}
		if max := 2 + bits.Len(uint(len(want))); len(runs) > max {
			t.Fatalf("round %d: %d runs for %d keys", round, len(runs), len(want))
		}
		if fmt.Sprint(prev) != prevWant {
			t.Fatalf("round %d: runs handed out earlier changed", round)
		}
		prev, prevWant = runs, fmt.Sprint(runs)
		if flat := l.sortedKeys(b); fmt.Sprint(flat) != fmt.Sprint(want) {
			t.Fatalf("round %d: sortedKeys gave %d keys, want %d", round, len(flat), len(want))
		}
	}
}

// crash stops f the way kill -9 would: whatever the flusher has not written
// is lost.
func crash(t *testing.T, f *FSM) {
	close(f.stopping)
	<-f.stopped
	f.flushMu.Lock()
	defer f.flushMu.Unlock()
	if err := f.db.Close(); err != nil {
		t.Fatal(err)
	}
}

// After a crash the file holds a prefix of the log and says which: replaying
// the log over it gives the state of an FSM that never stopped, and entries
// the file already has are not applied twice.
func TestCrashReplaysWhatWasNotFlushed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fsm.db")
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	var cmds []string
	for i := 0; i < 300; i++ {
		cmds = append(cmds, fmt.Sprintf("incr n%d", i%7), fmt.Sprintf("set k%d v%d", i%50, i))
	}
	nows := []int64{1}
	all := logOf(1, nows, cmds...)
	f.ApplyBatch(all[:200])
	f.flush()
	f.ApplyBatch(all[200:450]) // not flushed: lost in the crash
	crash(t, f)

	f, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.AppliedIndex() != 200 {
		t.Fatalf("applied after crash = %d, want the flushed 200", f.AppliedIndex())
	}
	f.ApplyBatch(all) // raft replays from its snapshot: the first 200 are skipped
	ref := open(t)
	ref.ApplyBatch(logOf(1, nows, cmds...))
	if digestOf(f) != digestOf(ref) {
		t.Fatal("state after crash and replay differs from an FSM that never stopped")
	}
	if got := reply(f.Query(0, 1, cmd("get n0"))); got != "$2\r\n43\r\n" {
		t.Fatalf("n0 = %q, want 43", got)
	}
	assertCounts(t, f)
}

// Flushes running at any moment, concurrently with applies and queries,
// change nothing anyone sees.
func TestFlushesAreInvisible(t *testing.T) {
	rng := rand.New(rand.NewSource(3))
	var cmds []string
	for i := 0; i < 4000; i++ {
		k := fmt.Sprintf("k%d", rng.Intn(300))
		switch rng.Intn(5) {
		case 0, 1:
			cmds = append(cmds, "set "+k+" v"+fmt.Sprint(i))
		case 2:
			cmds = append(cmds, "del "+k)
		case 3:
			cmds = append(cmds, "set "+k+" x px "+fmt.Sprint(1+rng.Intn(50)))
		case 4:
			cmds = append(cmds, "incr "+k)
		}
	}
	nows := []int64{1_000}
	a, b := open(t), open(t)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { // flush b continuously: frozen layers at every point
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			b.flush()
		}
	}()
	la, lb := logOf(1, nows, cmds...), logOf(1, nows, cmds...)
	for i := 0; i < len(la); i += 50 {
		ra := a.ApplyBatch(la[i : i+50])
		rb := b.ApplyBatch(lb[i : i+50])
		for j := range ra {
			if reply(ra[j]) != reply(rb[j]) {
				t.Fatalf("entry %d (%s): %q vs %q", i+j, cmds[i+j], ra[j], rb[j])
			}
		}
		if ka, kb := reply(a.Query(0, 1_000, cmd("keys *"))), reply(b.Query(0, 1_000, cmd("keys *"))); ka != kb {
			t.Fatalf("after entry %d: KEYS differ:\n%q\n%q", i+50, ka, kb)
		}
	}
	close(stop)
	<-done
	if digestOf(a) != digestOf(b) {
		t.Fatal("digests differ")
	}
	assertCounts(t, b)
}

// A snapshot holds the state at the index where raft took it, even when
// entries apply between Snapshot and Persist (raft persists on another
// goroutine while applies go on).
func TestSnapshotIsTheStateAtItsIndex(t *testing.T) {
	f := open(t)
	f.ApplyBatch(logOf(1, []int64{1}, "set a 1", "incr n"))
	s, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	applied := make(chan struct{})
	go func() { // blocks while the snapshot holds the flush: that is fine
		defer close(applied)
		f.ApplyBatch(logOf(3, []int64{1}, "set a 2", "incr n", "set b 3"))
		f.flush()
	}()
	var sink memSink
	if err := s.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	s.Release()
	<-applied
	g := open(t)
	if err := g.Restore(sink.reader()); err != nil {
		t.Fatal(err)
	}
	if g.AppliedIndex() != 2 {
		t.Fatalf("snapshot index %d, want 2", g.AppliedIndex())
	}
	for k, want := range map[string]string{"a": "$1\r\n1\r\n", "n": "$1\r\n1\r\n", "b": "$-1\r\n"} {
		if got := reply(g.Query(0, 1, cmd("get "+k))); got != want {
			t.Errorf("restored %s = %q, want %q", k, got, want)
		}
	}
	if got := reply(f.Query(0, 1, cmd("get n"))); got != "$1\r\n2\r\n" {
		t.Fatalf("live n = %q", got)
	}
}

// A Run (one log entry holding a pipeline) applies exactly as the same
// commands in consecutive entries: same replies, same state.
func TestRunAppliesLikeSeparateEntries(t *testing.T) {
	cmds := []string{"set a 1", "incr a", "lpush a x", "append a 0", "get a", "del a b", "publish ch m", "set b 2 px 100"}
	now := int64(5_000)
	single := open(t)
	want := single.ApplyBatch(logOf(1, []int64{now}, cmds...))

	run := Run{Now: now, DB: 0}
	for _, c := range cmds {
		run.Cmds = append(run.Cmds, cmd(c))
	}
	multi := open(t)
	out := multi.ApplyBatch([]*raft.Log{{Index: 1, Type: raft.LogCommand, Data: run.Encode()}})
	got, ok := out[0].([][]byte)
	if !ok || len(got) != len(cmds) {
		t.Fatalf("run reply %#v, want %d replies", out[0], len(cmds))
	}
	for i := range cmds {
		if string(got[i]) != reply(want[i]) {
			t.Errorf("%s: %q, want %q", cmds[i], got[i], want[i])
		}
	}
	if digestOf(single) != digestOf(multi) {
		t.Fatal("state differs")
	}
	// A truncated run is refused as a whole, as a malformed entry is.
	bad := multi.ApplyBatch([]*raft.Log{{Index: 2, Type: raft.LogCommand, Data: run.Encode()[:20]}})
	if r, ok := bad[0].([]byte); !ok || len(r) == 0 || r[0] != '-' {
		t.Fatalf("truncated run: %#v", bad[0])
	}
}
