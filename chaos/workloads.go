package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Env is what a workload runs against.
type Env struct {
	Cluster *Cluster
	History *History
	Seed    uint64
	// OpTimeout bounds one client operation (the client's read timeout).
	OpTimeout time.Duration
	// MaxOps bounds the operations of one worker, whatever the duration.
	MaxOps int
	// Faults is what the run injected, set before the checks (the pub/sub
	// check excuses gaps on nodes that were cut off).
	Faults  []FaultRecord
	clients atomic.Int64
}

// NewClientID hands out client numbers, unique within a run.
func (e *Env) NewClientID() int { return int(e.clients.Add(1)) }

// Rand returns a generator seeded from the run's seed and a worker number,
// so a run's choices are reproducible per worker.
func (e *Env) Rand(worker int) *rand.Rand {
	return rand.New(rand.NewPCG(e.Seed, uint64(worker)*0x9e3779b97f4a7c15+1))
}

// Client returns a client for node i (see NewClient).
func (e *Env) Client(i int) *redis.Client { return NewClient(e.Cluster, i, e.OpTimeout) }

// opCtx bounds one operation a little beyond the client's own timeout, so
// the client's timeout (an indeterminate outcome) normally fires first.
func (e *Env) opCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, e.OpTimeout+2*time.Second)
}

// Workload issues operations against the cluster and records them in the
// history. Run returns when ctx is done. After the final heal, Final reads
// back what the workload wrote (recording reads as ops where a model covers
// them), and Check judges the whole history with those final values.
type Workload interface {
	Name() string
	Run(ctx context.Context, env *Env)
	Final(ctx context.Context, env *Env) map[string]FinalValue
	Check(env *Env, ops []Op, final map[string]FinalValue) Findings
}

// Findings is what a workload's check found.
type Findings struct {
	Violations []Violation
	Lin        *LinReport
	Lock       *LockReport
	PubSub     *PubSubReport
	Notes      []string
}

// checkModel runs the linearizability and durability checks for the ops on
// keys with prefix.
func checkModel(kind ModelKind, prefix string, ops []Op, final map[string]FinalValue) Findings {
	var mine []Op
	for _, op := range ops {
		if len(op.Key) >= len(prefix) && op.Key[:len(prefix)] == prefix {
			mine = append(mine, op)
		}
	}
	lin := CheckLinearizable(kind, mine, time.Minute)
	f := Findings{Lin: &lin, Violations: append([]Violation(nil), lin.Violations...)}
	if kind == LuaCounter {
		f.Violations = append(f.Violations, luaDurability(mine, final)...)
	} else {
		f.Violations = append(f.Violations, CheckDurability(mine, final)...)
	}
	for _, k := range lin.Inconclusive {
		f.Notes = append(f.Notes, fmt.Sprintf("%s %s: linearizability check timed out (inconclusive)", kind, k))
	}
	return f
}

// pace waits a little between a worker's operations (and returns false when
// the run is over): a steady, modest rate keeps histories checkable.
func pace(ctx context.Context, rnd *rand.Rand, upTo time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(time.Duration(rnd.Int64N(int64(upTo)) + 1)):
		return true
	}
}

// keyEpoch rotates keys every few seconds: porcupine's search grows with the
// number of operations that are concurrent in one key's history, and an
// indeterminate operation stays open to the end of it.
func keyEpoch(h *History) int { return int(h.Now() / (8 * time.Second)) }

// RegisterWorkload: SET unique values and GET them on a few keys per epoch,
// from Workers clients spread over the nodes. Checked for linearizability
// and durability.
type RegisterWorkload struct {
	Workers, Keys int
}

func (RegisterWorkload) Name() string { return "register" }

