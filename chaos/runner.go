package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"sync"
	"time"
)

// Config describes one chaos run.
type Config struct {
	Binary   string        // redraft binary (required)
	Nodes    int           // 3 or 5 (default 3)
	Duration time.Duration // workload time, faults included (default 60s)
	// Faults is the number of faults to inject, drawn from Kinds with the
	// seed. With Faults 0, every kind in Kinds is injected once, in order.
	Faults int
	Kinds  []string // default AllFaults
	Seed   uint64
	Dir    string // data dirs and node logs (required)
	Out    string // where report.txt, report.json, history.jsonl go ("" = nowhere)
	// ExtraArgs for every node; default a low snapshot threshold so that
	// snapshots, log truncation and snapshot installs happen during a run.
	ExtraArgs []string
	Hold      time.Duration // how long each fault lasts (default 4s)
	OpTimeout time.Duration // client timeout per operation (default 8s)
	NodeLog   io.Writer     // node output; nil = files in Dir
	Progress  io.Writer     // the runner's own log; nil = none
	// Workloads replace the default set (registers, counters, durability,
	// locks, Lua read-modify-write, pub/sub).
	Workloads []Workload
}

// DefaultWorkloads is the standard mix for a cluster of n nodes.
func DefaultWorkloads(n int) []Workload {
	return []Workload{
		RegisterWorkload{Workers: 2 * n, Keys: 4},
		CounterWorkload{Workers: n, Keys: 2},
		DurabilityWorkload{},
		LockWorkload{Clients: n},
		LuaWorkload{Workers: n, Keys: 2},
		&PubSubWorkload{Publishers: n, Channels: 3},
	}
}

func (cfg Config) withDefaults() (Config, error) {
	if cfg.Binary == "" || cfg.Dir == "" {
		return cfg, errors.New("chaos: Binary and Dir are required")
	}
	if cfg.Nodes == 0 {
		cfg.Nodes = 3
	}
	if cfg.Nodes < 3 {
		return cfg, errors.New("chaos: a chaos run needs at least 3 nodes")
	}
	if cfg.Duration <= 0 {
		cfg.Duration = time.Minute
	}
	if len(cfg.Kinds) == 0 {
		cfg.Kinds = AllFaults
	}
	if cfg.ExtraArgs == nil {
		cfg.ExtraArgs = []string{"--snapshot-threshold", "256", "--trailing-logs", "64", "--snapshot-interval", "1s", "--wal-segment-size", "1048576"}
	}
	if cfg.Hold <= 0 {
		cfg.Hold = 4 * time.Second
	}
	if cfg.OpTimeout <= 0 {
		cfg.OpTimeout = 8 * time.Second
	}
	if cfg.Workloads == nil {
		cfg.Workloads = DefaultWorkloads(cfg.Nodes)
	}
	return cfg, nil
}

// schedule picks the fault kinds of a run.
func (cfg Config) schedule(rnd *rand.Rand) []string {
	if cfg.Faults <= 0 {
		return append([]string(nil), cfg.Kinds...)
	}
	out := make([]string, cfg.Faults)
	for i := range out {
		out[i] = cfg.Kinds[rnd.IntN(len(cfg.Kinds))]
	}
	return out
}

// Run starts a cluster behind the fault proxy, runs the workloads while it
// injects the faults, heals everything, reads back the final state, checks
// the history and returns (and, with Out, writes) the report. The error is
// for runs that could not be carried out; what the checks found is in the
// report.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	QuietClientLogs()
	var logMu sync.Mutex
	h := NewHistory()
	logf := func(format string, args ...any) {
		if cfg.Progress == nil {
			return
		}
		logMu.Lock()
		defer logMu.Unlock()
		fmt.Fprintf(cfg.Progress, "%7.2fs  %s\n", h.Now().Seconds(), fmt.Sprintf(format, args...))
	}
	rnd := rand.New(rand.NewPCG(cfg.Seed, 0x5eed))
	kinds := cfg.schedule(rnd)
	logf("starting %d nodes (seed %d, faults %v)", cfg.Nodes, cfg.Seed, kinds)
	c, err := StartCluster(ClusterConfig{Binary: cfg.Binary, Nodes: cfg.Nodes, Dir: cfg.Dir,
		ExtraArgs: cfg.ExtraArgs, Proxy: true, Log: cfg.NodeLog})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	h = NewHistory() // time zero: the cluster is up
	env := &Env{Cluster: c, History: h, Seed: cfg.Seed, OpTimeout: cfg.OpTimeout, MaxOps: 200_000}

	wctx, stopWorkloads := context.WithCancel(ctx)
	defer stopWorkloads()
	var wg sync.WaitGroup
	for _, w := range cfg.Workloads {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.Run(wctx, env)
		}()
	}

	// Faults are spread evenly over the run, after a warm-up and before a
	// cool-down in which the healed cluster must serve normally.
	const warmup, cooldown = 2 * time.Second, 3 * time.Second
	sleepCtx(ctx, warmup)
	slot := (cfg.Duration - warmup - cooldown) / time.Duration(max(1, len(kinds)))
	f := &faulter{c: c, h: h, env: env, rnd: rnd, hold: min(cfg.Hold, max(slot/2, time.Second)), logf: logf}
	var records []FaultRecord
	for i, kind := range kinds {
		if ctx.Err() != nil {
			break
		}
		records = append(records, f.inject(ctx, kind))
		sleepCtx(ctx, warmup+slot*time.Duration(i+1)-h.Now())
	}
	final := FaultRecord{Kind: "final-heal"}
	final.Start = h.Now()
	final.Healed = final.Start
	f.recover(ctx, &final)
	if final.Err != "" || final.Note != "" {
		records = append(records, final)
	}
	sleepCtx(ctx, cfg.Duration-h.Now())
	stopWorkloads()
	wg.Wait()
	end := h.Now()
	logf("workloads stopped; reading back the final state")

	finals := make([]map[string]FinalValue, len(cfg.Workloads))
	for i, w := range cfg.Workloads {
		finals[i] = w.Final(ctx, env)
	}
	ops := h.Ops()
	env.Faults = records
	logf("checking %d operations", len(ops))
	rep := newReport(cfg, kinds, records, ops, end)
	for i, w := range cfg.Workloads {
		rep.add(w.Name(), w.Check(env, ops, finals[i]))
	}
	for _, r := range records {
		if r.Err != "" {
			rep.addViolation("availability", Violation{Checker: "availability", Key: r.Kind, At: r.Start,
				Message: r.Err})
		}
	}
	for i, n := range c.Nodes() {
		if !c.Alive(i) {
			rep.addViolation("availability", Violation{Checker: "availability", Key: n.ID,
				Message: "node is not running at the end of the run:\n" + indent(c.LogTail(i))})
		}
	}
	if cfg.Out != "" {
		if err := os.MkdirAll(cfg.Out, 0o755); err != nil {
			return rep, err
		}
		if err := rep.WriteFiles(cfg.Out, ops); err != nil {
			return rep, err
		}
	}
	logf("done: %d violations", len(rep.Violations))
	return rep, nil
}
