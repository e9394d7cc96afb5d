package main

// Lua scripting on real 3-node clusters (DESIGN.md "Lua"): scripts run
// inside Apply on every node, the script cache is replicated state, and a
// runaway script fails deterministically (the same budget error on every
// node) without wedging the cluster. Replies are compared with redis-server
// by the differential corpus (testdata/differential/9x_*.txt); these tests
// are about replication: concurrency, the cache across nodes, budgets.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redraft/redraft/chaos"
	"github.com/redraft/redraft/lua"
)

// The Node-RED context store's nested set and nested delete (COMPAT.md
// section 2), shared with the lua package's tests and the ioredis tests.
var (
	scNestedSet    = readLuaScript("../../lua/testdata/nodered_context_set.lua")
	scNestedDelete = readLuaScript("../../lua/testdata/nodered_context_delete.lua")
)

func readLuaScript(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		panic(err)
	}
	return strings.TrimSuffix(string(b), "\n")
}

const (
	// INCRBY through a script.
	scIncr = `return redis.call('INCRBY', KEYS[1], ARGV[1])`

	// Two counters bumped in one script: they can only stay equal if
	// scripts are atomic on every node.
	scPair = `local a = redis.call('INCR', KEYS[1])
local b = redis.call('INCR', KEYS[2])
if a ~= b then return redis.error_reply('PAIR diverged ' .. a .. ' ' .. b) end
return a`

	// A JSON read-modify-write: a global sequence and a per-worker count.
	scJSON = `local raw = redis.call('GET', KEYS[1])
local d = raw and cjson.decode(raw) or {n = 0, by = {}}
d.n = d.n + 1
d.by[ARGV[1]] = (d.by[ARGV[1]] or 0) + 1
d.last = ARGV[1]
redis.call('SET', KEYS[1], cjson.encode(d))
return d.n`
)

// scClients returns one go-redis client per node.
func scClients(t *testing.T, c *chaos.Cluster) []*redis.Client {
	t.Helper()
	out := make([]*redis.Client, len(c.Nodes()))
	for i := range out {
		out[i] = client(t, c, i)
	}
	return out
}

