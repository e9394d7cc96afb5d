package chaos

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"maps"
	"math"
	"slices"
	"sort"
	"time"

	"github.com/anishathalye/porcupine"
)

// Violation is one thing a checker proved wrong, with the smallest history
// it found that shows it.
type Violation struct {
	Checker string        `json:"checker"`
	Key     string        `json:"key,omitempty"`
	Message string        `json:"message"`
	At      time.Duration `json:"at"`
	History []Op          `json:"history,omitempty"`
	File    string        `json:"file,omitempty"` // e.g. a porcupine visualization
}

// maxShown bounds the ops a violation prints.
const maxShown = 40

func (v Violation) String() string {
	s := fmt.Sprintf("[%s] %s: %s (at %.3fs)", v.Checker, v.Key, v.Message, v.At.Seconds())
	h := v.History
	if len(h) > maxShown {
		// The JSON report has all of it.
		s += fmt.Sprintf("\n    ... %d earlier ops", len(h)-maxShown)
		h = h[len(h)-maxShown:]
	}
	for _, op := range h {
		s += "\n    " + op.String()
	}
	if v.File != "" {
		s += "\n    see " + v.File
	}
	return s
}

// --- porcupine models -------------------------------------------------------

// Inputs and outputs of the models. Unknown marks an indeterminate write: it
// returns at the end of the history and any outcome is acceptable.
type (
	regInput struct {
		Key   string
		Write bool
		Value string
	}
	regOutput struct {
		Value   string
		Nil     bool
		Unknown bool
	}
	ctrInput struct {
		Key  string
		Incr bool
	}
	ctrOutput struct {
		Value   int64
		Unknown bool
	}
)

// nilValue is the register state of a missing key; workload values never
// contain NUL.
const nilValue = "\x00nil"

func partitionBy(key func(any) string) func([]porcupine.Operation) [][]porcupine.Operation {
	return func(h []porcupine.Operation) [][]porcupine.Operation {
		idx := map[string]int{}
		var out [][]porcupine.Operation
		for _, op := range h {
			k := key(op.Input)
			i, ok := idx[k]
			if !ok {
				i = len(out)
				idx[k] = i
				out = append(out, nil)
			}
			out[i] = append(out[i], op)
		}
		return out
	}
}

// RegisterModel is a GET/SET register per key (partitioned by key).
var RegisterModel = porcupine.Model{
	Partition: partitionBy(func(in any) string { return in.(regInput).Key }),
	Init:      func() any { return nilValue },
	Step: func(state, input, output any) (bool, any) {
		in, s := input.(regInput), state.(string)
		if in.Write {
			return true, in.Value
		}
		out := output.(regOutput)
		if out.Nil {
			return s == nilValue, s
		}
		return s == out.Value, s
	},
	Hash: func(state any) uint64 {
		h := fnv.New64a()
		h.Write([]byte(state.(string)))
		return h.Sum64()
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(regInput), output.(regOutput)
		switch {
		case in.Write && out.Unknown:
			return fmt.Sprintf("set(%q) -> ?", in.Value)
		case in.Write:
			return fmt.Sprintf("set(%q)", in.Value)
		case out.Nil:
			return "get() -> nil"
		}
		return fmt.Sprintf("get() -> %q", out.Value)
	},
	DescribeState: func(state any) string {
		if state.(string) == nilValue {
			return "nil"
		}
		return fmt.Sprintf("%q", state)
	},
}

// CounterModel is an INCR/GET counter per key (partitioned by key); a
// missing key reads as 0.
var CounterModel = porcupine.Model{
	Partition: partitionBy(func(in any) string { return in.(ctrInput).Key }),
	Init:      func() any { return int64(0) },
	Step: func(state, input, output any) (bool, any) {
		in, out, s := input.(ctrInput), output.(ctrOutput), state.(int64)
		if in.Incr {
			return out.Unknown || out.Value == s+1, s + 1
		}
		return out.Value == s, s
	},
	Hash: func(state any) uint64 { return uint64(state.(int64)) },
	DescribeOperation: func(input, output any) string {
		in, out := input.(ctrInput), output.(ctrOutput)
		switch {
		case in.Incr && out.Unknown:
			return "incr() -> ?"
		case in.Incr:
			return fmt.Sprintf("incr() -> %d", out.Value)
		}
		return fmt.Sprintf("get() -> %d", out.Value)
	},
	DescribeState: func(state any) string { return fmt.Sprint(state) },
}

// ModelKind selects what CheckLinearizable models.
type ModelKind string

const (
	Register ModelKind = "register" // KindSet, KindGet
	Counter  ModelKind = "counter"  // KindIncr, KindGet
	// LuaCounter is a counter kept in a JSON document: KindEvalIncr is an
	// atomic increment that returns the new value, and a KindGet returns
	// the document, whose field n is the value.
	LuaCounter ModelKind = "lua-counter"
)

