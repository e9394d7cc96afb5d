package chaos

import (
	"strings"
	"testing"
	"time"
)

// The Lua read-modify-write workload's check: EVAL is an atomic increment
// returning the new n, a GET returns the document.
func TestLuaCounterCatchesLostIncrement(t *testing.T) {
	base := func() *hb {
		var b hb
		b.add(1, KindEvalIncr, "l:0:0", "", 0, 10, "1", OK)
		b.add(2, KindEvalIncr, "l:0:0", "", 20, 30, "2", OK)
		b.add(3, KindEvalIncr, "l:0:0", "", 35, 40, "", Indeterminate)
		b.add(3, KindEvalIncr, "l:0:0", "", 41, 42, "", Failed) // -CLUSTERDOWN: never happened
		return &b
	}
	clean := base()
	clean.add(1, KindGet, "l:0:0", "", 50, 60, `{"n":3}`, OK)
	if f := (LuaWorkload{}).Check(nil, clean.ops, map[string]FinalValue{"l:0:0": {Value: `{"n":3}`}}); len(f.Violations) != 0 {
		t.Fatalf("clean history flagged: %v", f.Violations)
	}
	// The indeterminate increment may also not have happened.
	if f := (LuaWorkload{}).Check(nil, base().ops, map[string]FinalValue{"l:0:0": {Value: `{"n":2}`}}); len(f.Violations) != 0 {
		t.Fatalf("indeterminate increment that did not happen flagged: %v", f.Violations)
	}

	// An acknowledged increment lost: a later read and the final document
	// show 1 after 2 was acknowledged.
	lost := base()
	lost.add(1, KindGet, "l:0:0", "", 50, 60, `{"n":1}`, OK)
	f := (LuaWorkload{}).Check(nil, lost.ops, map[string]FinalValue{"l:0:0": {Value: `{"n":1}`}})
	var lin, dur bool
	for _, v := range f.Violations {
		lin = lin || strings.HasPrefix(v.Checker, "linearizability/"+string(LuaCounter))
		dur = dur || v.Checker == "durability"
		t.Logf("caught:\n%s", v)
	}
	if !lin || !dur {
		t.Fatalf("lost increment not caught by both checks: %v", f.Violations)
	}
	for _, v := range f.Violations {
		for _, op := range v.History {
			if op.Kind == KindIncr {
				t.Errorf("violation shows the checker's view, not the recorded op: %s", op)
			}
		}
	}

	// A read-modify-write that is not atomic: two overlapping EVALs both
	// read n=0 and answer 1.
	var racy hb
	racy.add(1, KindEvalIncr, "l:0:1", "", 0, 10, "1", OK)
	racy.add(2, KindEvalIncr, "l:0:1", "", 5, 15, "1", OK)
	if f := (LuaWorkload{}).Check(nil, racy.ops, nil); len(f.Violations) != 1 {
		t.Fatalf("two increments answering the same value not caught: %v", f.Violations)
	}

	// A document without an integer n matches no counter state.
	var junk hb
	junk.add(1, KindEvalIncr, "l:0:2", "", 0, 10, "1", OK)
	junk.add(2, KindGet, "l:0:2", "", 20, 30, `{"m":1}`, OK)
	if f := (LuaWorkload{}).Check(nil, junk.ops, nil); len(f.Violations) != 1 {
		t.Fatalf("malformed document not caught: %v", f.Violations)
	}
}