// The same scripts from several goroutines through random nodes for a few
// seconds: every node ends in the same state (DEBUG DIGEST), and the state
// is what the acknowledged scripts say it must be.
func TestScriptingConcurrentConverge(t *testing.T) {
	c := startCluster(t, 3)
	ctx := context.Background()
	nodes := scClients(t, c)

	incrSha, err := nodes[0].ScriptLoad(ctx, scIncr).Result()
	if err != nil {
		t.Fatalf("SCRIPT LOAD: %v", err)
	}
	if incrSha != lua.SHA1Hex([]byte(scIncr)) {
		t.Fatalf("SCRIPT LOAD returned %s, want the body's sha1 %s", incrSha, lua.SHA1Hex([]byte(scIncr)))
	}
	incrScript := redis.NewScript(scIncr)        // EVALSHA, EVAL on NOSCRIPT
	setScript := redis.NewScript(scNestedSet)    // never loaded: first use falls back to EVAL
	delScript := redis.NewScript(scNestedDelete) // idem

	const (
		workers  = 6
		counters = 4
		ctxKeys  = 3
		duration = 3 * time.Second
	)
	type result struct {
		incr      [counters]int64 // acknowledged increments per counter
		pair      []int64         // replies of scPair
		json      []int64         // replies of scJSON, in order
		lastSeq   [ctxKeys]int    // last acknowledged nested-set seq per context key (0: none)
		ops, errs int
		firstErrs []string
	}
	results := make([]result, workers)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			res := &results[w]
			rng := rand.New(rand.NewSource(int64(w) + 1))
			name := fmt.Sprintf("w%d", w)
			fail := func(what string, err error) {
				res.errs++
				if len(res.firstErrs) < 5 {
					res.firstErrs = append(res.firstErrs, fmt.Sprintf("%s: %s: %v", name, what, err))
				}
			}
			seq := 0
			for {
				select {
				case <-stop:
					return
				default:
				}
				r := nodes[rng.Intn(len(nodes))]
				res.ops++
				switch op := rng.Intn(10); {
				case op < 3: // counters: EVAL, EVALSHA, or EVALSHA with fallback
					k, d := rng.Intn(counters), int64(1+rng.Intn(5))
					key := "sc:counter:" + strconv.Itoa(k)
					var err error
					switch op {
					case 0:
						err = r.Eval(ctx, scIncr, []string{key}, d).Err()
					case 1:
						err = r.EvalSha(ctx, incrSha, []string{key}, d).Err()
					default:
						err = incrScript.Run(ctx, r, []string{key}, d).Err()
					}
					if err != nil {
						fail("incr", err)
						continue
					}
					res.incr[k] += d
				case op < 5:
					n, err := r.Eval(ctx, scPair, []string{"sc:pair:a", "sc:pair:b"}).Int64()
					if err != nil {
						fail("pair", err)
						continue
					}
					res.pair = append(res.pair, n)
				case op < 7:
					n, err := r.Eval(ctx, scJSON, []string{"sc:json"}, name).Int64()
					if err != nil {
						fail("json", err)
						continue
					}
					res.json = append(res.json, n)
				default: // Node-RED context: each worker owns the subtree <name>
					k := rng.Intn(ctxKeys)
					key := "nodered:context:global:sc" + strconv.Itoa(k)
					seq++
					val := fmt.Sprintf(`{"seq":%d,"at":"a/b","f":%d.5}`, seq, seq)
					if err := setScript.Run(ctx, r, []string{key}, name+".state", val).Err(); err != nil {
						fail("nested set", err)
						continue
					}
					res.lastSeq[k] = seq
					if err := setScript.Run(ctx, r, []string{key}, name+".tmp.x", "[1,2]").Err(); err != nil {
						fail("nested set tmp", err)
						continue
					}
					if n, err := delScript.Run(ctx, r, []string{key}, name+".tmp").Int64(); err != nil || n != 1 {
						fail("nested delete", fmt.Errorf("reply %d, err %v", n, err))
					}
				}
			}
		}(w)
	}
	time.Sleep(duration)
	close(stop)
	wg.Wait()

	var want [counters]int64
	var pairs, jsons []int64
	wantBy := map[string]int64{}
	ops := 0
	for w, res := range results {
		ops += res.ops
		if res.errs > 0 {
			t.Errorf("worker %d: %d of %d scripts failed on a healthy cluster, e.g.\n  %s", w, res.errs, res.ops, strings.Join(res.firstErrs, "\n  "))
		}
		for k := range want {
			want[k] += res.incr[k]
		}
		pairs = append(pairs, res.pair...)
		jsons = append(jsons, res.json...)
		wantBy[fmt.Sprintf("w%d", w)] = int64(len(res.json))
		for i := 1; i < len(res.json); i++ {
			if res.json[i] <= res.json[i-1] {
				t.Errorf("worker %d: JSON sequence went backwards: %d after %d", w, res.json[i], res.json[i-1])
			}
		}
	}
	t.Logf("%d scripts in %v through 3 nodes (%d pair, %d json)", ops, duration, len(pairs), len(jsons))
	if len(pairs) == 0 || len(jsons) == 0 {
		t.Fatalf("no acknowledged scripts: pair %d, json %d", len(pairs), len(jsons))
	}
	// Every acknowledged atomic script saw a value no other script saw.
	for what, replies := range map[string][]int64{"pair": pairs, "json": jsons} {
		seen := map[int64]bool{}
		for _, n := range replies {
			if seen[n] {
				t.Errorf("%s: two scripts returned %d", what, n)
			}
			seen[n] = true
		}
	}

	assertConverged(t, c)

	for i, r := range scClients(t, c) {
		for k := range want {
			key := "sc:counter:" + strconv.Itoa(k)
			if got, err := r.Get(ctx, key).Int64(); err != nil && want[k] != 0 || got != want[k] {
				t.Errorf("node %d: %s = %d (%v), want %d acknowledged increments", i, key, got, err, want[k])
			}
		}
		vals, err := r.MGet(ctx, "sc:pair:a", "sc:pair:b").Result()
		if err != nil || fmt.Sprint(vals) != fmt.Sprint([]any{strconv.Itoa(len(pairs)), strconv.Itoa(len(pairs))}) {
			t.Errorf("node %d: pair counters %v (%v), want both %d", i, vals, err, len(pairs))
		}
		raw, err := r.Get(ctx, "sc:json").Result()
		var doc struct {
			N  int64            `json:"n"`
			By map[string]int64 `json:"by"`
		}
		if err != nil || json.Unmarshal([]byte(raw), &doc) != nil {
			t.Errorf("node %d: sc:json = %q (%v)", i, raw, err)
		} else if doc.N != int64(len(jsons)) || fmt.Sprint(doc.By) != fmt.Sprint(wantBy) {
			t.Errorf("node %d: sc:json n=%d by=%v, want n=%d by=%v", i, doc.N, doc.By, len(jsons), wantBy)
		}
		for k := 0; k < ctxKeys; k++ {
			key := "nodered:context:global:sc" + strconv.Itoa(k)
			raw, err := r.Get(ctx, key).Result()
			var doc map[string]struct {
				State *struct {
					Seq int    `json:"seq"`
					At  string `json:"at"`
				} `json:"state"`
				Tmp any `json:"tmp"`
			}
			if err != nil || json.Unmarshal([]byte(raw), &doc) != nil {
				t.Errorf("node %d: %s = %q (%v)", i, key, raw, err)
				continue
			}
			if strings.Contains(raw, "a/b") || !strings.Contains(raw, `a\/b`) {
				t.Errorf("node %d: %s: cjson must escape / as \\/: %s", i, key, raw)
			}
			for w, res := range results {
				sub, ok := doc[fmt.Sprintf("w%d", w)]
				switch {
				case res.lastSeq[k] == 0 && ok:
					t.Errorf("node %d: %s has w%d, which never wrote it: %s", i, key, w, raw)
				case res.lastSeq[k] == 0:
				case !ok || sub.State == nil || sub.State.Seq != res.lastSeq[k] || sub.State.At != "a/b":
					t.Errorf("node %d: %s: w%d.state wants seq %d: %s", i, key, w, res.lastSeq[k], raw)
				case sub.Tmp != nil:
					t.Errorf("node %d: %s: w%d.tmp was deleted, still there: %s", i, key, w, raw)
				}
			}
		}
		// Every body a script ran is in every node's cache (EVAL caches
		// through the log too).
		shas := []string{incrSha, lua.SHA1Hex([]byte(scPair)), lua.SHA1Hex([]byte(scJSON)),
			setScript.Hash(), delScript.Hash()}
		exists, err := r.ScriptExists(ctx, shas...).Result()
		if err != nil || fmt.Sprint(exists) != "[true true true true true]" {
			t.Errorf("node %d: SCRIPT EXISTS %v: %v %v", i, shas, exists, err)
		}
	}
}

