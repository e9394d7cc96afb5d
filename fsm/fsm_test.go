package fsm

import (
	"bytes"
	"fmt"
	"maps"
	"math/rand"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"
)

func open(t *testing.T) *FSM {
	t.Helper()
	f, err := Open(filepath.Join(t.TempDir(), "fsm.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func cmd(s string) [][]byte {
	var out [][]byte
	for _, a := range strings.Fields(s) {
		out = append(out, []byte(a))
	}
	return out
}

// logOf turns commands into raft log entries stamped at the given times.
func logOf(start uint64, now []int64, cmds ...string) []*raft.Log {
	var logs []*raft.Log
	for i, c := range cmds {
		logs = append(logs, entryLog(start+uint64(i), Entry{Now: now[i%len(now)], Args: cmd(c)}))
	}
	return logs
}

// entryLog is e as the raft log entry at index.
func entryLog(index uint64, e Entry) *raft.Log {
	return &raft.Log{Index: index, Type: raft.LogCommand, Data: e.Encode()}
}

func reply(v interface{}) string { return string(v.([]byte)) }

func digestOf(f *FSM) string { return reply(f.Query(0, 0, cmd("debug digest"))) }

// The same log applied to two fresh FSMs in different batch splits gives the
// same state and the same replies.
func TestDeterministicAcrossBatchSplits(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	var cmds []string
	var nows []int64
	now := int64(1_700_000_000_000)
	for i := 0; i < 3000; i++ {
		k := fmt.Sprintf("k%d", rng.Intn(200))
		switch rng.Intn(8) {
		case 0:
			cmds = append(cmds, "set "+k+" v"+fmt.Sprint(i))
		case 1:
			cmds = append(cmds, "set "+k+" x px "+fmt.Sprint(1+rng.Intn(50)))
		case 2:
			cmds = append(cmds, "incr n"+fmt.Sprint(rng.Intn(5)))
		case 3:
			cmds = append(cmds, "del "+k)
		case 4:
			cmds = append(cmds, "expire "+k+" 1 gt")
		case 5:
			cmds = append(cmds, "append "+k+" z")
		case 6:
			cmds = append(cmds, "getex "+k+" persist")
		case 7:
			cmds = append(cmds, "redraft.expire "+k)
		}
		now += int64(rng.Intn(3))
		nows = append(nows, now)
	}
	a, b := open(t), open(t)
	logs := func() []*raft.Log {
		out := logOf(1, nows, cmds...)
		for i := range out {
			e := Entry{Now: nows[i], Args: cmd(cmds[i])}
			out[i].Data = e.Encode()
		}
		return out
	}
	la, lb := logs(), logs()
	var ra, rb []string
	for _, r := range a.ApplyBatch(la) {
		ra = append(ra, reply(r))
	}
	for i := 0; i < len(lb); {
		n := 1 + rng.Intn(40)
		if i+n > len(lb) {
			n = len(lb) - i
		}
		for _, r := range b.ApplyBatch(lb[i : i+n]) {
			rb = append(rb, reply(r))
		}
		i += n
	}
	for i := range ra {
		if ra[i] != rb[i] {
			t.Fatalf("entry %d (%s): replies differ: %q vs %q", i, cmds[i], ra[i], rb[i])
		}
	}
	if da, db := digestOf(a), digestOf(b); da != db {
		t.Fatalf("digests differ: %s vs %s", da, db)
	}
	assertCounts(t, a)
	if a.AppliedIndex() != uint64(len(cmds)) || b.LastNow() != now {
		t.Fatalf("applied %d, lastNow %d", a.AppliedIndex(), b.LastNow())
	}
}

// TTLs are computed from the entry's time only: the same entries give the
// same deadlines whenever they are applied.
func TestTTLUsesEntryTime(t *testing.T) {
	f := open(t)
	base := int64(1_000_000)
	f.ApplyBatch(logOf(1, []int64{base}, "set a 1 ex 10", "set b 1 px 1500"))
	if got := reply(f.Query(0, base, cmd("pttl a"))); got != ":10000\r\n" {
		t.Fatalf("pttl a = %q", got)
	}
	if got := reply(f.Query(0, base, cmd("pexpiretime b"))); got != fmt.Sprintf(":%d\r\n", base+1500) {
		t.Fatalf("pexpiretime b = %q", got)
	}
	// An entry stamped after the deadline sees the key as gone.
	r := f.ApplyBatch(logOf(3, []int64{base + 1500}, "get b", "exists a"))
	if reply(r[0]) != "$-1\r\n" || reply(r[1]) != ":1\r\n" {
		t.Fatalf("after deadline: %q %q", r[0], r[1])
	}
	// Time never runs backwards: an older stamp is read as the latest one.
	r = f.ApplyBatch(logOf(5, []int64{base}, "get b"))
	if reply(r[0]) != "$-1\r\n" {
		t.Fatalf("older stamp resurrected b: %q", r[0])
	}
}

// A reopened FSM remembers its applied index and skips entries it already
// has, so a restart neither loses nor re-applies entries.
func TestRestartSkipsApplied(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fsm.db")
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	f.ApplyBatch(logOf(1, []int64{1}, "incr n", "incr n"))
	f.Close()
	f, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.AppliedIndex() != 2 {
		t.Fatalf("applied = %d", f.AppliedIndex())
	}
	f.ApplyBatch(logOf(1, []int64{1}, "incr n", "incr n", "incr n"))
	if got := reply(f.Query(0, 1, cmd("get n"))); got != "$1\r\n3\r\n" {
		t.Fatalf("n = %q, want 3 (entries 1-2 replayed must be skipped)", got)
	}
}

// Snapshot and Restore carry the whole state.
func TestSnapshotRestore(t *testing.T) {
	a := open(t)
	a.ApplyBatch(logOf(1, []int64{5}, "set a 1", "set b 2 ex 100", "select-free", "incr c"))
	snap, err := a.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	b := open(t)
	if err := b.Restore(sink.reader()); err != nil {
		t.Fatal(err)
	}
	if digestOf(a) != digestOf(b) || b.AppliedIndex() != 4 {
		t.Fatalf("restore: digest %s vs %s, applied %d", digestOf(a), digestOf(b), b.AppliedIndex())
	}
}

type memSink struct{ bytes.Buffer }

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Cancel() error { return nil }
func (s *memSink) Close() error  { return nil }
func (s *memSink) reader() *readCloser {
	return &readCloser{bytes.NewReader(s.Bytes())}
}

type readCloser struct{ *bytes.Reader }

func (readCloser) Close() error { return nil }

func TestMatchLikeRedis(t *testing.T) {
	cases := []struct {
		pat, s string
		want   bool
	}{
		{"*", "anything", true},
		{"h?llo", "hello", true},
		{"h?llo", "hllo", false},
		{"h*llo", "heeeello", true},
		{"h[ae]llo", "hallo", true},
		{"h[ae]llo", "hillo", false},
		{"h[^e]llo", "hallo", true},
		{"h[^e]llo", "hello", false},
		{"h[a-b]llo", "hbllo", true},
		{"h[b-a]llo", "hallo", true}, // reversed ranges work in Redis
		{`h\*llo`, "h*llo", true},
		{`h\*llo`, "hello", false},
		{"nodered:context:node:*:", "nodered:context:node:abc:", true},
		{"nodered:context:node:*:", "nodered:context:node:abc:x", false},
		{"a[", "a[", false},
		{"a[", "ab", false}, // checked against redis-server 7.0
		{"a[b", "ab", true},
		{"a[^", "a[", true},
		{"[a", "a", true},
		{"", "", true},
		{"**a", "ba", true},
	}
	for _, c := range cases {
		if got := Match([]byte(c.pat), []byte(c.s), false); got != c.want {
			t.Errorf("Match(%q, %q) = %v, want %v", c.pat, c.s, got, c.want)
		}
	}
}

// assertCounts checks the key and expiry counters (DBSIZE, INFO keyspace)
// against what the state holds: first through the layers, then in the file
// once flushed.
func assertCounts(t *testing.T, f *FSM) {
	t.Helper()
	keys, expires := f.KeyCounts()
	check := func(where string, count func(b bucketID, fn func(k []byte))) {
		var gotKeys, gotExp [Databases]int64
		count(bucketIDExpires, func(k []byte) { gotExp[k[8]]++ })
		for db := 0; db < Databases; db++ {
			count(bucketIDDB0+bucketID(db), func([]byte) { gotKeys[db]++ })
			if gotKeys[db] != keys[db] {
				t.Errorf("%s: db%d: %d keys counted, %d stored", where, db, keys[db], gotKeys[db])
			}
			if gotExp[db] != expires[db] {
				t.Errorf("%s: db%d: %d expiring keys counted, %d in the expiry index", where, db, expires[db], gotExp[db])
			}
		}
	}
	f.read(func(v *view, _ *meta) {
		check("view", func(b bucketID, fn func([]byte)) {
			cur := v.cursor(b)
			for k, _ := cur.First(); k != nil; k, _ = cur.Next() {
				fn(k)
			}
		})
	})
	f.flush()
	f.db.View(func(tx *bolt.Tx) error {
		check("file", func(b bucketID, fn func([]byte)) {
			tx.Bucket(bucketNames[b]).ForEach(func(k, _ []byte) error {
				fn(k)
				return nil
			})
		})
		return nil
	})
}

// The leader's expiry sweep starts where the live deadlines begin, not at
// the first key of the index; it must still find every due key, in
// deadline order, however keys with earlier deadlines arrive between
// sweeps, across flushes, and after a restore brings back keys it had
// already passed.
func TestExpiredFindsEveryDueKey(t *testing.T) {
	rng := rand.New(rand.NewSource(5))
	f := open(t)
	deadlines := map[string]int64{} // the model: live keys with a deadline
	index, now := uint64(1), int64(1_000_000)
	var saved *memSink // a snapshot, with the model and index it was taken at
	var savedIndex uint64
	var savedDeadlines map[string]int64
	apply := func(c string) {
		f.ApplyBatch(logOf(index, []int64{now}, c))
		index++
	}
	for step := 0; step < 2000; step++ {
		now += int64(rng.Intn(20))
		for i := rng.Intn(6); i > 0; i-- {
			k := fmt.Sprintf("k%03d", rng.Intn(500))
			ttl := 1 + rng.Intn(20)
			if rng.Intn(6) != 0 {
				ttl = 100 + rng.Intn(2000) // sorts after the short ones to come
			}
			switch rng.Intn(5) {
			case 0:
				apply("del " + k)
				delete(deadlines, k)
			case 1:
				apply("set " + k + " v") // no deadline
				delete(deadlines, k)
			default:
				apply(fmt.Sprintf("set %s v px %d", k, ttl))
				deadlines[k] = now + int64(ttl)
			}
		}
		switch rng.Intn(20) {
		case 0:
			f.flush()
		case 1: // a snapshot, kept to go back to
			snap, err := f.Snapshot()
			if err != nil {
				t.Fatal(err)
			}
			saved = &memSink{}
			if err := snap.Persist(saved); err != nil {
				t.Fatal(err)
			}
			snap.Release()
			savedIndex, savedDeadlines = index, maps.Clone(deadlines)
		case 2: // restore an older snapshot: keys the sweep took come back
			if saved == nil {
				break
			}
			if err := f.Restore(saved.reader()); err != nil {
				t.Fatal(err)
			}
			index, deadlines = savedIndex, maps.Clone(savedDeadlines)
		}
		limit := 1 + rng.Intn(8)
		if rng.Intn(3) == 0 {
			limit = 1000 // catch up: the hint moves past now
		}
		type due struct {
			deadline int64
			key      string
		}
		var want []due
		for k, d := range deadlines {
			if d <= now {
				want = append(want, due{d, k})
			}
		}
		sort.Slice(want, func(i, j int) bool {
			if want[i].deadline != want[j].deadline {
				return want[i].deadline < want[j].deadline
			}
			return want[i].key < want[j].key
		})
		want = want[:min(limit, len(want))]
		got := f.Expired(now, limit)[0]
		if len(got) != len(want) {
			t.Fatalf("step %d: Expired gave %d keys %q, want %v", step, len(got), got, want)
		}
		for i, k := range got {
			if string(k) != want[i].key {
				t.Fatalf("step %d: Expired gave %q, want %v", step, got, want)
			}
		}
		if len(got) > 0 && rng.Intn(4) != 0 { // sometimes the sweep is lost
			var args []string
			for _, k := range got {
				args = append(args, string(k))
				delete(deadlines, string(k))
			}
			apply("redraft.expire " + strings.Join(args, " "))
		}
	}
}

// The longest key redraft accepts fits every bucket it goes into, the
// expires index included; one byte more is refused before anything is
// written, so the key count never drifts from the keys stored.
func TestLongestKeyFitsEveryIndex(t *testing.T) {
	f := open(t)
	long := strings.Repeat("k", MaxKeyLen)
	tooLong := long + "k"
	now := int64(1_000_000)
	run := func(index uint64, c string) string {
		return reply(f.ApplyBatch(logOf(index, []int64{now}, c))[0])
	}
	if got := run(1, "set "+long+" v px 10"); got != "+OK\r\n" {
		t.Fatalf("set of a %d-byte key with a TTL: %q", MaxKeyLen, got)
	}
	if got := run(2, "set "+tooLong+" v px 10"); got != "-"+ErrKeyTooLong+"\r\n" {
		t.Fatalf("set of a %d-byte key: %q", MaxKeyLen+1, got)
	}
	if got := run(3, "set short v"); got != "+OK\r\n" {
		t.Fatal(got)
	}
	if got := run(4, "rename short "+tooLong); got != "-"+ErrKeyTooLong+"\r\n" {
		t.Fatalf("rename to a %d-byte key: %q", MaxKeyLen+1, got)
	}
	if keys, expires := f.KeyCounts(); keys[0] != 2 || expires[0] != 1 {
		t.Fatalf("counts: %d keys, %d expiring; want 2 and 1", keys[0], expires[0])
	}
	assertCounts(t, f) // also writes the layer to bbolt, which must take it
	if got := f.Expired(now+10, 10)[0]; len(got) != 1 || string(got[0]) != long {
		t.Fatalf("Expired = %d keys, want the long one", len(got))
	}
}
