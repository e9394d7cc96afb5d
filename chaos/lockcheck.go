package chaos

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"time"
)

// The lock checker judges Node-RED's cluster-leader protocol:
//
//	acquire: SET k host EX ttl NX          → OK: I hold it
//	refresh: GET k; if == host: EXPIRE k ttl (not atomic)
//	release: GET k; if == host: DEL k      (not atomic)
//
// Every lock op's Value is the name of the client that issued it.
//
// Two notions of "holding" are kept apart:
//
//   - belief: what the client thinks, from its acquire until it sees a GET
//     answer another name or nil, an EXPIRE answer 0, or it releases or dies.
//     Errors do not end belief (the Node-RED node ignores them). Beliefs of
//     two clients can overlap through no fault of the server: the GET→EXPIRE
//     race (the key expires and is taken between the two commands, and the
//     EXPIRE then extends the new holder's key), the GET→DEL race (the same,
//     deleting the new holder's key), or a holder whose refreshes failed for
//     longer than the TTL.
//   - certainty: what the server has promised, from acknowledged replies
//     only. SET NX → OK proves the key held this client's name from the reply
//     until at least invocation+ttl (the deadline is stamped at apply, after
//     invocation). EXPIRE → 1 proves the same for its own interval once a
//     later GET by the same client, with no acquire in between, still sees
//     its name (the EXPIRE then hit this client's key, not a successor's). A
//     DEL that may have applied inside a window cuts it at the DEL's
//     invocation, whoever sent it.
//
// Overlapping certainties of two clients, or an acknowledged reply inside a
// client's certainty that contradicts it, can only be the server's fault.

// windowSlack absorbs the server's millisecond clock and clock rate: server
// deadlines are wall-clock, the history's times are monotonic.
const windowSlack = 5 * time.Millisecond

// LockReport is what the lock checker found.
type LockReport struct {
	Keys         int           `json:"keys"`
	Acquisitions int           `json:"acquisitions"`
	Refreshes    int           `json:"refreshes"`      // GET→self then EXPIRE→1
	MaxGetExpire time.Duration `json:"max_get_expire"` // longest GET-return→EXPIRE-call gap
	// RacesPossible counts refreshes whose GET..EXPIRE interval overlaps
	// another client's successful acquire; RacesCertain those where the
	// acquire happened strictly between the two commands.
	RacesPossible int          `json:"races_possible"`
	RacesCertain  int          `json:"races_certain"`
	DoubleHolds   []DoubleHold `json:"double_holds,omitempty"`
	Takeovers     []Takeover   `json:"takeovers,omitempty"`
	Violations    []Violation  `json:"violations,omitempty"`
}

// DoubleHold is an interval in which two clients both believed they held the
// lock, with the cause the checker attributes it to.
type DoubleHold struct {
	Key    string        `json:"key"`
	First  string        `json:"first"`
	Second string        `json:"second"`
	Start  time.Duration `json:"start"`
	End    time.Duration `json:"end"`
	Cause  string        `json:"cause"` // get-expire race, get-del race, lease expired, server
}

// Takeover measures how long a lock stayed unowned after its holder died.
type Takeover struct {
	Key       string        `json:"key"`
	Holder    string        `json:"holder"`
	Crash     time.Duration `json:"crash"`
	ExpiresBy time.Duration `json:"expires_by"` // last refresh's return + ttl
	TakenAt   time.Duration `json:"taken_at"`   // next acquire's return (0: never)
	By        string        `json:"by,omitempty"`
	Unowned   time.Duration `json:"unowned"` // TakenAt - ExpiresBy
	TTL       time.Duration `json:"ttl"`
}

type window struct {
	holder     string
	start, end time.Duration
	src        []Op // ops that prove it
}

// lockRefresh is a GET that saw the client's own name and the EXPIRE→1 after it.
type lockRefresh struct{ get, exp Op }

type interval struct {
	holder     string
	start, end time.Duration
}

// CheckLocks analyses every lock key in ops (kinds lock-*).
func CheckLocks(ops []Op) LockReport {
	var rep LockReport
	byKey := map[string][]Op{}
	for _, op := range ops {
		switch op.Kind {
		case KindLockAcquire, KindLockGet, KindLockExpire, KindLockDel, KindLockCrash:
			byKey[op.Key] = append(byKey[op.Key], op)
		}
	}
	keys := slices.Sorted(maps.Keys(byKey))
	rep.Keys = len(keys)
	for _, k := range keys {
		checkLockKey(&rep, k, byKey[k])
	}
	return rep
}