// isIncr says whether op is the increment of the counter model kind.
func isIncr(kind ModelKind, op Op) bool {
	return kind == Counter && op.Kind == KindIncr || kind == LuaCounter && op.Kind == KindEvalIncr
}

// counterRead is the value a counter read returned: an integer for
// Counter, a JSON document's n for LuaCounter; a missing key reads 0.
func counterRead(kind ModelKind, op Op) (int64, error) {
	if kind == LuaCounter {
		return jsonCounter(op.Out, op.OutNil)
	}
	return parseInt(op.Out, op.OutNil)
}

// jsonCounter reads the field n of a JSON document such as {"n":3}.
func jsonCounter(s string, isNil bool) (int64, error) {
	if isNil {
		return 0, nil
	}
	var d struct {
		N *float64 `json:"n"`
	}
	if err := json.Unmarshal([]byte(s), &d); err != nil {
		return 0, err
	}
	if d.N == nil || *d.N != math.Trunc(*d.N) {
		return 0, fmt.Errorf("no integer n in %q", s)
	}
	return int64(*d.N), nil
}

// linOps turns recorded ops into porcupine operations and remembers which op
// each came from. Failed writes are left out (they did not happen); reads
// without an answer constrain nothing and are left out; indeterminate writes
// return after everything else.
func linOps(kind ModelKind, ops []Op) ([]porcupine.Operation, []Op) {
	var keep []Op
	read := map[string]bool{} // key+value pairs some read returned
	for _, op := range ops {
		if op.Kind == KindGet && op.Status == OK && !op.OutNil {
			read[op.Key+"\x00"+op.Out] = true
		}
	}
	var end time.Duration
	for _, op := range ops {
		if op.Status == Failed {
			continue
		}
		switch {
		case op.Kind == KindGet && op.Status == OK:
		case kind == Register && op.Kind == KindSet:
			// An indeterminate write nobody read can always be linearized
			// last, where it changes nothing: dropping it keeps the verdict
			// and saves porcupine an open operation for the whole history.
			if op.Status == Indeterminate && !read[op.Key+"\x00"+op.Value] {
				continue
			}
		case isIncr(kind, op):
		default:
			continue
		}
		keep = append(keep, op)
		if op.Return > end {
			end = op.Return
		}
	}
	out := make([]porcupine.Operation, len(keep))
	for i, op := range keep {
		ret := op.Return
		if op.Status == Indeterminate {
			ret = end + 1
		}
		var in, res any
		switch {
		case kind == Register && op.Kind == KindSet:
			in, res = regInput{Key: op.Key, Write: true, Value: op.Value}, regOutput{Unknown: op.Status != OK}
		case kind == Register:
			in, res = regInput{Key: op.Key}, regOutput{Value: op.Out, Nil: op.OutNil}
		case isIncr(kind, op):
			in, res = ctrInput{Key: op.Key, Incr: true}, ctrOutput{Value: op.OutInt, Unknown: op.Status != OK}
		default:
			v, err := counterRead(kind, op)
			if err != nil {
				// A non-integer counter read can match no state.
				v = -1 << 62
			}
			in, res = ctrInput{Key: op.Key}, ctrOutput{Value: v}
		}
		out[i] = porcupine.Operation{ClientId: op.Client, Input: in, Call: int64(op.Call), Output: res, Return: int64(ret), Metadata: op.ID}
	}
	return out, keep
}

func parseInt(s string, isNil bool) (int64, error) {
	if isNil {
		return 0, nil
	}
	var v int64
	_, err := fmt.Sscan(s, &v)
	return v, err
}

func modelOf(kind ModelKind) porcupine.Model {
	if kind == Counter || kind == LuaCounter {
		return CounterModel
	}
	return RegisterModel
}

// LinReport summarises a linearizability check.
type LinReport struct {
	Model        ModelKind   `json:"model"`
	Keys         int         `json:"keys"`
	Ops          int         `json:"ops"`
	Violations   []Violation `json:"violations,omitempty"`
	Inconclusive []string    `json:"inconclusive,omitempty"` // keys porcupine timed out on
	// Info holds, per violating key, porcupine's data for a visualization.
	Info map[string]porcupine.LinearizationInfo `json:"-"`
}

