package chaos

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// ms builds times in hand-written histories.
func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

type hb struct{ ops []Op }

func (b *hb) add(client int, kind, key, value string, call, ret int, out string, st Status) *Op {
	op := Op{ID: len(b.ops) + 1, Client: client, Kind: kind, Key: key, Value: value,
		Call: ms(call), Return: ms(ret), Status: st}
	switch {
	case out == "nil":
		op.OutNil = true
	case kind == KindIncr || kind == KindEvalIncr || kind == KindLockExpire || kind == KindLockDel:
		fmt.Sscan(out, &op.OutInt)
	default:
		op.Out = out
	}
	b.ops = append(b.ops, op)
	return &b.ops[len(b.ops)-1]
}

func TestRegisterCatchesStaleRead(t *testing.T) {
	var clean, stale hb
	for _, b := range []*hb{&clean, &stale} {
		b.add(1, KindSet, "x", "a", 0, 10, "", OK)
		b.add(1, KindSet, "x", "b", 20, 30, "", OK)
	}
	clean.add(2, KindGet, "x", "", 40, 50, "b", OK)
	stale.add(2, KindGet, "x", "", 40, 50, "a", OK) // b was acknowledged before
	if r := CheckLinearizable(Register, clean.ops, time.Minute); len(r.Violations) != 0 {
		t.Fatalf("clean history flagged: %v", r.Violations)
	}
	r := CheckLinearizable(Register, stale.ops, time.Minute)
	if len(r.Violations) != 1 || r.Violations[0].Key != "x" {
		t.Fatalf("stale read not caught: %+v", r)
	}
	t.Logf("caught:\n%s", r.Violations[0])
}

func TestRegisterIndeterminateAndFailedWrites(t *testing.T) {
	// An indeterminate write may show up any time after it was sent...
	var b hb
	b.add(1, KindSet, "x", "a", 0, 10, "", OK)
	b.add(1, KindSet, "x", "u", 20, 25, "", Indeterminate)
	b.add(2, KindGet, "x", "", 100, 110, "u", OK)
	b.add(2, KindGet, "x", "", 120, 130, "u", OK)
	if r := CheckLinearizable(Register, b.ops, time.Minute); len(r.Violations) != 0 {
		t.Fatalf("indeterminate write read later flagged: %v", r.Violations)
	}
	// ...but not before it was sent, and not un-happen once seen.
	b.add(2, KindGet, "x", "", 140, 150, "a", OK)
	if r := CheckLinearizable(Register, b.ops, time.Minute); len(r.Violations) != 1 {
		t.Fatalf("value going back not caught: %+v", r)
	}
	// A -CLUSTERDOWN write must never be seen.
	var f hb
	f.add(1, KindSet, "y", "a", 0, 10, "", Failed)
	f.add(2, KindGet, "y", "", 20, 30, "a", OK)
	if r := CheckLinearizable(Register, f.ops, time.Minute); len(r.Violations) != 1 {
		t.Fatalf("refused write that took effect not caught: %+v", r)
	}
}

func TestCounterCatchesStaleRead(t *testing.T) {
	var clean, stale hb
	for _, b := range []*hb{&clean, &stale} {
		b.add(1, KindIncr, "c", "", 0, 10, "1", OK)
		b.add(2, KindIncr, "c", "", 5, 15, "2", OK)
		b.add(3, KindIncr, "c", "", 20, 30, "", Indeterminate)
		b.add(1, KindGet, "c", "", 40, 50, "3", OK)
	}
	clean.add(2, KindGet, "c", "", 60, 70, "3", OK)
	stale.add(2, KindGet, "c", "", 60, 70, "2", OK)
	if r := CheckLinearizable(Counter, clean.ops, time.Minute); len(r.Violations) != 0 {
		t.Fatalf("clean history flagged: %v", r.Violations)
	}
	r := CheckLinearizable(Counter, stale.ops, time.Minute)
	if len(r.Violations) != 1 {
		t.Fatalf("stale counter read not caught: %+v", r)
	}
	// The witness is the read and an op that finished before it began with
	// a larger value.
	if h := r.Violations[0].History; len(h) != 2 || !illegal(Counter, h, time.Minute) {
		t.Fatalf("counter witness:\n%s", r.Violations[0])
	}
	t.Logf("caught:\n%s", r.Violations[0])
}

