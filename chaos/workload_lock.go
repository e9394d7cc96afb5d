package chaos

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// LockWorkload plays Node-RED's cluster-leader node: Clients contenders, one
// per node in turn, acquire with SET NX EX, refresh with GET then EXPIRE,
// release with GET then DEL — non-atomically, exactly as the node does — and
// now and then die while holding the lock (and come back under a new name).
type LockWorkload struct {
	Clients      int
	Key          string        // default "lock:leader"
	TTL          time.Duration // whole seconds; default 3s
	Refresh      time.Duration // default 1s (the node's 2s, scaled to the TTL)
	AcquireEvery time.Duration // default 500ms
}

func (LockWorkload) Name() string { return "lock" }

func (w LockWorkload) defaults() LockWorkload {
	if w.Key == "" {
		w.Key = "lock:leader"
	}
	if w.TTL < time.Second {
		w.TTL = 3 * time.Second
	}
	if w.Refresh <= 0 {
		w.Refresh = time.Second
	}
	if w.AcquireEvery <= 0 {
		w.AcquireEvery = 500 * time.Millisecond
	}
	return w
}

func (w LockWorkload) Run(ctx context.Context, env *Env) {
	w = w.defaults()
	var wg sync.WaitGroup
	for i := range w.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.client(ctx, env, i)
		}()
	}
	wg.Wait()
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

func (w LockWorkload) client(ctx context.Context, env *Env, i int) {
	id, node := env.NewClientID(), i%len(env.Cluster.Nodes())
	rnd := env.Rand(id)
	cl := env.Client(node)
	defer cl.Close()
	h := env.History
	gen := 0
	name := fmt.Sprintf("host%d.%d", i, gen)
	secs := strconv.Itoa(int(w.TTL / time.Second))

	do := func(kind string, f func(context.Context, *Op) error) Op {
		octx, cancel := env.opCtx(ctx)
		defer cancel()
		op := h.Begin(id, node, kind, w.Key, name)
		if kind == KindLockAcquire || kind == KindLockExpire {
			op.TTL = w.TTL
		}
		return h.End(op, f(octx, &op))
	}
	get := func() Op {
		return do(KindLockGet, func(ctx context.Context, op *Op) error {
			v, err := cl.Get(ctx, w.Key).Result()
			op.Out, op.OutNil = v, errors.Is(err, redis.Nil)
			return err
		})
	}

	holding := false
	for n := 0; n < env.MaxOps && ctx.Err() == nil; n++ {
		if !holding {
			if !sleepCtx(ctx, w.AcquireEvery) {
				return
			}
			op := do(KindLockAcquire, func(ctx context.Context, op *Op) error {
				v, err := cl.Do(ctx, "SET", w.Key, name, "EX", secs, "NX").Text()
				op.Out, op.OutNil = v, errors.Is(err, redis.Nil)
				return err
			})
			holding = op.Status == OK && op.Out == "OK"
			continue
		}
		if !sleepCtx(ctx, w.Refresh) {
			return
		}
		switch r := rnd.IntN(12); {
		case r == 0: // release
			if g := get(); g.Status == OK && g.Out == name {
				do(KindLockDel, func(ctx context.Context, op *Op) error {
					v, err := cl.Del(ctx, w.Key).Result()
					op.OutInt = v
					return err
				})
			}
			holding = false
			if !sleepCtx(ctx, w.TTL) {
				return
			}
		case r == 1: // die holding the lock; come back later as a new host
			now := h.Now()
			h.Add(Op{Client: id, Node: node, Kind: KindLockCrash, Key: w.Key, Value: name, Call: now, Return: now})
			holding = false
			if !sleepCtx(ctx, w.TTL+2*w.Refresh) {
				return
			}
			gen++
			name = fmt.Sprintf("host%d.%d", i, gen)
		default: // refresh
			g := get()
			switch {
			case g.Status != OK:
				// The node ignores errors and tries again next time.
			case g.OutNil || g.Out != name:
				holding = false
			default:
				e := do(KindLockExpire, func(ctx context.Context, op *Op) error {
					v, err := cl.Expire(ctx, w.Key, w.TTL).Result()
					if v {
						op.OutInt = 1
					}
					return err
				})
				if e.Status == OK && e.OutInt == 0 {
					holding = false
				}
			}
		}
	}
}

func (LockWorkload) Final(context.Context, *Env) map[string]FinalValue { return nil }

func (LockWorkload) Check(_ *Env, ops []Op, _ map[string]FinalValue) Findings {
	rep := CheckLocks(ops)
	return Findings{Lock: &rep, Violations: rep.Violations}
}
