// Command redraft-chaos runs a redraft cluster of real processes behind a
// fault proxy, drives client workloads through it while it kills, pauses and
// partitions nodes, and checks what the clients saw (linearizability of
// registers, counters and a Lua EVAL read-modify-write counter, lock safety,
// durability, pub/sub order, duplicates and gaps). It writes report.txt,
// report.json and history.jsonl to --out and exits 1 when it found a
// violation.
//
//	redraft-chaos --nodes 5 --duration 5m --faults 20 --seed 7 --out /tmp/chaos
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/redraft/redraft/chaos"
)

func main() {
	os.Exit(run())
}

func run() int {
	var (
		nodes    = flag.Int("nodes", 3, "cluster size (3 or 5)")
		duration = flag.Duration("duration", time.Minute, "how long the workloads run, faults included")
		faults   = flag.Int("faults", 6, "number of faults, drawn at random from --kinds (0: each of --kinds once, in order)")
		kinds    = flag.String("kinds", strings.Join(chaos.AllFaults, ","), "fault kinds to draw from")
		seed     = flag.Uint64("seed", uint64(time.Now().UnixNano()), "random seed (the report repeats it)")
		out      = flag.String("out", "", "report directory (default: a new dir under the system temp dir)")
		binary   = flag.String("binary", "", "redraft binary (default: build ./cmd/redraft of this module)")
		hold     = flag.Duration("hold", 4*time.Second, "how long each fault lasts")
		extra    = flag.String("node-args", "--snapshot-threshold 256 --trailing-logs 64 --snapshot-interval 1s --wal-segment-size 1048576", "extra flags for every node")
		verbose  = flag.Bool("v", false, "copy node output to stderr (default: node logs in the out dir)")
	)
	flag.Parse()

	if *out == "" {
		d, err := os.MkdirTemp("", "redraft-chaos-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		*out = d
	}
	// A run always starts from empty data dirs: nodes left by an earlier run
	// hold a Raft configuration with that run's (proxy) addresses and would
	// never find each other.
	dataDir := filepath.Join(*out, "nodes")
	if err := os.RemoveAll(dataDir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if *binary == "" {
		bin, err := chaos.BuildBinary(*out)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		*binary = bin
	}

	// Ctrl-C ends the run early but still checks and reports; a second one
	// kills the nodes and exits at once.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sigs
		fmt.Fprintln(os.Stderr, "interrupted: stopping the run (again to abort)")
		cancel()
		<-sigs
		chaos.KillAll()
		os.Exit(130)
	}()

	cfg := chaos.Config{
		Binary: *binary, Nodes: *nodes, Duration: *duration, Faults: *faults,
		Kinds: strings.Split(*kinds, ","), Seed: *seed, Dir: dataDir, Out: *out,
		ExtraArgs: strings.Fields(*extra), Hold: *hold, Progress: os.Stderr,
	}
	if *verbose {
		cfg.NodeLog = os.Stderr
	}
	rep, err := chaos.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos run failed:", err)
		if rep == nil {
			return 2
		}
	}
	fmt.Print(rep.Text())
	fmt.Printf("\nreport, history and node logs: %s\n", *out)
	if len(rep.Violations) > 0 {
		return 1
	}
	return 0
}
