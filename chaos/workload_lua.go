package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// LuaIncrScript reads a JSON document, increments its field n and writes it
// back, all inside one EVAL (so inside one Raft Apply): an atomic increment
// that returns the new value.
const LuaIncrScript = `local v = redis.call('GET', KEYS[1])
local d = v and cjson.decode(v) or {n=0}
d.n = d.n + 1
redis.call('SET', KEYS[1], cjson.encode(d))
return d.n`

// LuaWorkload: Workers clients, each sending every operation to a random
// node, run LuaIncrScript (KindEvalIncr) and plain GETs of the document on a
// few keys per epoch. Checked as a counter per key (LuaCounter): for
// linearizability (every EVAL answer and read) and durability (no
// acknowledged increment lost).
type LuaWorkload struct {
	Workers, Keys int
}

func (LuaWorkload) Name() string { return "lua" }

func (w LuaWorkload) Run(ctx context.Context, env *Env) {
	env.workers(ctx, w.Workers, func(_, id int, rnd *rand.Rand) {
		clients := make([]*redis.Client, len(env.Cluster.Nodes()))
		defer func() {
			for _, cl := range clients {
				if cl != nil {
					cl.Close()
				}
			}
		}()
		for n := 0; n < env.MaxOps && pace(ctx, rnd, 15*time.Millisecond); n++ {
			node := rnd.IntN(len(clients))
			if clients[node] == nil {
				clients[node] = env.Client(node)
			}
			cl := clients[node]
			key := fmt.Sprintf("l:%d:%d", keyEpoch(env.History), rnd.IntN(w.Keys))
			octx, cancel := env.opCtx(ctx)
			if rnd.IntN(3) > 0 {
				op := env.History.Begin(id, node, KindEvalIncr, key, "")
				v, err := cl.Eval(octx, LuaIncrScript, []string{key}).Int64()
				op.OutInt = v
				env.History.End(op, err)
			} else {
				env.recordGet(octx, cl, id, node, key)
			}
			cancel()
		}
	})
}

func (LuaWorkload) Final(ctx context.Context, env *Env) map[string]FinalValue {
	return finalGets(ctx, env, "l:")
}

func (LuaWorkload) Check(_ *Env, ops []Op, final map[string]FinalValue) Findings {
	f := checkModel(LuaCounter, "l:", ops, final)
	acked := 0
	for _, op := range ops {
		if op.Kind == KindEvalIncr && op.Status == OK {
			acked++
		}
	}
	if acked == 0 {
		f.Notes = append(f.Notes, "lua: no EVAL was acknowledged; the Lua counter check proved nothing")
	}
	return f
}

// luaDurability is CheckDurability for LuaCounter keys: EVAL increments
// count as INCRs and a final document counts as its field n. A document
// that is not one reads as itself (and fails the counter check).
func luaDurability(ops []Op, final map[string]FinalValue) []Violation {
	orig := map[int]Op{}
	view := make([]Op, 0, len(ops))
	for _, op := range ops {
		if op.Kind == KindEvalIncr {
			orig[op.ID] = op
			op.Kind = KindIncr
		}
		view = append(view, op)
	}
	fin := make(map[string]FinalValue, len(final))
	for k, v := range final {
		if n, err := jsonCounter(v.Value, v.Nil); err == nil {
			v = FinalValue{Value: strconv.FormatInt(n, 10)}
		}
		fin[k] = v
	}
	out := CheckDurability(view, fin)
	for i := range out {
		for j, op := range out[i].History {
			if o, ok := orig[op.ID]; ok {
				out[i].History[j] = o
			}
		}
		if fv, ok := final[out[i].Key]; ok {
			out[i].Message += fmt.Sprintf(" (final document %q)", fv.Value)
		}
	}
	return out
}
