package chaos

import (
	"context"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Fault kinds the runner knows.
const (
	FaultKillLeader       = "kill-leader"        // kill -9 the leader, restart it
	FaultKillFollower     = "kill-follower"      // kill -9 a follower, restart it
	FaultStopLeader       = "stop-leader"        // SIGTERM the leader (graceful), restart it
	FaultPauseLeader      = "pause-leader"       // SIGSTOP the leader past the election timeout
	FaultPauseFollower    = "pause-follower"     // SIGSTOP a follower
	FaultIsolateLeader    = "isolate-leader"     // partition: leader alone
	FaultIsolateFollower  = "isolate-follower"   // partition: a follower alone
	FaultLeaderMinority   = "partition-minority" // leader in a minority group
	FaultBlackholeLeader  = "blackhole-leader"   // leader's traffic silently dropped both ways
	FaultOneWayFromLeader = "oneway-from-leader" // leader's outgoing traffic dropped
	FaultOneWayToLeader   = "oneway-to-leader"   // traffic to the leader dropped
	FaultLatency          = "latency"            // every link slowed
	FaultRestartAll       = "restart-all"        // kill -9 every node at once, restart all
	FaultKillInSnapshot   = "kill-in-snapshot"   // kill -9 a node while it writes a snapshot
)

// AllFaults is every fault kind, the default pool for random schedules.
var AllFaults = []string{
	FaultKillLeader, FaultKillFollower, FaultStopLeader, FaultPauseLeader, FaultPauseFollower,
	FaultIsolateLeader, FaultIsolateFollower, FaultLeaderMinority, FaultBlackholeLeader,
	FaultOneWayFromLeader, FaultOneWayToLeader, FaultLatency, FaultRestartAll, FaultKillInSnapshot,
}

// FaultRecord is what happened during one fault. Times are offsets on the
// history's clock.
type FaultRecord struct {
	Kind      string        `json:"kind"`
	Nodes     []string      `json:"nodes"`
	Leader    string        `json:"leader"` // leader when the fault began
	Start     time.Duration `json:"start"`
	Healed    time.Duration `json:"healed"`
	Recovered time.Duration `json:"recovered"` // a leader agreed on and a write acknowledged
	// FirstWrite is the time from Start to the first acknowledged write that
	// was sent after Start, on any node: the failover time for leader
	// faults. Filled in by the report.
	FirstWrite time.Duration `json:"first_write"`
	Note       string        `json:"note,omitempty"`
	Err        string        `json:"err,omitempty"`
}

type faulter struct {
	c      *Cluster
	h      *History
	env    *Env
	rnd    *rand.Rand
	hold   time.Duration
	logf   func(string, ...any)
	probes int
}

func (f *faulter) ids(idx ...int) []string {
	var out []string
	for _, i := range idx {
		out = append(out, f.c.Nodes()[i].ID)
	}
	return out
}

// inject applies one fault, holds it, heals it and waits for recovery.
func (f *faulter) inject(ctx context.Context, kind string) FaultRecord {
	rec := FaultRecord{Kind: kind}
	n := len(f.c.Nodes())
	leader, err := f.c.Leader(10 * time.Second)
	if err != nil {
		leader = f.rnd.IntN(n)
		rec.Note = "no agreed leader before the fault; picked a node at random. "
	}
	rec.Leader = f.c.Nodes()[leader].ID
	var others []int
	for i := range n {
		if i != leader {
			others = append(others, i)
		}
	}
	follower := others[f.rnd.IntN(len(others))]
	p := f.c.Proxy()
	hold := f.hold
	wait := func(d time.Duration) { sleepCtx(ctx, d) }
	fail := func(err error) {
		if err != nil && rec.Err == "" {
			rec.Err = err.Error()
		}
	}
	restart := func(i int) { fail(f.c.Start(i)) }

	rec.Start = f.h.Now()
	f.logf("fault %s begins (leader %s)", kind, rec.Leader)
	switch kind {
	case FaultKillLeader, FaultKillFollower, FaultStopLeader:
		victim := leader
		if kind == FaultKillFollower {
			victim = follower
		}
		rec.Nodes = f.ids(victim)
		if kind == FaultStopLeader {
			fail(f.c.Stop(victim))
		} else {
			fail(f.c.Kill(victim))
		}
		wait(hold)
		rec.Healed = f.h.Now()
		restart(victim)
	case FaultPauseLeader, FaultPauseFollower:
		victim := leader
		if kind == FaultPauseFollower {
			victim = follower
		}
		rec.Nodes = f.ids(victim)
		fail(f.c.Pause(victim))
		wait(hold)
		rec.Healed = f.h.Now()
		fail(f.c.Resume(victim))
	case FaultIsolateLeader, FaultIsolateFollower:
		victim := leader
		if kind == FaultIsolateFollower {
			victim = follower
		}
		rec.Nodes = f.ids(victim)
		p.Isolate(victim)
		wait(hold)
		rec.Healed = f.h.Now()
		p.Heal()
	case FaultLeaderMinority:
		// The leader and as many followers as still leave it a minority.
		minority := []int{leader}
		perm := f.rnd.Perm(len(others))
		for _, j := range perm[:(n-1)/2-1] {
			minority = append(minority, others[j])
		}
		var majority []int
		for _, i := range others {
			if !contains(minority, i) {
				majority = append(majority, i)
			}
		}
		rec.Nodes = f.ids(minority...)
		p.Partition(minority, majority)
		wait(hold)
		rec.Healed = f.h.Now()
		p.Heal()
	case FaultBlackholeLeader, FaultOneWayFromLeader, FaultOneWayToLeader:
		rec.Nodes = f.ids(leader)
		for _, o := range others {
			if kind != FaultOneWayToLeader {
				p.DropOneWay(leader, o)
			}
			if kind != FaultOneWayFromLeader {
				p.DropOneWay(o, leader)
			}
		}
		wait(hold)
		rec.Healed = f.h.Now()
		p.Heal()
	case FaultLatency:
		d := time.Duration(20+f.rnd.IntN(130)) * time.Millisecond
		rec.Note += fmt.Sprintf("every link +%v. ", d)
		for a := range n {
			for b := range n {
				if a != b {
					p.Delay(a, b, d)
				}
			}
		}
		wait(hold)
		rec.Healed = f.h.Now()
		p.Heal()
	case FaultRestartAll:
		all := make([]int, n)
		for i := range all {
			all[i] = i
		}
		rec.Nodes = f.ids(all...)
		f.parallel(all, func(i int) error { return f.c.Kill(i) }, fail)
		wait(time.Second)
		rec.Healed = f.h.Now()
		f.parallel(all, f.c.Start, fail)
	case FaultKillInSnapshot:
		victim := f.rnd.IntN(n)
		rec.Nodes = f.ids(victim)
		if seen := f.awaitSnapshot(ctx, victim, 15*time.Second); seen != "" {
			rec.Note += "killed while writing " + seen + ". "
		} else {
			rec.Note += "no snapshot was being written within 15s; killed anyway. "
		}
		fail(f.c.Kill(victim))
		wait(hold)
		rec.Healed = f.h.Now()
		restart(victim)
	default:
		rec.Err = "unknown fault kind"
		rec.Healed = f.h.Now()
	}
	f.recover(ctx, &rec)
	f.logf("fault %s over: healed at %.1fs, recovered at %.1fs %s%s", kind, rec.Healed.Seconds(), rec.Recovered.Seconds(), rec.Note, rec.Err)
	return rec
}

func contains(s []int, x int) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}