func scIsNoScript(err error) bool {
	return err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT ")
}

// SCRIPT LOAD on one node: EVALSHA (through the log) and EVALSHA_RO (on the
// read path) work at once on every other node. SCRIPT FLUSH on one node:
// NOSCRIPT everywhere. A node that was down catches up on both.
func TestScriptingCacheAcrossNodes(t *testing.T) {
	c := startCluster(t, 3)
	ctx := context.Background()
	nodes := scClients(t, c)

	var shas []string
	for loader := range nodes {
		body := fmt.Sprintf("return {'loaded on node %d', KEYS[1], ARGV[1]}", loader)
		sha, err := nodes[loader].ScriptLoad(ctx, body).Result()
		if err != nil || sha != lua.SHA1Hex([]byte(body)) {
			t.Fatalf("SCRIPT LOAD on node %d: %q %v", loader, sha, err)
		}
		shas = append(shas, sha)
		want := fmt.Sprintf("[loaded on node %d k%d a]", loader, loader)
		for j, r := range nodes {
			if j == loader {
				continue
			}
			// No waiting and no retries: the very next command on another node.
			got, err := r.EvalSha(ctx, sha, []string{"k" + strconv.Itoa(loader)}, "a").Result()
			if err != nil || fmt.Sprint(got) != want {
				t.Errorf("SCRIPT LOAD on node %d, EVALSHA on node %d: %v %v, want %s", loader, j, got, err, want)
			}
			got, err = nodes[(j+1)%3].EvalShaRO(ctx, sha, []string{"k" + strconv.Itoa(loader)}, "a").Result()
			if err != nil || fmt.Sprint(got) != want {
				t.Errorf("SCRIPT LOAD on node %d, EVALSHA_RO on node %d: %v %v, want %s", loader, (j+1)%3, got, err, want)
			}
		}
	}
	// EVAL caches the body: its sha works at once elsewhere.
	body := `return redis.call('SET', KEYS[1], ARGV[1])`
	if err := nodes[2].Eval(ctx, body, []string{"sc:evalcached"}, "v").Err(); err != nil {
		t.Fatalf("EVAL: %v", err)
	}
	evalSha := lua.SHA1Hex([]byte(body))
	shas = append(shas, evalSha)
	for j := 0; j < 2; j++ {
		if got, err := nodes[j].EvalSha(ctx, evalSha, []string{"sc:evalcached"}, fmt.Sprint("v", j)).Result(); err != nil || got != "OK" {
			t.Errorf("EVAL on node 2, EVALSHA on node %d: %v %v", j, got, err)
		}
	}
	for i, r := range nodes {
		if exists, err := r.ScriptExists(ctx, shas...).Result(); err != nil || fmt.Sprint(exists) != "[true true true true]" {
			t.Errorf("node %d: SCRIPT EXISTS %v %v", i, exists, err)
		}
	}

	// SCRIPT FLUSH on one node empties every node's cache at once.
	if err := nodes[1].ScriptFlush(ctx).Err(); err != nil {
		t.Fatalf("SCRIPT FLUSH: %v", err)
	}
	for i, r := range nodes {
		for _, sha := range shas {
			if err := r.EvalSha(ctx, sha, []string{"k"}, "a").Err(); !scIsNoScript(err) {
				t.Errorf("after SCRIPT FLUSH on node 1: EVALSHA %s on node %d: %v, want NOSCRIPT", sha, i, err)
			}
			if err := r.EvalShaRO(ctx, sha, []string{"k"}, "a").Err(); !scIsNoScript(err) {
				t.Errorf("after SCRIPT FLUSH on node 1: EVALSHA_RO %s on node %d: %v, want NOSCRIPT", sha, i, err)
			}
		}
		if exists, err := r.ScriptExists(ctx, shas...).Result(); err != nil || fmt.Sprint(exists) != "[false false false false]" {
			t.Errorf("after SCRIPT FLUSH: node %d: SCRIPT EXISTS %v %v", i, exists, err)
		}
	}

	// A node that was down: a script loaded before, a flush and a load
	// while it was away. It must end with exactly the cluster's cache.
	leader, err := c.Leader(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	down := (leader + 1) % 3
	up := []int{leader, (leader + 2) % 3}
	before, err := nodes[down].ScriptLoad(ctx, "return 'before'").Result()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Kill(down); err != nil {
		t.Fatal(err)
	}
	if err := nodes[up[1]].ScriptFlush(ctx).Err(); err != nil {
		t.Fatalf("SCRIPT FLUSH with a node down: %v", err)
	}
	during, err := nodes[up[0]].ScriptLoad(ctx, "return 'during'").Result()
	if err != nil {
		t.Fatalf("SCRIPT LOAD with a node down: %v", err)
	}
	if err := c.Start(down); err != nil {
		t.Fatal(err)
	}
	r := client(t, c, down) // a new address after the restart
	if err := r.EvalShaRO(ctx, before, nil).Err(); !scIsNoScript(err) {
		t.Errorf("restarted node %d: EVALSHA_RO of a script flushed while it was down: %v, want NOSCRIPT", down, err)
	}
	if got, err := r.EvalShaRO(ctx, during, nil).Result(); err != nil || got != "during" {
		t.Errorf("restarted node %d: EVALSHA_RO of a script loaded while it was down: %v %v", down, got, err)
	}
	assertConverged(t, c)
}

// A runaway script (endless loop, unbounded memory) fails with the budget
// error, the same reply through every node, because the budget is counted,
// not timed. Afterwards the cluster serves writes and reads and converges.
func TestScriptingRunawayBudget(t *testing.T) {
	const steps, mem = 2000000, 16 << 20
	c := startCluster(t, 3, "--lua-max-steps", strconv.Itoa(steps), "--lua-max-memory", strconv.Itoa(mem))
	ctx := context.Background()
	nodes := scClients(t, c)
	stepErr := fmt.Sprintf("ERR script exceeded its step budget (%d VM steps) script: ", steps)
	memErr := fmt.Sprintf("ERR script exceeded its memory budget (%d bytes) script: ", mem)

	// A writer keeps going through the other nodes while the runaways run:
	// the cluster must not wedge.
	stop := make(chan struct{})
	writerDone := make(chan error, 1)
	var writes int
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				writerDone <- nil
				return
			default:
			}
			if err := nodes[i%3].Incr(ctx, "sc:alive").Err(); err != nil {
				writerDone <- fmt.Errorf("INCR via node %d during runaway scripts: %w", i%3, err)
				return
			}
			writes++
		}
	}()

	cases := []struct {
		name, body, want string
		ro               bool
	}{
		{"empty loop", `while true do end`, stepErr, false},
		{"counting loop", `local n = 0 while true do n = n + 1 end`, stepErr, false},
		{"loop inside pcall", `return pcall(function() while true do end end)`, stepErr, false},
		{"string doubling", `local s = 'x' while true do s = s .. s end`, memErr, false},
		{"growing table", `local t = {} local i = 0 while true do i = i + 1 t[i] = {i, tostring(i)} end`, "", false},
		{"string.rep", `return #string.rep('x', 1e9)`, memErr, false},
		{"write then loop", `redis.call('SET', KEYS[1], 'partial') redis.call('INCR', KEYS[2]) while true do end`, stepErr, false},
		{"read-only loop", `while true do end`, stepErr, true},
		{"read-only doubling", `local s = redis.call('GET', KEYS[1]) or 'y' while true do s = s .. s end`, memErr, true},
	}
	for _, tc := range cases {
		sha := lua.SHA1Hex([]byte(tc.body))
		var replies []string
		for i, r := range nodes {
			var err error
			var got any
			if tc.ro {
				got, err = r.EvalRO(ctx, tc.body, []string{"sc:partial", "sc:partialcount"}).Result()
			} else {
				got, err = r.Eval(ctx, tc.body, []string{"sc:partial", "sc:partialcount"}).Result()
			}
			var rerr redis.Error
			if !errors.As(err, &rerr) {
				t.Errorf("%s via node %d: got %v %v, want a budget error", tc.name, i, got, err)
				replies = append(replies, fmt.Sprint(err))
				continue
			}
			replies = append(replies, err.Error())
		}
		for i, reply := range replies {
			if reply != replies[0] {
				t.Errorf("%s: node %d replied %q, node 0 %q: a runaway script must fail the same way everywhere", tc.name, i, reply, replies[0])
			}
		}
		want := tc.want
		if want == "" {
			want = "ERR script exceeded its " // either budget, as long as it is the same everywhere
		}
		if !strings.HasPrefix(replies[0], want) || !strings.Contains(replies[0], sha) {
			t.Errorf("%s: %q, want %q... with the script's sha %s", tc.name, replies[0], want, sha)
		}
		t.Logf("%s: %s", tc.name, replies[0])
	}
	// The same through EVALSHA.
	sha, err := nodes[1].ScriptLoad(ctx, `while true do end`).Result()
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range nodes {
		if err := r.EvalSha(ctx, sha, nil).Err(); err == nil || !strings.HasPrefix(err.Error(), stepErr) {
			t.Errorf("EVALSHA of a runaway script via node %d: %v", i, err)
		}
	}

	close(stop)
	if err := <-writerDone; err != nil {
		t.Error(err)
	}
	t.Logf("%d INCRs went through while the runaway scripts ran", writes)

	// Still serving writes, reads and scripts through every node.
	for i, r := range nodes {
		key := fmt.Sprintf("sc:after:%d", i)
		if err := r.Set(ctx, key, "ok", 0).Err(); err != nil {
			t.Fatalf("SET via node %d after runaway scripts: %v", i, err)
		}
		for j, r2 := range nodes {
			if got, err := r2.Get(ctx, key).Result(); err != nil || got != "ok" {
				t.Errorf("SET via node %d, GET via node %d: %q %v", i, j, got, err)
			}
		}
		if n, err := r.Eval(ctx, scIncr, []string{"sc:after:count"}, 1).Int64(); err != nil || n != int64(i+1) {
			t.Errorf("EVAL via node %d after runaway scripts: %d %v, want %d", i, n, err, i+1)
		}
	}
	assertConverged(t, c)
	// Whatever the aborted script left behind, it is the same everywhere
	// (the digests agree); log it for the report.
	partial, _ := nodes[0].MGet(ctx, "sc:partial", "sc:partialcount").Result()
	t.Logf("after 'write then loop' aborted 3 times: sc:partial, sc:partialcount = %v", partial)
}

