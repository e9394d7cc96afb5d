// Command redraft runs a Raft-replicated coordinator that speaks the Redis
// protocol. With no flags it starts the embedded default: one bootstrapped
// node on 127.0.0.1:6379 with its data in ./redraft-data.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/redraft/redraft/fsm"
	"github.com/redraft/redraft/lua"
	"github.com/redraft/redraft/raftnode"
	"github.com/redraft/redraft/respserver"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

func main() {
	args := os.Args[1:]
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		switch args[0] {
		case "version":
			fmt.Println("redraft", version)
			return
		case "serve":
			args = args[1:]
		case "status", "snapshot":
			run := map[string]func([]string) error{"status": cmdStatus, "snapshot": cmdSnapshot}[args[0]]
			if err := run(args[1:]); err != nil {
				fmt.Fprintln(os.Stderr, "redraft:", err)
				os.Exit(1)
			}
			return
		default:
			fmt.Fprintf(os.Stderr, "redraft: unknown subcommand %q (try: serve, status, snapshot, version)\n", args[0])
			os.Exit(2)
		}
	}
	if err := serve(args); err != nil {
		fmt.Fprintln(os.Stderr, "redraft:", err)
		os.Exit(1)
	}
}

type options struct {
	id, addr, raftAddr, dataDir, initialCluster       string
	httpAddr, logStore                                string
	reads, requirePass, protectedMode, logLevel       string
	electionWait, electionTimeout, snapshotInterval   time.Duration
	snapshotThreshold, snapshotLogBytes, trailingLogs uint64
	maxClients, walSegmentSize                        int
	maxBulkLen, luaMaxSteps, luaMaxMemory             int64
	pubsubHard, pubsubSoft                            int64 // pub/sub output buffer limits
	pubsubSoftTime                                    time.Duration
}

func parseFlags(args []string) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("redraft", flag.ContinueOnError)
	fs.StringVar(&o.id, "id", "n1", "this node's id")
	fs.StringVar(&o.addr, "addr", "127.0.0.1:6379", "RESP (client) listen address")
	fs.StringVar(&o.raftAddr, "raft-addr", "127.0.0.1:7379", "Raft/RPC listen address")
	fs.StringVar(&o.dataDir, "data-dir", "redraft-data", "where the Raft log, snapshots and state live")
	fs.StringVar(&o.initialCluster, "initial-cluster", "", "id=raftaddr,... : the first configuration, bootstrapped by nodes with no state (the addresses peers dial)")
	fs.StringVar(&o.httpAddr, "http-addr", "", "admin HTTP address (/healthz /readyz /status /metrics /debug/pprof); empty: off")
	fs.StringVar(&o.logStore, "log-store", "wal", "Raft log store: wal (raft-wal) or bolt (raft-boltdb/v2)")
	fs.IntVar(&o.walSegmentSize, "wal-segment-size", 0, "raft-wal segment size in bytes (0: 64 MiB); compaction frees whole segments")
	fs.Int64Var(&o.luaMaxSteps, "lua-max-steps", 0, "VM instructions a script may run before it fails (0: 20,000,000); must match on every node")
	fs.Int64Var(&o.luaMaxMemory, "lua-max-memory", 0, "bytes a script may allocate before it fails (0: 256 MiB); must match on every node")
	fs.StringVar(&o.reads, "reads", "linearizable", "read consistency: linearizable, lease or stale")
	fs.StringVar(&o.requirePass, "requirepass", "", "password clients must AUTH with (prefer REDRAFT_REQUIREPASS: flags show in ps)")
	fs.StringVar(&o.protectedMode, "protected-mode", "yes", "with no password, accept only loopback clients (yes|no)")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.DurationVar(&o.electionWait, "election-wait", 5*time.Second, "how long commands wait for a leader before failing")
	fs.DurationVar(&o.electionTimeout, "election-timeout", 400*time.Millisecond, "Raft heartbeat/election timeout")
	fs.Uint64Var(&o.snapshotThreshold, "snapshot-threshold", raftnode.DefaultSnapshotThreshold, "log entries since the last snapshot that make one due")
	fs.Uint64Var(&o.snapshotLogBytes, "snapshot-log-bytes", raftnode.DefaultSnapshotLogBytes, "log bytes since the last snapshot that make one due, once they also exceed that snapshot's size")
	fs.DurationVar(&o.snapshotInterval, "snapshot-interval", raftnode.DefaultSnapshotInterval, "how often to check whether a snapshot is due")
	fs.Uint64Var(&o.trailingLogs, "trailing-logs", 10240, "log entries kept after a snapshot")
	fs.IntVar(&o.maxClients, "maxclients", 10000, "maximum client connections")
	fs.Int64Var(&o.maxBulkLen, "proto-max-bulk-len", 512<<20, "largest bulk string a client may send")
	fs.Int64Var(&o.pubsubHard, "pubsub-hard-limit", 32<<20, "bytes queued to a subscriber before it is disconnected (client-output-buffer-limit pubsub; 0: none)")
	fs.Int64Var(&o.pubsubSoft, "pubsub-soft-limit", 8<<20, "bytes queued to a subscriber for longer than --pubsub-soft-time before it is disconnected (0: none)")
	fs.DurationVar(&o.pubsubSoftTime, "pubsub-soft-time", 60*time.Second, "how long a subscriber may stay over --pubsub-soft-limit")
	// Every flag may also come from REDRAFT_<NAME> (dashes as underscores);
	// the command line wins.
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		env := "REDRAFT_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(env); ok {
			if err := f.Value.Set(v); err != nil && envErr == nil {
				envErr = fmt.Errorf("%s: %v", env, err)
			}
		}
	})
	if envErr != nil {
		return nil, envErr
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	return o, nil
}