// CheckLinearizable checks every key's history against the model, within
// timeout per key, and for each violating key searches (within a budget) for
// a smaller history that still shows the violation.
func CheckLinearizable(kind ModelKind, ops []Op, timeout time.Duration) LinReport {
	rep := LinReport{Model: kind, Info: map[string]porcupine.LinearizationInfo{}}
	byKey := map[string][]Op{}
	for _, op := range ops {
		byKey[op.Key] = append(byKey[op.Key], op)
	}
	keys := slices.Sorted(maps.Keys(byKey))
	rep.Keys = len(keys)
	model := modelOf(kind)
	all, _ := linOps(kind, ops)
	rep.Ops = len(all)
	// One partitioned check first: porcupine splits by key and checks the
	// partitions in parallel. Only if it fails do we look key by key.
	if porcupine.CheckOperationsTimeout(model, all, timeout) == porcupine.Ok {
		return rep
	}
	for _, k := range keys {
		pops, kept := linOps(kind, byKey[k])
		res, info := porcupine.CheckOperationsVerbose(model, pops, timeout)
		switch res {
		case porcupine.Unknown:
			rep.Inconclusive = append(rep.Inconclusive, k)
		case porcupine.Illegal:
			rep.Info[k] = info
			minimal := minimize(kind, kept, 20*time.Second)
			v := Violation{Checker: "linearizability/" + string(kind), Key: k,
				Message: fmt.Sprintf("history of %d ops is not linearizable; a %d-op sub-history is not either", len(kept), len(minimal)),
				History: minimal}
			if len(minimal) > 0 {
				v.At = minimal[len(minimal)-1].Call
			}
			rep.Violations = append(rep.Violations, v)
		}
	}
	return rep
}

// illegal reports whether porcupine proves ops non-linearizable.
func illegal(kind ModelKind, ops []Op, timeout time.Duration) bool {
	pops, _ := linOps(kind, ops)
	return porcupine.CheckOperationsTimeout(modelOf(kind), pops, timeout) == porcupine.Illegal
}

// minimize shrinks a non-linearizable single-key history by delta debugging
// over removals that keep the verdict sound: a non-linearizable subset only
// proves the whole history wrong if removing ops cannot have caused the
// failure. Removing a read is always sound, and so is removing a register
// write together with every read of its (unique) value. A counter's
// increments stay: every later read depends on them. Writes (with their
// readers) go first, then single reads.
func minimize(kind ModelKind, ops []Op, budget time.Duration) []Op {
	deadline := time.Now().Add(budget)
	if kind == Counter || kind == LuaCounter {
		if pair := counterRegression(kind, ops); pair != nil {
			return pair
		}
	}
	if kind == Register {
		var groups [][]Op
		writer := map[string]int{}
		for _, op := range ops {
			if op.Kind == KindSet {
				writer[op.Value] = len(groups)
				groups = append(groups, []Op{op})
			}
		}
		for _, op := range ops {
			if g, ok := writer[op.Out]; ok && op.Kind == KindGet && !op.OutNil {
				groups[g] = append(groups[g], op)
			} else if op.Kind == KindGet {
				groups = append(groups, []Op{op})
			}
		}
		ops = ddmin(kind, nil, groups, deadline)
	}
	var fixed []Op
	var reads [][]Op
	for _, op := range ops {
		if op.Kind == KindGet {
			reads = append(reads, []Op{op})
		} else {
			fixed = append(fixed, op)
		}
	}
	return ddmin(kind, fixed, reads, deadline)
}

// counterRegression looks for the shortest witness a counter can have: an
// op that finished before another began yet observed a larger value (only
// INCR changes the counter, so observed values never go down in real time).
func counterRegression(kind ModelKind, ops []Op) []Op {
	type obs struct {
		op Op
		v  int64
	}
	var seen []obs
	for _, op := range ops {
		if op.Status != OK {
			continue
		}
		switch {
		case isIncr(kind, op):
			seen = append(seen, obs{op, op.OutInt})
		case op.Kind == KindGet:
			if v, err := counterRead(kind, op); err == nil {
				seen = append(seen, obs{op, v})
			}
		}
	}
	// Sweep in invocation order, keeping the largest value among ops that
	// have returned before the current op was invoked.
	byRet := append([]obs(nil), seen...)
	sort.Slice(byRet, func(i, j int) bool { return byRet[i].op.Return < byRet[j].op.Return })
	sort.Slice(seen, func(i, j int) bool { return seen[i].op.Call < seen[j].op.Call })
	var best *obs
	j := 0
	for _, b := range seen {
		for j < len(byRet) && byRet[j].op.Return < b.op.Call {
			if best == nil || byRet[j].v > best.v {
				o := byRet[j]
				best = &o
			}
			j++
		}
		if best == nil {
			continue
		}
		if b.v < best.v || (isIncr(kind, b.op) && b.v == best.v) {
			return []Op{best.op, b.op}
		}
	}
	return nil
}

