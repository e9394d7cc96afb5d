package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// persist takes a snapshot of f and returns its bytes.
func persist(t *testing.T, f *FSM) []byte {
	t.Helper()
	s, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Release()
	var sink memSink
	if err := s.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	return sink.Bytes()
}

// fill applies SETs of n keys with values of size bytes, from index start
// in batches, and returns the next index.
func fill(f *FSM, start uint64, n, size int) uint64 {
	val := strings.Repeat("v", size)
	for i := 0; i < n; i += 100 {
		var cmds []string
		for j := i; j < min(n, i+100); j++ {
			cmds = append(cmds, fmt.Sprintf("set key:%d %s", j, val))
		}
		f.ApplyBatch(logOf(start, []int64{1}, cmds...))
		start += uint64(len(cmds))
	}
	return start
}

// A snapshot carries the live keys, not the file: after values are written
// and deleted the file keeps its pages, the snapshot does not.
func TestSnapshotHoldsOnlyLiveData(t *testing.T) {
	f := open(t)
	next := fill(f, 1, 2000, 4096)
	f.flush()
	var dels []string
	for i := 0; i < 2000; i++ {
		dels = append(dels, fmt.Sprintf("del key:%d", i))
	}
	f.ApplyBatch(logOf(next, []int64{1}, append(dels, "set survivor 1")...))
	f.flush()
	snap := persist(t, f)
	if file := f.UsedFileSize(); file < 8<<20 || len(snap) > 16<<10 {
		t.Fatalf("file pages %d bytes, snapshot %d bytes: want a file of >= 8 MiB and a snapshot of <= 16 KiB", file, len(snap))
	}
	g := open(t)
	if err := g.Restore((&memSink{*bytes.NewBuffer(snap)}).reader()); err != nil {
		t.Fatal(err)
	}
	if digestOf(f) != digestOf(g) || g.AppliedIndex() != f.AppliedIndex() {
		t.Fatalf("restored digest %s applied %d, want %s applied %d", digestOf(g), g.AppliedIndex(), digestOf(f), f.AppliedIndex())
	}
}

// A restore larger than one transaction's worth commits in several, and
// loses nothing at the seams.
func TestRestoreAcrossTransactions(t *testing.T) {
	defer func(n int) { restoreTxBytes = n }(restoreTxBytes)
	restoreTxBytes = 8 << 10
	f := open(t)
	next := fill(f, 1, 500, 300)
	f.ApplyBatch(logOf(next, []int64{1}, "set t 1 ex 100", "select-free", "script load return"))
	snap := persist(t, f)
	g := open(t)
	if err := g.Restore((&memSink{*bytes.NewBuffer(snap)}).reader()); err != nil {
		t.Fatal(err)
	}
	if digestOf(f) != digestOf(g) {
		t.Fatalf("restored digest %s, want %s", digestOf(g), digestOf(f))
	}
	if got := reply(g.Query(0, 1, cmd("dbsize"))); got != ":501\r\n" {
		t.Fatalf("restored DBSIZE %q, want 501", got)
	}
}

// Snapshots redraft wrote before were whole bbolt files, like a backup;
// a node must still restore one (from its disk, or from a leader).
func TestRestoreTakesAWholeFile(t *testing.T) {
	f := open(t)
	fill(f, 1, 300, 100)
	var file bytes.Buffer
	if _, err := f.Backup(&file); err != nil {
		t.Fatal(err)
	}
	g := open(t)
	if err := g.Restore((&memSink{file}).reader()); err != nil {
		t.Fatal(err)
	}
	if digestOf(f) != digestOf(g) || g.AppliedIndex() != f.AppliedIndex() {
		t.Fatalf("restored digest %s applied %d, want %s applied %d", digestOf(g), g.AppliedIndex(), digestOf(f), f.AppliedIndex())
	}
}

// A snapshot cut short, or one that is neither format, is refused, and
// the state it would have replaced stays as it was.
func TestRestoreRefusesADamagedSnapshot(t *testing.T) {
	f := open(t)
	fill(f, 1, 300, 100)
	snap := persist(t, f)
	var file bytes.Buffer
	if _, err := f.Backup(&file); err != nil {
		t.Fatal(err)
	}
	g := open(t)
	g.ApplyBatch(logOf(1, []int64{1}, "set mine 1"))
	before := digestOf(g)
	for name, damaged := range map[string][]byte{
		"last byte cut":     snap[:len(snap)-1],
		"cut in half":       snap[:len(snap)/2],
		"cut after a field": snap[:len(snapshotMagic)+3],
		"cut in the magic":  snap[:10],
		"not a snapshot":    []byte("*1\r\n$4\r\nPING\r\n"),
		"a file cut short":  file.Bytes()[:file.Len()/2],
	} {
		err := g.Restore((&memSink{*bytes.NewBuffer(damaged)}).reader())
		if !errors.Is(err, errBadSnapshot) {
			t.Fatalf("%s: err %v, want errBadSnapshot", name, err)
		}
		if digestOf(g) != before || g.AppliedIndex() != 1 {
			t.Fatalf("%s: state changed by a refused restore", name)
		}
	}
}