func (w RegisterWorkload) Run(ctx context.Context, env *Env) {
	env.workers(ctx, w.Workers, func(i, id int, rnd *rand.Rand) {
		node := i % len(env.Cluster.Nodes())
		cl := env.Client(node)
		defer cl.Close()
		for n := 0; n < env.MaxOps && pace(ctx, rnd, 10*time.Millisecond); n++ {
			key := fmt.Sprintf("r:%d:%d", keyEpoch(env.History), rnd.IntN(w.Keys))
			octx, cancel := env.opCtx(ctx)
			if rnd.IntN(2) == 0 {
				op := env.History.Begin(id, node, KindSet, key, fmt.Sprintf("c%d-%d", id, n))
				env.History.End(op, cl.Set(octx, key, op.Value, 0).Err())
			} else {
				env.recordGet(octx, cl, id, node, key)
			}
			cancel()
		}
	})
}

func (RegisterWorkload) Final(ctx context.Context, env *Env) map[string]FinalValue {
	return finalGets(ctx, env, "r:")
}

func (RegisterWorkload) Check(_ *Env, ops []Op, final map[string]FinalValue) Findings {
	return checkModel(Register, "r:", ops, final)
}

// CounterWorkload: INCR and GET on a few keys per epoch. Checked for
// linearizability (every INCR answer and read) and durability (no
// acknowledged increment lost).
type CounterWorkload struct {
	Workers, Keys int
}

func (CounterWorkload) Name() string { return "counter" }

func (w CounterWorkload) Run(ctx context.Context, env *Env) {
	env.workers(ctx, w.Workers, func(i, id int, rnd *rand.Rand) {
		node := i % len(env.Cluster.Nodes())
		cl := env.Client(node)
		defer cl.Close()
		for n := 0; n < env.MaxOps && pace(ctx, rnd, 15*time.Millisecond); n++ {
			key := fmt.Sprintf("c:%d:%d", keyEpoch(env.History), rnd.IntN(w.Keys))
			octx, cancel := env.opCtx(ctx)
			if rnd.IntN(3) > 0 {
				op := env.History.Begin(id, node, KindIncr, key, "")
				v, err := cl.Incr(octx, key).Result()
				op.OutInt = v
				env.History.End(op, err)
			} else {
				env.recordGet(octx, cl, id, node, key)
			}
			cancel()
		}
	})
}

// workers runs body in n goroutines, each with its own client id and
// random source, and waits for all of them.
func (env *Env) workers(ctx context.Context, n int, body func(i, id int, rnd *rand.Rand)) {
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := env.NewClientID()
			body(i, id, env.Rand(id))
		}()
	}
	wg.Wait()
}

// recordGet is a GET recorded in the history: the read half of the
// register, counter and Lua workloads.
func (env *Env) recordGet(ctx context.Context, cl *redis.Client, id, node int, key string) {
	op := env.History.Begin(id, node, KindGet, key, "")
	v, err := cl.Get(ctx, key).Result()
	op.Out, op.OutNil = v, errors.Is(err, redis.Nil)
	env.History.End(op, err)
}

func (CounterWorkload) Final(ctx context.Context, env *Env) map[string]FinalValue {
	return finalGets(ctx, env, "c:")
}

func (CounterWorkload) Check(_ *Env, ops []Op, final map[string]FinalValue) Findings {
	return checkModel(Counter, "c:", ops, final)
}

// DurabilityWorkload: one writer per node SETs fresh keys in sequence; after
// the final heal every acknowledged key must be there, on every node.
type DurabilityWorkload struct{}

func (DurabilityWorkload) Name() string { return "durability" }

func (DurabilityWorkload) Run(ctx context.Context, env *Env) {
	var wg sync.WaitGroup
	for node := range env.Cluster.Nodes() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := env.NewClientID()
			rnd := env.Rand(id)
			cl := env.Client(node)
			defer cl.Close()
			for n := 0; n < env.MaxOps && pace(ctx, rnd, 20*time.Millisecond); n++ {
				key := fmt.Sprintf("d:%d:%d", id, n)
				octx, cancel := env.opCtx(ctx)
				op := env.History.Begin(id, node, KindSet, key, fmt.Sprintf("v%d", n))
				env.History.End(op, cl.Set(octx, key, op.Value, 0).Err())
				cancel()
			}
		}()
	}
	wg.Wait()
}