func (f *faulter) parallel(idx []int, op func(int) error, fail func(error)) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, i := range idx {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := op(i)
			mu.Lock()
			fail(err)
			mu.Unlock()
		}()
	}
	wg.Wait()
}

// awaitSnapshot polls node i's data dir until a snapshot is being written
// (hashicorp/raft writes snapshots/<name>.tmp and renames it when done) and
// returns its name, or "" after timeout.
func (f *faulter) awaitSnapshot(ctx context.Context, i int, timeout time.Duration) string {
	dir := filepath.Join(f.c.Nodes()[i].DataDir, "snapshots")
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		found := ""
		_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err == nil && strings.HasSuffix(d.Name(), ".tmp") {
				found = d.Name()
				return fs.SkipAll
			}
			return nil
		})
		if found != "" {
			return found
		}
		time.Sleep(time.Millisecond)
	}
	return ""
}

// recover heals anything left broken, notes nodes that died by themselves,
// and waits (bounded) for an agreed leader and an acknowledged write.
func (f *faulter) recover(ctx context.Context, rec *FaultRecord) {
	for i, n := range f.c.Nodes() {
		if f.c.Paused(i) {
			_ = f.c.Resume(i)
		}
		if !f.c.Alive(i) {
			if !strings.Contains(rec.Err, "did not exit") {
				rec.Note += fmt.Sprintf("%s was found dead and restarted; its last output:\n%s\n", n.ID, indent(lastLines(f.c.LogTail(i), 8)))
			}
			if err := f.c.Start(i); err != nil && rec.Err == "" {
				rec.Err = err.Error()
			}
		}
	}
	if p := f.c.Proxy(); p != nil {
		p.Heal()
	}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		l, err := f.c.Leader(time.Until(deadline))
		if err != nil {
			break
		}
		if f.probe(ctx, l) {
			rec.Recovered = f.h.Now()
			return
		}
	}
	if rec.Err == "" {
		rec.Err = "cluster did not recover within 60s of healing"
	}
}

// probe writes a fresh d: key through node i; the durability check covers it.
func (f *faulter) probe(ctx context.Context, i int) bool {
	f.probes++
	cl := f.env.Client(i)
	defer cl.Close()
	id := f.env.NewClientID()
	key := fmt.Sprintf("d:p:%d", f.probes)
	octx, cancel := f.env.opCtx(ctx)
	defer cancel()
	op := f.h.Begin(id, i, KindSet, key, "probe")
	return f.h.End(op, cl.Set(octx, key, op.Value, 0).Err()).Status == OK
}

func lastLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

func indent(s string) string {
	return "      " + strings.ReplaceAll(s, "\n", "\n      ")
}