// A long, busy, correct history with one stale read injected: the checker
// must find it and cut the history down to the few ops that show it.
func TestLinearizabilityMinimizes(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	var b hb
	value, clock := "", 0
	for i := 0; i < 400; i++ {
		clock += 1 + rnd.IntN(3)
		client := rnd.IntN(5)
		if rnd.IntN(2) == 0 {
			value = fmt.Sprintf("v%d", i)
			b.add(client, KindSet, "k", value, clock, clock+1, "", OK)
		} else if value != "" {
			b.add(client, KindGet, "k", "", clock, clock+1, value, OK)
		}
	}
	if r := CheckLinearizable(Register, b.ops, time.Minute); len(r.Violations) != 0 {
		t.Fatalf("clean history flagged")
	}
	// Re-read the first value at the end.
	first := ""
	for _, op := range b.ops {
		if op.Kind == KindSet {
			first = op.Value
			break
		}
	}
	b.add(9, KindGet, "k", "", clock+10, clock+11, first, OK)
	r := CheckLinearizable(Register, b.ops, time.Minute)
	if len(r.Violations) != 1 {
		t.Fatalf("stale read not caught")
	}
	h := r.Violations[0].History
	if len(h) > 3 {
		t.Fatalf("minimal history has %d ops:\n%s", len(h), r.Violations[0])
	}
	if !illegal(Register, h, time.Minute) {
		t.Fatalf("minimal history is linearizable:\n%s", r.Violations[0])
	}
	t.Logf("%d ops cut to:\n%s", len(b.ops), r.Violations[0])
}

func lockOps(b *hb, holder string, kind string, call, ret int, out string, st Status) *Op {
	op := b.add(0, kind, "lock", holder, call, ret, out, st)
	if kind == KindLockAcquire || kind == KindLockExpire {
		op.TTL = 3 * time.Second
	}
	return op
}

func TestLockCatchesDoubleHolder(t *testing.T) {
	var b hb
	lockOps(&b, "A", KindLockAcquire, 0, 10, "OK", OK)
	lockOps(&b, "B", KindLockAcquire, 1000, 1010, "OK", OK) // A's key lives until ≥3000
	lockOps(&b, "B", KindLockGet, 2000, 2010, "B", OK)
	r := CheckLocks(b.ops)
	if len(r.Violations) == 0 {
		t.Fatalf("double holder not caught: %+v", r)
	}
	if len(r.DoubleHolds) != 1 || r.DoubleHolds[0].Cause != "server" {
		t.Fatalf("double hold not attributed to the server: %+v", r.DoubleHolds)
	}
	t.Logf("caught:\n%s", r.Violations[0])

	// A stale GET inside a certain window is the server's fault too.
	var g hb
	lockOps(&g, "A", KindLockAcquire, 0, 10, "OK", OK)
	lockOps(&g, "B", KindLockGet, 500, 510, "nil", OK)
	if r := CheckLocks(g.ops); len(r.Violations) != 1 {
		t.Fatalf("lock vanishing while held not caught: %+v", r)
	}
}

func TestLockAttributesClientRaces(t *testing.T) {
	// GET→EXPIRE race: A reads its name, its key expires, B acquires, A's
	// EXPIRE extends B's key; both believe until A next reads B's name.
	var b hb
	lockOps(&b, "A", KindLockAcquire, 0, 10, "OK", OK)
	lockOps(&b, "A", KindLockGet, 2990, 2995, "A", OK)
	lockOps(&b, "B", KindLockAcquire, 3000, 3010, "OK", OK)
	lockOps(&b, "A", KindLockExpire, 3020, 3030, "1", OK)
	lockOps(&b, "A", KindLockGet, 4000, 4010, "B", OK)
	lockOps(&b, "B", KindLockGet, 4000, 4010, "B", OK)
	r := CheckLocks(b.ops)
	if len(r.Violations) != 0 {
		t.Fatalf("client race blamed on the server: %v", r.Violations)
	}
	if r.RacesCertain != 1 || len(r.DoubleHolds) != 1 || r.DoubleHolds[0].Cause != "get-expire race" {
		t.Fatalf("race not measured: %+v", r)
	}
	// A holder whose refreshes fail past the TTL: its belief outlives the
	// lease; that is the client's problem, not the server's.
	var l hb
	lockOps(&l, "A", KindLockAcquire, 0, 10, "OK", OK)
	lockOps(&l, "A", KindLockGet, 1000, 9000, "", Indeterminate)
	lockOps(&l, "B", KindLockAcquire, 3100, 3110, "OK", OK)
	lockOps(&l, "A", KindLockGet, 9100, 9110, "B", OK)
	r = CheckLocks(l.ops)
	if len(r.Violations) != 0 || len(r.DoubleHolds) != 1 || r.DoubleHolds[0].Cause != "lease expired" {
		t.Fatalf("expired lease misattributed: %+v", r)
	}
}