// Known bug, off by default (REDRAFT_TEST_KNOWN_BUGS=1 runs it): the step
// budget does not bound the time of deeply nested pcall. Nesting pcall to
// depth d costs about d^2 (8192 levels: ~0.16 s on one idle node), so
// with --lua-max-steps 2000000 this script holds Apply for ~14 s on every
// node (the empty loop: ~30 ms), and about ten times that with the default
// budget; on a 3-node cluster on 2 cores the leader steps down and clients
// time out or get UNCERTAIN. A budget "counted, not timed" must charge for
// this work.
func TestScriptingRunawayNestedPcall(t *testing.T) {
	const steps = 2000000
	c := startCluster(t, 3, "--lua-max-steps", strconv.Itoa(steps))
	ctx := context.Background()
	nodes := scClients(t, c)
	base := time.Now()
	if err := nodes[0].Eval(ctx, `while true do end`, nil).Err(); err == nil {
		t.Fatal("empty loop: no budget error")
	}
	loop := time.Since(base)
	body := `local function f() return pcall(f) end while true do f() end`
	start := time.Now()
	err := nodes[0].Eval(ctx, body, nil).Err()
	took := time.Since(start)
	t.Logf("empty loop %v; nested pcall %v: %v", loop, took, err)
	if err == nil || !strings.HasPrefix(err.Error(), "ERR script exceeded its ") {
		t.Errorf("nested pcall: %v, want a budget error", err)
	}
	if took > 20*loop+time.Second {
		t.Errorf("nested pcall ran %v under a %d-step budget (an empty loop: %v): the budget does not bound its time", took, steps, loop)
	}
	for i, r := range nodes {
		if err := r.Set(ctx, "sc:after", "ok", 0).Err(); err != nil {
			t.Errorf("SET via node %d after the nested pcall script: %v", i, err)
		}
	}
	assertConverged(t, c)
}