// Final reads every d: key with MGET from every node: a follower that lost
// what the leader acknowledged is as much a loss as the leader losing it.
// The reads are not ops (MGET is outside the register model); the values
// come back per node as "nX|key" entries, checked by Check.
func (DurabilityWorkload) Final(ctx context.Context, env *Env) map[string]FinalValue {
	var keys []string
	for _, op := range env.History.Ops() {
		if op.Kind == KindSet && len(op.Key) > 2 && op.Key[:2] == "d:" && op.Status != Failed {
			keys = append(keys, op.Key)
		}
	}
	out := map[string]FinalValue{}
	for node, n := range env.Cluster.Nodes() {
		if !env.Cluster.Alive(node) {
			continue // Check reports its keys as unreadable
		}
		cl := env.Client(node)
		for start := 0; start < len(keys); start += 500 {
			batch := keys[start:min(start+500, len(keys))]
			vals, err := retryRead(ctx, func(ctx context.Context) ([]any, error) { return cl.MGet(ctx, batch...).Result() })
			if err != nil {
				break // the node does not answer: give up on it
			}
			for i, v := range vals {
				s, ok := v.(string)
				out[n.ID+"|"+batch[i]] = FinalValue{Value: s, Nil: !ok}
			}
		}
		cl.Close()
	}
	return out
}

// Check holds every node's copy of the d: keys to CheckDurability, and
// reports keys that could not be read back at all.
func (DurabilityWorkload) Check(env *Env, ops []Op, final map[string]FinalValue) Findings {
	var f Findings
	var mine []Op
	for _, op := range ops {
		if len(op.Key) > 2 && op.Key[:2] == "d:" && op.Status != Failed {
			mine = append(mine, op)
		}
	}
	for _, n := range env.Cluster.Nodes() {
		per := map[string]FinalValue{}
		missing := 0
		for _, op := range mine {
			v, ok := final[n.ID+"|"+op.Key]
			if !ok {
				missing++
				continue
			}
			per[op.Key] = v
		}
		for _, v := range CheckDurability(mine, per) {
			v.Message = "on " + n.ID + ": " + v.Message
			f.Violations = append(f.Violations, v)
		}
		if missing > 0 {
			f.Violations = append(f.Violations, Violation{Checker: "durability", Key: "d:*",
				Message: fmt.Sprintf("%d keys could not be read back from %s after the final heal", missing, n.ID)})
		}
	}
	return f
}

// retryRead repeats an idempotent read until it succeeds or ~30 s pass.
func retryRead[T any](ctx context.Context, f func(context.Context) (T, error)) (T, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		octx, cancel := context.WithTimeout(ctx, 10*time.Second)
		v, err := f(octx)
		cancel()
		if err == nil || errors.Is(err, redis.Nil) || time.Now().After(deadline) || ctx.Err() != nil {
			return v, err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// finalGets reads every key with the prefix that the history touched, once
// through every node, recording the reads as ops (so the linearizability
// check covers them), and returns the values read through the last node.
func finalGets(ctx context.Context, env *Env, prefix string) map[string]FinalValue {
	seen := map[string]bool{}
	var keys []string
	for _, op := range env.History.Ops() {
		if len(op.Key) >= len(prefix) && op.Key[:len(prefix)] == prefix && !seen[op.Key] {
			seen[op.Key] = true
			keys = append(keys, op.Key)
		}
	}
	out := map[string]FinalValue{}
	for node := range env.Cluster.Nodes() {
		if !env.Cluster.Alive(node) {
			continue
		}
		id := env.NewClientID()
		cl := env.Client(node)
		for _, key := range keys {
			var last Op
			_, _ = retryRead(ctx, func(ctx context.Context) (string, error) {
				op := env.History.Begin(id, node, KindGet, key, "")
				v, err := cl.Get(ctx, key).Result()
				op.Out, op.OutNil = v, errors.Is(err, redis.Nil)
				last = env.History.End(op, err)
				return v, err
			})
			if last.Status != OK {
				break // the node does not answer: give up on it
			}
			out[key] = FinalValue{Value: last.Out, Nil: last.OutNil}
		}
		cl.Close()
	}
	return out
}