func TestLockTakeoverAfterHolderDies(t *testing.T) {
	var b hb
	lockOps(&b, "A", KindLockAcquire, 0, 10, "OK", OK)
	lockOps(&b, "A", KindLockGet, 1000, 1005, "A", OK)
	lockOps(&b, "A", KindLockExpire, 1010, 1020, "1", OK)
	lockOps(&b, "A", KindLockCrash, 1500, 1500, "", OK)
	lockOps(&b, "B", KindLockAcquire, 2000, 2010, "nil", OK)
	lockOps(&b, "B", KindLockAcquire, 4500, 4510, "OK", OK)
	r := CheckLocks(b.ops)
	if len(r.Violations) != 0 || len(r.Takeovers) != 1 {
		t.Fatalf("%+v", r)
	}
	if tk := r.Takeovers[0]; tk.By != "B" || tk.Unowned != ms(4510)-ms(1020)-3*time.Second {
		t.Fatalf("takeover measured wrong: %+v", tk)
	}
	// Taking over before the dead holder's lease ran out is a server bug.
	lockOps(&b, "C", KindLockAcquire, 2500, 2510, "OK", OK)
	if r := CheckLocks(b.ops); len(r.Violations) == 0 {
		t.Fatalf("early takeover not caught")
	}
}

func TestDurabilityCatchesLostWrite(t *testing.T) {
	var b hb
	b.add(1, KindSet, "d:1", "v1", 0, 10, "", OK)
	b.add(1, KindSet, "d:2", "v2", 20, 30, "", OK)
	b.add(1, KindSet, "d:3", "v3", 40, 50, "", Indeterminate)
	b.add(2, KindSet, "r", "old", 0, 10, "", OK)
	b.add(2, KindSet, "r", "new", 20, 30, "", OK)
	b.add(3, KindIncr, "c", "", 0, 10, "1", OK)
	b.add(3, KindIncr, "c", "", 20, 30, "2", OK)
	b.add(3, KindIncr, "c", "", 40, 50, "", Indeterminate)
	good := map[string]FinalValue{"d:1": {Value: "v1"}, "d:2": {Value: "v2"}, "d:3": {Nil: true},
		"r": {Value: "new"}, "c": {Value: "3"}}
	if v := CheckDurability(b.ops, good); len(v) != 0 {
		t.Fatalf("clean end state flagged: %v", v)
	}
	bad := map[string]FinalValue{"d:1": {Value: "v1"}, "d:2": {Nil: true}, "d:3": {Value: "v3"},
		"r": {Value: "old"}, "c": {Value: "1"}}
	v := CheckDurability(b.ops, bad)
	keys := []string{}
	for _, x := range v {
		keys = append(keys, x.Key)
	}
	if strings.Join(keys, ",") != "c,d:2,r" {
		t.Fatalf("lost writes caught on %v, want c,d:2,r: %v", keys, v)
	}
}

func TestPubSubChecker(t *testing.T) {
	var b hb
	for i := 1; i <= 4; i++ {
		b.add(1, KindPublish, "ch", fmt.Sprintf("m%d", i), i*100, i*100+10, "", OK)
	}
	b.add(1, KindPublish, "ch", "refused", 600, 610, "", Failed)
	ok := []SubStream{
		{Subscriber: "s1", Channel: "ch", From: 0, To: ms(1000), Messages: []string{"m1", "m2", "m3", "m4"}},
		{Subscriber: "s2", Channel: "ch", From: ms(150), To: ms(1000), Messages: []string{"m2", "m3", "m4"}},
		{Subscriber: "s3", Channel: "ch", From: 0, To: ms(1000), Messages: []string{"m1", "m4"}, CutOff: true},
	}
	if v := CheckPubSub(b.ops, ok); len(v) != 0 {
		t.Fatalf("clean streams flagged: %v", v)
	}
	for name, s := range map[string]SubStream{
		"gap":       {Subscriber: "g", Channel: "ch", From: 0, To: ms(1000), Messages: []string{"m1", "m2", "m4"}},
		"duplicate": {Subscriber: "d", Channel: "ch", From: 0, To: ms(1000), Messages: []string{"m1", "m2", "m2", "m3", "m4"}, CutOff: true},
		"order":     {Subscriber: "o", Channel: "ch", From: 0, To: ms(1000), Messages: []string{"m2", "m1", "m3", "m4"}},
		"refused":   {Subscriber: "r", Channel: "ch", From: 0, To: ms(1000), Messages: []string{"m1", "m2", "m3", "m4", "refused"}},
	} {
		if v := CheckPubSub(b.ops, append([]SubStream{ok[0]}, s)); len(v) == 0 {
			t.Errorf("%s not caught", name)
		}
	}
}