// The pub/sub workload's wiring: recorded subscriber connections become
// streams for CheckPubSub, gaps excused only where a fault cut the node off.
func TestPubSubWiringCatchesReorderAndDuplicate(t *testing.T) {
	channels := []string{"ps:0", "ps:1"}
	ids := []string{"n1", "n2", "n3"}
	var b hb
	for i, m := range []string{"m1-0", "m1-1", "m1-2", "m1-3"} {
		b.add(1, KindPublish, "ps:0", m, 100+20*i, 110+20*i, "", OK)
	}
	b.add(2, KindPublish, "ps:1", "m2-0", 105, 200, "", Indeterminate)
	b.add(2, KindPublish, "ps:1", "m2-1", 205, 210, "", Failed)
	pubs := b.ops
	seg := func(node, seq int, msgs ...string) *subSegment {
		s := &subSegment{Node: node, Seq: seq, Start: ms(50), End: ms(300),
			From: map[string]time.Duration{"ps:0": ms(60), "ps:1": ms(61)}}
		for _, m := range msgs {
			ch := "ps:0"
			if strings.HasPrefix(m, "m2") {
				ch = "ps:1"
			}
			s.Msgs = append(s.Msgs, subMsg{ch, m})
		}
		return s
	}
	all := []string{"m1-0", "m1-1", "m2-0", "m1-2", "m1-3"}
	check := func(faults []FaultRecord, segs ...*subSegment) Findings {
		t.Helper()
		f := checkPubSubRun(channels, pubs, segs, faults, ids)
		for _, v := range f.Violations {
			t.Logf("  %s", v)
		}
		return f
	}

	f := check(nil, seg(0, 1, all...), seg(1, 1, all...), seg(2, 1, all...))
	if len(f.Violations) != 0 {
		t.Fatalf("clean streams flagged: %v", f.Violations)
	}
	if f.PubSub.Streams != 6 || f.PubSub.Received != 15 || f.PubSub.GapChecked != 3*3 /* m1-3 was acknowledged after the last message was sent */ {
		t.Fatalf("report: %+v", f.PubSub)
	}
	// A connection owes only what was acknowledged before the last message
	// it received was sent: a follower may deliver after the ack.
	if f := check(nil, seg(0, 1, all...), seg(1, 1, "m1-0", "m1-1")); len(f.Violations) != 0 {
		t.Fatalf("lagging follower flagged: %v", f.Violations)
	}

	// Reordered on one node.
	f = check(nil, seg(0, 1, all...), seg(1, 1, "m1-1", "m1-0", "m2-0", "m1-2", "m1-3"))
	if !hasMessage(f.Violations, "disagree on the order") || !hasMessage(f.Violations, "acknowledged before it was sent") {
		t.Fatalf("reordered messages not caught: %v", f.Violations)
	}
	// Duplicated.
	if f := check(nil, seg(0, 1, "m1-0", "m1-1", "m1-1", "m1-2", "m1-3")); !hasMessage(f.Violations, "twice") {
		t.Fatalf("duplicate not caught: %v", f.Violations)
	}
	// A refused PUBLISH delivered.
	if f := check(nil, seg(0, 1, "m1-0", "m2-1", "m1-1")); !hasMessage(f.Violations, "refused") {
		t.Fatalf("refused message delivered not caught: %v", f.Violations)
	}

	// A gap: m1-1 missing on n3.
	gap := func() *subSegment { return seg(2, 1, "m1-0", "m2-0", "m1-2", "m1-3") }
	if f := check(nil, gap()); !hasMessage(f.Violations, "never received") {
		t.Fatalf("gap on a node never cut off not caught: %v", f.Violations)
	}
	// ... excused when a fault named n3 while it listened, or within the
	// catch-up time after the cluster recovered ...
	pause := FaultRecord{Kind: FaultPauseFollower, Nodes: []string{"n3"}, Start: ms(-5000), Healed: ms(-4000), Recovered: ms(-3000)}
	if f := check([]FaultRecord{pause}, gap()); len(f.Violations) != 0 || f.PubSub.CutOff != 2 {
		t.Fatalf("gap on a node that was cut off flagged: %v %+v", f.Violations, f.PubSub)
	}
	// ... or after its previous connection broke ...
	s := gap()
	s.AfterBreak = true
	if f := check(nil, s); len(f.Violations) != 0 {
		t.Fatalf("gap after a broken connection flagged: %v", f.Violations)
	}
	// ... but not by a fault on another node, one long over, or latency.
	other := pause
	other.Nodes = []string{"n1"}
	old := pause
	old.Start, old.Healed, old.Recovered = ms(-20000), ms(-19000), ms(-18000)
	lat := FaultRecord{Kind: FaultLatency, Start: ms(0), Healed: ms(400), Recovered: ms(500)}
	if f := check([]FaultRecord{other, old, lat}, gap()); !hasMessage(f.Violations, "never received") {
		t.Fatalf("gap excused by unrelated faults: %v", f.Violations)
	}
	// Disorder is never excused.
	if f := check([]FaultRecord{pause}, seg(2, 1, "m1-1", "m1-0")); len(f.Violations) == 0 {
		t.Fatal("reorder on a cut-off node not caught")
	}
}

func hasMessage(vs []Violation, sub string) bool {
	for _, v := range vs {
		if strings.Contains(v.Message, sub) {
			return true
		}
	}
	return false
}