func parseCluster(s string) ([]raftnode.Peer, error) {
	if s == "" {
		return nil, nil
	}
	var peers []raftnode.Peer
	for _, part := range strings.Split(s, ",") {
		id, addr, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || id == "" || addr == "" {
			return nil, fmt.Errorf("--initial-cluster: %q is not id=address", part)
		}
		peers = append(peers, raftnode.Peer{ID: id, Addr: addr})
	}
	return peers, nil
}

// tuneGC trades memory for CPU: three replicas on a small machine are
// CPU-bound, and with Go's default GOGC=100 the collector took ~12 % of a
// node's CPU. GOGC=400 measured +25–40 % SET throughput and p99 16 → 10.6 ms
// on a 3-node cluster (docs/benchmarks.md); the heap stays small (the data
// lives in bbolt's memory map). GOGC and GOMEMLIMIT in the environment win.
func tuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(1 << 30) // collect harder before the heap passes 1 GiB
	}
}

func serve(args []string) error {
	tuneGC()
	o, err := parseFlags(args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return fmt.Errorf("--log-level: %v", err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})).With("node", o.id)
	slog.SetDefault(log)

	fsm.ScriptLimits = lua.Limits{MaxSteps: o.luaMaxSteps, MaxMemory: o.luaMaxMemory}
	peers, err := parseCluster(o.initialCluster)
	if err != nil {
		return err
	}
	mode := raftnode.ReadMode(o.reads)
	if mode != raftnode.Linearizable && mode != raftnode.Lease && mode != raftnode.Stale {
		return fmt.Errorf("--reads: %q is not linearizable, lease or stale", o.reads)
	}
	advertise := ""
	if len(peers) > 0 {
		for _, p := range peers {
			if p.ID == o.id {
				advertise = p.Addr
			}
		}
		if advertise == "" {
			return fmt.Errorf("--initial-cluster does not name this node (--id %s)", o.id)
		}
	}

	srv := respserver.New(respserver.Config{
		Addr: o.addr, RequirePass: o.requirePass, ProtectedMode: o.protectedMode != "no",
		MaxClients: o.maxClients, MaxBulkLen: o.maxBulkLen, Version: version, Logger: log,
		PubSubHardLimit: noLimitIfZero(o.pubsubHard), PubSubSoftLimit: noLimitIfZero(o.pubsubSoft), PubSubSoftTime: o.pubsubSoftTime,
	}, nil)
	// Bind the client port first: with port 0 the node must know its real
	// address to tell its peers.
	if err := srv.Listen(); err != nil {
		return err
	}
	node, err := raftnode.Open(raftnode.Config{
		ID: o.id, RaftBind: o.raftAddr, Advertise: advertise, DataDir: o.dataDir, LogStore: o.logStore, WALSegmentSize: o.walSegmentSize,
		InitialCluster: peers, RESPAddr: srv.Addr().String(), Reads: mode,
		ElectionWait: o.electionWait, ElectionTimeout: o.electionTimeout,
		SnapshotThreshold: o.snapshotThreshold, SnapshotLogBytes: o.snapshotLogBytes, SnapshotInterval: o.snapshotInterval, TrailingLogs: o.trailingLogs, Logger: log,
	})
	if err != nil {
		srv.Close()
		return err
	}
	srv.Attach(node)
	httpBound := ""
	if o.httpAddr != "" {
		ln, err := net.Listen("tcp", o.httpAddr)
		if err != nil {
			srv.Close()
			node.Close()
			return fmt.Errorf("--http-addr: %v", err)
		}
		httpBound = ln.Addr().String()
		go serveAdmin(ln, node, srv)
	}
	if err := writeAddrs(o.dataDir, srv.Addr().String(), node.RaftAddr(), httpBound); err != nil {
		log.Warn("cannot write addrs.json", "err", err)
	}
	log.Info("redraft serving", "version", version, "resp", srv.Addr().String(), "raft", node.RaftAddr(), "data", o.dataDir)

	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	select {
	case sig := <-sigs:
		log.Info("stopping", "signal", sig.String())
	case err := <-served:
		log.Error("client listener failed", "err", err)
	}
	srv.Close()
	return node.Close()
}

// noLimitIfZero maps a limit flag (0 = none, as in Redis's config) to
// respserver's convention (0 = default, < 0 = none).
func noLimitIfZero(v int64) int64 {
	if v <= 0 {
		return -1
	}
	return v
}

// writeAddrs records the bound addresses, so tools that started the node
// on port 0 learn where it listens. Written atomically.
func writeAddrs(dir, resp, raft, http string) error {
	m := map[string]string{"resp": resp, "raft": raft}
	if http != "" {
		m["http"] = http
	}
	b, _ := json.Marshal(m)
	tmp := filepath.Join(dir, "addrs.json.tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, "addrs.json"))
}