func checkLockKey(rep *LockReport, key string, ops []Op) {
	SortOps(ops)
	var end time.Duration
	byHolder := map[string][]Op{}
	var acquires, dels []Op
	for _, op := range ops {
		byHolder[op.Value] = append(byHolder[op.Value], op)
		end = max(end, op.Return)
		if op.Kind == KindLockAcquire && op.Status == OK && op.Out == "OK" {
			acquires = append(acquires, op)
		}
		if op.Kind == KindLockDel && op.Status != Failed && (op.Status == Indeterminate || op.OutInt > 0) {
			dels = append(dels, op)
		}
	}
	rep.Acquisitions += len(acquires)
	holders := make([]string, 0, len(byHolder))
	for h := range byHolder {
		holders = append(holders, h)
	}
	sort.Strings(holders)

	var windows []window
	var beliefs []interval
	var refreshes []lockRefresh
	var crashes []Op
	for _, h := range holders {
		var (
			believing   bool
			beliefStart time.Duration
			lastGetSelf *Op
			pending     *window // EXPIRE→1 awaiting a confirming GET
			acquireWin  *window
		)
		stop := func(at time.Duration) {
			if believing {
				beliefs = append(beliefs, interval{h, beliefStart, at})
				believing = false
			}
		}
		for _, op := range byHolder[h] {
			switch op.Kind {
			case KindLockAcquire:
				if op.Status == OK && op.Out == "OK" {
					if !believing {
						believing, beliefStart = true, op.Return
					}
					w := window{h, op.Return, op.Call + op.TTL - windowSlack, []Op{op}}
					windows = append(windows, w)
					acquireWin, pending, lastGetSelf = &w, nil, nil
				} else if op.Status == Indeterminate {
					// It may have applied: a later GET seeing this name
					// would no longer prove that a pending EXPIRE hit it.
					pending = nil
				}
			case KindLockGet:
				if op.Status != OK {
					continue
				}
				if !op.OutNil && op.Out == h {
					if pending != nil {
						pending.src = append(pending.src, op)
						windows = append(windows, *pending)
						pending = nil
					}
					o := op
					lastGetSelf = &o
				} else {
					stop(op.Return)
					pending, lastGetSelf = nil, nil
				}
			case KindLockExpire:
				if op.Status != OK {
					continue
				}
				if op.OutInt == 0 {
					stop(op.Return)
					pending, lastGetSelf = nil, nil
					continue
				}
				if lastGetSelf != nil {
					refreshes = append(refreshes, lockRefresh{*lastGetSelf, op})
					rep.MaxGetExpire = max(rep.MaxGetExpire, op.Call-lastGetSelf.Return)
					src := []Op{*lastGetSelf, op}
					if acquireWin != nil {
						src = append([]Op{acquireWin.src[0]}, src...)
					}
					pending = &window{h, op.Return, op.Call + op.TTL - windowSlack, src}
				}
			case KindLockDel:
				stop(op.Call)
				pending, lastGetSelf = nil, nil
			case KindLockCrash:
				stop(op.Call)
				crashes = append(crashes, op)
				pending, lastGetSelf = nil, nil
			}
		}
		stop(end)
	}
	rep.Refreshes += len(refreshes)

	// A DEL that may have applied after a window's proof was applied cuts
	// the window where the DEL was sent.
	for i := range windows {
		w := &windows[i]
		proofCall := w.src[0].Call
		for _, d := range dels {
			if d.Call < w.end && d.End() > proofCall {
				w.end = min(w.end, max(d.Call, w.start))
			}
		}
	}
	var live []window
	for _, w := range windows {
		if w.end > w.start {
			live = append(live, w)
		}
	}
	windows = live

	// Server violations: overlapping certainties, and replies inside a
	// certainty that contradict it.
	for i := range windows {
		for j := i + 1; j < len(windows); j++ {
			a, b := windows[i], windows[j]
			if a.holder == b.holder {
				continue
			}
			s, e := max(a.start, b.start), min(a.end, b.end)
			if e > s {
				rep.Violations = append(rep.Violations, Violation{Checker: "lock", Key: key, At: s,
					Message: fmt.Sprintf("server granted the lock to %s and %s at once for %v", a.holder, b.holder, e-s),
					History: mergeOps(a.src, b.src)})
			}
		}
	}
	for _, w := range windows {
		for _, op := range ops {
			if op.Status != OK || op.Call < w.start || op.Return > w.end {
				continue
			}
			var bad string
			switch {
			case op.Kind == KindLockGet && (op.OutNil || op.Out != w.holder):
				bad = fmt.Sprintf("GET answered %s", show(op))
			case op.Kind == KindLockAcquire && op.Out == "OK" && op.Value != w.holder:
				bad = fmt.Sprintf("%s's SET NX succeeded", op.Value)
			case op.Kind == KindLockExpire && op.OutInt == 0:
				bad = "EXPIRE found no key"
			}
			if bad != "" {
				rep.Violations = append(rep.Violations, Violation{Checker: "lock", Key: key, At: op.Call,
					Message: fmt.Sprintf("%s while %s certainly held the lock (until %.3fs)", bad, w.holder, w.end.Seconds()),
					History: mergeOps(w.src, []Op{op})})
			}
		}
	}

	// The client-side race, measured on its own.
	for _, r := range refreshes {
		possible, certain := false, false
		for _, q := range acquires {
			if q.Value == r.get.Value {
				continue
			}
			if q.Return > r.get.Call && q.Call < r.exp.Return {
				possible = true
			}
			if q.Call > r.get.Return && q.Return < r.exp.Call {
				certain = true
			}
		}
		if possible {
			rep.RacesPossible++
		}
		if certain {
			rep.RacesCertain++
		}
	}

	// Double beliefs, each with the likeliest cause.
	for i := range beliefs {
		for j := range beliefs {
			a, b := beliefs[i], beliefs[j]
			if a.holder == b.holder || a.start > b.start || (a.start == b.start && i > j) {
				continue
			}
			s, e := max(a.start, b.start), min(a.end, b.end)
			if e <= s {
				continue
			}
			dh := DoubleHold{Key: key, First: a.holder, Second: b.holder, Start: s, End: e}
			switch {
			case covered(windows, a.holder, s):
				dh.Cause = "server"
			case raced(refreshes, acquires, a.holder, a.start, e):
				dh.Cause = "get-expire race"
			case delRaced(dels, a.holder, a.start, s):
				dh.Cause = "get-del race"
			default:
				dh.Cause = "lease expired"
			}
			rep.DoubleHolds = append(rep.DoubleHolds, dh)
		}
	}

	// Takeover after a holder died: how long the lock sat unowned.
	for _, c := range crashes {
		var last *Op
		for _, op := range byHolder[c.Value] {
			if op.Call > c.Call || op.Status != OK {
				continue
			}
			if (op.Kind == KindLockAcquire && op.Out == "OK") || (op.Kind == KindLockExpire && op.OutInt == 1) {
				o := op
				last = &o
			}
		}
		if last == nil {
			continue
		}
		t := Takeover{Key: key, Holder: c.Value, Crash: c.Call, ExpiresBy: last.Return + last.TTL, TTL: last.TTL}
		if t.ExpiresBy <= c.Call {
			continue // its lease had already run out: it died holding nothing
		}
		for _, q := range acquires {
			if q.Value != c.Value && q.Call >= c.Call {
				t.TakenAt, t.By, t.Unowned = q.Return, q.Value, q.Return-t.ExpiresBy
				break
			}
		}
		if t.TakenAt == 0 {
			if end < t.ExpiresBy {
				continue // the run ended before anyone could take it
			}
			t.Unowned = end - t.ExpiresBy
		}
		rep.Takeovers = append(rep.Takeovers, t)
	}
}