// ddmin removes as many groups as it can, keeping fixed, while the history
// stays provably non-linearizable.
func ddmin(kind ModelKind, fixed []Op, groups [][]Op, deadline time.Time) []Op {
	build := func(keep []bool) []Op {
		out := append([]Op(nil), fixed...)
		for g, k := range keep {
			if k {
				out = append(out, groups[g]...)
			}
		}
		SortOps(out)
		return out
	}
	keep := make([]bool, len(groups))
	for i := range keep {
		keep[i] = true
	}
	n := 2
	for time.Now().Before(deadline) {
		var live []int
		for g, k := range keep {
			if k {
				live = append(live, g)
			}
		}
		if len(live) < 2 || n > len(live) {
			break
		}
		removed := false
		chunk := (len(live) + n - 1) / n
		for start := 0; start < len(live) && time.Now().Before(deadline); start += chunk {
			try := append([]bool(nil), keep...)
			for _, g := range live[start:min(start+chunk, len(live))] {
				try[g] = false
			}
			if illegal(kind, build(try), 2*time.Second) {
				keep, removed = try, true
				break
			}
		}
		switch {
		case removed:
			n = max(n-1, 2)
		case n == len(live):
			return build(keep)
		default:
			n = min(2*n, len(live))
		}
	}
	return build(keep)
}

// FinalValue is a key's value read after the final heal.
type FinalValue struct {
	Value string `json:"value"`
	Nil   bool   `json:"nil"`
}

// CheckDurability checks that every acknowledged write survived to the end:
// for each register key (KindSet) the final value must come from a write
// that was not definitely overwritten by an acknowledged one, and a key with
// an acknowledged write must exist; for each counter key (KindIncr) the final
// value must count every acknowledged increment and no more than were
// attempted. Keys missing from final are not checked.
func CheckDurability(ops []Op, final map[string]FinalValue) []Violation {
	type keyOps struct{ sets, incrs []Op }
	byKey := map[string]*keyOps{}
	for _, op := range ops {
		if op.Status == Failed || (op.Kind != KindSet && op.Kind != KindIncr) {
			continue
		}
		k := byKey[op.Key]
		if k == nil {
			k = &keyOps{}
			byKey[op.Key] = k
		}
		if op.Kind == KindSet {
			k.sets = append(k.sets, op)
		} else {
			k.incrs = append(k.incrs, op)
		}
	}
	keys := slices.Sorted(maps.Keys(byKey))
	var out []Violation
	for _, key := range keys {
		fv, ok := final[key]
		if !ok {
			continue
		}
		k := byKey[key]
		if v := checkRegisterFinal(key, k.sets, fv); v != nil {
			out = append(out, *v)
		}
		if v := checkCounterFinal(key, k.incrs, fv); v != nil {
			out = append(out, *v)
		}
	}
	return out
}

func checkRegisterFinal(key string, sets []Op, fv FinalValue) *Violation {
	if len(sets) == 0 {
		return nil
	}
	var lastAcked *Op
	for i := range sets {
		if sets[i].Status == OK && (lastAcked == nil || sets[i].Call > lastAcked.Call) {
			lastAcked = &sets[i]
		}
	}
	if fv.Nil {
		if lastAcked == nil {
			return nil
		}
		return &Violation{Checker: "durability", Key: key, At: lastAcked.Return,
			Message: "acknowledged write is missing after the final heal", History: []Op{*lastAcked}}
	}
	var src *Op
	for i := range sets {
		if sets[i].Value == fv.Value {
			src = &sets[i]
		}
	}
	if src == nil {
		return &Violation{Checker: "durability", Key: key,
			Message: fmt.Sprintf("final value %q was never written", fv.Value)}
	}
	for _, w := range sets {
		if w.Status == OK && w.Call > src.End() {
			return &Violation{Checker: "durability", Key: key, At: w.Return,
				Message: fmt.Sprintf("acknowledged write lost: final value %q is older than it", fv.Value),
				History: []Op{*src, w}}
		}
	}
	return nil
}

func checkCounterFinal(key string, incrs []Op, fv FinalValue) *Violation {
	if len(incrs) == 0 {
		return nil
	}
	acked, attempted := int64(0), int64(len(incrs))
	var best *Op
	for i, op := range incrs {
		if op.Status != OK {
			continue
		}
		acked++
		if best == nil || op.OutInt > best.OutInt {
			best = &incrs[i]
		}
	}
	v, err := parseInt(fv.Value, fv.Nil)
	switch {
	case err != nil:
		return &Violation{Checker: "durability", Key: key, Message: fmt.Sprintf("counter reads %q", fv.Value)}
	case v < acked || (best != nil && v < best.OutInt):
		var h []Op
		if best != nil {
			h = []Op{*best}
		}
		return &Violation{Checker: "durability", Key: key,
			Message: fmt.Sprintf("counter is %d after the final heal but %d increments were acknowledged", v, acked), History: h}
	case v > attempted:
		return &Violation{Checker: "durability", Key: key,
			Message: fmt.Sprintf("counter is %d but only %d increments were attempted", v, attempted)}
	}
	return nil
}