func covered(ws []window, holder string, at time.Duration) bool {
	for _, w := range ws {
		if w.holder == holder && w.start <= at && at < w.end {
			return true
		}
	}
	return false
}

// raced: one of holder's refreshes, sent while it believed and before e,
// overlapped another client's acquire.
func raced(refreshes []lockRefresh, acquires []Op, holder string, from, e time.Duration) bool {
	for _, r := range refreshes {
		if r.get.Value != holder || r.exp.Call < from || r.exp.Call > e {
			continue
		}
		for _, q := range acquires {
			if q.Value != holder && q.Return > r.get.Call && q.Call < r.exp.Return {
				return true
			}
		}
	}
	return false
}

// delRaced: another client's DEL may have removed holder's key while it
// believed, before the overlap started.
func delRaced(dels []Op, holder string, from, s time.Duration) bool {
	for _, d := range dels {
		if d.Value != holder && d.Call <= s && d.End() >= from {
			return true
		}
	}
	return false
}

func show(op Op) string {
	if op.OutNil {
		return "nil"
	}
	return fmt.Sprintf("%q", op.Out)
}

func mergeOps(a, b []Op) []Op {
	seen := map[int]bool{}
	var out []Op
	for _, op := range append(append([]Op(nil), a...), b...) {
		if !seen[op.ID] {
			seen[op.ID] = true
			out = append(out, op)
		}
	}
	SortOps(out)
	return out
}
