// Package raftnode owns the Raft node: log and stable stores on disk, the
// snapshot store, the transport, bootstrap, leadership, read barriers and
// forwarding to the leader. The rest of redraft talks to it through a narrow
// surface: Write, ReadBarrier, Query and a few accessors. Every reply is RESP
// bytes, errors included, so callers relay them verbatim.
package raftnode

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/redraft/redraft/fsm"
)

// ReadMode chooses what a read waits for.
type ReadMode string

const (
	// Linearizable reads confirm leadership with a quorum, then wait until
	// this node has applied everything committed before the read began.
	Linearizable ReadMode = "linearizable"
	// Lease reads trust the leader's lease instead of a quorum round.
	Lease ReadMode = "lease"
	// Stale reads answer from local state at once.
	Stale ReadMode = "stale"
)

// Defaults for the snapshot policy (snapshots.go), used where Config leaves
// them zero.
const (
	DefaultSnapshotThreshold = 1 << 18 // log entries
	DefaultSnapshotLogBytes  = 64 << 20
	DefaultSnapshotInterval  = 30 * time.Second
)

// Peer is one member of the initial configuration.
type Peer struct {
	ID   string
	Addr string // the address peers dial
}

// Config configures a node.
type Config struct {
	ID                string
	RaftBind          string // where the Raft/RPC listener binds
	Advertise         string // what peers dial; defaults to the bound address
	DataDir           string
	LogStore          string // "wal" (default) or "bolt"
	WALSegmentSize    int    // bytes; 0 = raft-wal's default
	InitialCluster    []Peer // nil: a single-node cluster of this node
	RESPAddr          string // told to peers, for ROLE and redirects
	Reads             ReadMode
	ElectionWait      time.Duration // how long commands wait for a leader
	ElectionTimeout   time.Duration // Raft heartbeat and election timeout
	CommitTimeout     time.Duration // Raft's CommitTimeout; 0 = 5 ms
	SnapshotThreshold uint64        // log entries that make a snapshot due (snapshots.go)
	SnapshotLogBytes  uint64        // the least log bytes that make one due
	SnapshotInterval  time.Duration // how often to check
	TrailingLogs      uint64
	Logger            *slog.Logger
}

// Node is a running Raft member with its state machine.
type Node struct {
	cfg   Config
	log   *slog.Logger
	raft  *raft.Raft
	fsm   *fsm.FSM
	store logStore
	mux   *mux
	logs  *logCache // the log store as raft sees it
	snaps raft.SnapshotStore
	trans *trackingTransport // raft's, watching followers' acknowledgements (commits.go)
	pool  *pool
	fwd   *forwarder
	prop  *proposer

	leaderReads   *batcher // read-index rounds served as leader
	followerReads *batcher // read-index rounds fetched from the leader

	stamp     atomic.Int64 // the last time this node stamped on an entry
	ready     atomic.Bool  // leader and caught up with its own term
	respAddrs sync.Map     // raft address -> cachedAddr: peers' client addresses

	stop     chan struct{}
	raftDown chan struct{} // closed once raft has shut down: see await
	stopOnce sync.Once
	wg       sync.WaitGroup
}

// Open starts a node: it opens or creates the stores in DataDir, bootstraps
// the initial configuration if there is no state yet, and joins Raft.
func Open(cfg Config) (*Node, error) {
	if cfg.Reads == "" {
		cfg.Reads = Linearizable
	}
	if cfg.ElectionWait == 0 {
		cfg.ElectionWait = 5 * time.Second
	}
	if cfg.ElectionTimeout == 0 {
		cfg.ElectionTimeout = 400 * time.Millisecond
	}
	if cfg.CommitTimeout == 0 {
		cfg.CommitTimeout = 5 * time.Millisecond
	}
	if cfg.SnapshotThreshold == 0 {
		cfg.SnapshotThreshold = DefaultSnapshotThreshold
	}
	if cfg.SnapshotLogBytes == 0 {
		cfg.SnapshotLogBytes = DefaultSnapshotLogBytes
	}
	if cfg.SnapshotInterval <= 0 {
		cfg.SnapshotInterval = DefaultSnapshotInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, log: cfg.Logger, pool: newPool(), stop: make(chan struct{}), raftDown: make(chan struct{})}
	n.fwd = &forwarder{n: n, routes: map[string]*route{}}
	n.prop = &proposer{n: n, limit: maxProposalsInFlight}
	// A read waits for its round without a deadline of its own (ReadBarrier),
	// perhaps behind a round already running: two rounds must fit in how
	// long a command waits for a leader. (A leader's round ends when raft
	// answers VerifyLeader, which it does within its leader lease.)
	rt := min(roundTimeout, cfg.ElectionWait/2)
	n.leaderReads = newBatcher(n.leaderReadIndex, rt)
	n.followerReads = newBatcher(n.remoteReadIndex, rt)

	var err error
	if n.fsm, err = fsm.Open(filepath.Join(cfg.DataDir, "fsm.db")); err != nil {
		return nil, err
	}
	if n.mux, err = newMux(cfg.RaftBind, n.serveRPC); err != nil {
		n.fsm.Close()
		return nil, err
	}
	if n.cfg.Advertise == "" {
		n.cfg.Advertise = n.mux.ln.Addr().String()
	}
	if err := n.start(); err != nil {
		n.mux.close()
		n.fsm.Close()
		if n.store != nil {
			n.store.Close()
		}
		return nil, err
	}
	n.wg.Add(3)
	go n.watchLeadership()
	go n.watchLeaderChanges()
	go n.snapshotWhenDue()
	return n, nil
}

// watchLeaderChanges cuts short the RPCs in flight to a leader once another
// one is elected: their outcome is decided (or unknowable) by then.
func (n *Node) watchLeaderChanges() {
	defer n.wg.Done()
	ch := make(chan raft.Observation, 16)
	obs := raft.NewObserver(ch, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	n.raft.RegisterObserver(obs)
	defer n.raft.DeregisterObserver(obs)
	var last raft.ServerAddress
	for {
		select {
		case <-n.stop:
			return
		case o := <-ch:
			leader := o.Data.(raft.LeaderObservation).LeaderAddr
			if leader != "" && last != "" && leader != last {
				n.pool.abort(string(last))
			}
			if leader != "" {
				last = leader
			}
		}
	}
}

func (n *Node) start() error {
	cfg := n.cfg
	var err error
	hlog := newHCLogger(n.log)
	if n.store, err = openLogStore(cfg.LogStore, cfg.DataDir, cfg.WALSegmentSize, hlog); err != nil {
		return err
	}
	// Pub/sub: entries already in the log were received before this start;
	// re-applying them must not re-deliver their messages (fsm.QuietThrough).
	last, err := n.store.LastIndex()
	if err != nil {
		return err
	}
	n.fsm.QuietThrough(last)
	snaps, err := newSnapshotStore(cfg.DataDir, 2, hlog)
	if err != nil {
		return err
	}
	n.snaps = snaps
	if err := n.catchUpFromSnapshot(snaps); err != nil {
		return err
	}
	advertise, err := net.ResolveTCPAddr("tcp", cfg.Advertise)
	if err != nil {
		return err
	}
	n.trans = newTrackingTransport(raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  &streamLayer{m: n.mux, advertise: advertise},
		MaxPool: 8,
		Timeout: 10 * time.Second,
		Logger:  hlog,
	}))

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.ID)
	rc.Logger = hlog
	rc.HeartbeatTimeout = cfg.ElectionTimeout
	rc.ElectionTimeout = cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = cfg.ElectionTimeout / 2
	// Followers learn the commit index from the next AppendEntries; a short
	// commit timeout bounds how long a follower's read barrier waits for it
	// when the cluster is idle (the leader tells them at quiet points,
	// commits.go).
	rc.CommitTimeout = cfg.CommitTimeout
	rc.BatchApplyCh = true
	rc.MaxAppendEntries = 512
	// The FSM is persistent and knows its applied index: raft must not
	// reload a snapshot over it on every start.
	rc.NoSnapshotRestoreOnStart = true
	// Snapshots are taken when snapshotWhenDue says so; raft's own trigger,
	// which counts entries only, never fires.
	rc.SnapshotThreshold = math.MaxUint64
	if cfg.TrailingLogs > 0 {
		rc.TrailingLogs = cfg.TrailingLogs
	}

	has, err := raft.HasExistingState(n.store, n.store, snaps)
	if err != nil {
		return err
	}
	if !has {
		peers := cfg.InitialCluster
		if len(peers) == 0 {
			peers = []Peer{{ID: cfg.ID, Addr: cfg.Advertise}}
		}
		var conf raft.Configuration
		for _, p := range peers {
			conf.Servers = append(conf.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.Addr)})
		}
		if err := raft.BootstrapCluster(rc, n.store, n.store, snaps, n.trans, conf); err != nil {
			return fmt.Errorf("bootstrap: %w", err)
		}
	}
	// The leader reads every entry back from the log store to replicate it,
	// followers to apply it: recent entries stay in memory (logcache.go).
	n.logs = newLogCache(n.store, 512, 4<<20)
	n.raft, err = raft.NewRaft(rc, n.fsm, n.logs, n.store, snaps, n.trans)
	return err
}

// catchUpFromSnapshot restores the FSM file from the newest snapshot when
// the file is behind it: after it was lost or damaged, the log alone may no
// longer reach back far enough.
func (n *Node) catchUpFromSnapshot(snaps raft.SnapshotStore) error {
	list, err := snaps.List()
	if err != nil || len(list) == 0 {
		return err
	}
	latest := list[0]
	if n.fsm.AppliedIndex() >= latest.Index {
		return nil
	}
	_, rc, err := snaps.Open(latest.ID)
	if err != nil {
		return err
	}
	n.log.Info("fsm behind the latest snapshot: restoring", "applied", n.fsm.AppliedIndex(), "snapshot", latest.Index)
	return n.fsm.Restore(rc)
}

// watchLeadership runs while the node lives: on gaining leadership it
// commits a barrier (so its commit index covers every earlier term) before
// serving reads, and while it leads it runs the expiry sweeper and tells
// followers of commits at quiet points (commits.go).
func (n *Node) watchLeadership() {
	defer n.wg.Done()
	var sweeping chan struct{}
	stopSweep := func() {
		if sweeping != nil {
			close(sweeping)
			sweeping = nil
		}
	}
	defer stopSweep()
	for {
		select {
		case <-n.stop:
			return
		case leader := <-n.raft.LeaderCh():
			n.ready.Store(false)
			stopSweep()
			if !leader {
				continue
			}
			if err := n.commitNoop(); err != nil {
				n.log.Warn("leader's first entry failed", "err", err)
				continue
			}
			n.ready.Store(true)
			sweeping = make(chan struct{})
			n.wg.Add(2)
			go n.sweepExpired(sweeping)
			go n.tellCommits(sweeping)
		}
	}
}

// commitNoop commits an entry of this term through the FSM. Until it has
// applied, the commit index may not cover entries of earlier terms. It must
// be an FSM command, not a raft.Barrier: raft never hands barrier and no-op
// entries to the FSM, so the FSM's applied index would stop short of a
// commit index that ends in one, and read barriers would wait for it.
func (n *Node) commitNoop() error {
	e := fsm.Entry{Now: n.now(), Args: [][]byte{[]byte("redraft.noop")}}
	return n.await(n.raft.Apply(e.Encode(), n.cfg.ElectionWait))
}

// errStopped answers a write whose future raft left unanswered at shutdown.
var errStopped = errors.New("node stopped")

// await waits for f. Raft answers every future it has taken in, but not
// one still in its queue, or committed and not yet applied, when it shuts
// down: waiting on that one would never end, and Close would wait for the
// waiter. So await gives up once raft is down; whether the entry made it
// into the log is then unknown. It costs a goroutine, so the hot path
// (the proposer) waits on futures itself and only its callers use raftDown.
func (n *Node) await(f raft.Future) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return err
	case <-n.raftDown:
		return errStopped
	}
}

// IsLeader reports whether this node is the leader and serving.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// now stamps an entry: the leader's clock, never earlier than anything
// already applied or stamped, so FSM time never runs backwards.
func (n *Node) now() int64 {
	for {
		last := n.stamp.Load()
		t := max(time.Now().UnixMilli(), n.fsm.LastNow(), last)
		if n.stamp.CompareAndSwap(last, t) {
			return t
		}
	}
}

// readClock is this node's time for reads: its clock, never behind what
// it has applied or stamped.
func (n *Node) readClock() int64 {
	return max(time.Now().UnixMilli(), n.fsm.LastNow(), n.stamp.Load())
}

// Query runs a read command against local state at time now (from
// ReadBarrier, which makes the answer linearizable).
func (n *Node) Query(db int, now int64, args [][]byte) []byte {
	return n.fsm.Query(db, now, args)
}

// FSM exposes the state machine for hooks and tests.
func (n *Node) FSM() *fsm.FSM { return n.fsm }

// Close stops the node. A leader first hands leadership to a peer, so a
// rolling restart costs clients (almost) nothing.
func (n *Node) Close() error {
	var err error
	n.stopOnce.Do(func() {
		if n.IsLeader() && len(n.raft.GetConfiguration().Configuration().Servers) > 1 {
			if terr := n.raft.LeadershipTransfer().Error(); terr != nil {
				n.log.Warn("leadership transfer failed", "err", terr)
			}
		}
		close(n.stop)
		err = n.raft.Shutdown().Error()
		close(n.raftDown)
		n.wg.Wait()
		n.mux.close()
		n.pool.close()
		if cerr := n.store.Close(); err == nil {
			err = cerr
		}
		if cerr := n.fsm.Close(); err == nil {
			err = cerr
		}
	})
	return err
}

// Status is a snapshot of the node's view of the cluster.
type Status struct {
	ID, State, LeaderID, LeaderAddr string
	Term, CommitIndex, AppliedIndex uint64
	LastIndex                       uint64
	FirstIndex                      uint64 // the oldest entry still in the log: compaction moves it
	Servers                         []Peer
}

// Status reports the node's Raft state.
func (n *Node) Status() Status {
	addr, id := n.raft.LeaderWithID()
	s := Status{
		ID: n.cfg.ID, State: n.raft.State().String(), LeaderID: string(id), LeaderAddr: string(addr),
		Term: n.raft.CurrentTerm(), CommitIndex: n.raft.CommitIndex(), AppliedIndex: n.fsm.AppliedIndex(),
		LastIndex: n.raft.LastIndex(),
	}
	s.FirstIndex, _ = n.store.FirstIndex()
	if f := n.raft.GetConfiguration(); f.Error() == nil {
		for _, srv := range f.Configuration().Servers {
			s.Servers = append(s.Servers, Peer{ID: string(srv.ID), Addr: string(srv.Address)})
		}
	}
	return s
}

// LeaderRESPAddr returns the leader's client address, asking the leader
// once and caching the answer.
func (n *Node) LeaderRESPAddr() (string, bool) {
	addr, _ := n.raft.LeaderWithID()
	if addr == "" {
		return "", false
	}
	if string(addr) == n.cfg.Advertise {
		return n.cfg.RESPAddr, true
	}
	return n.peerRESPAddr(string(addr), time.Second)
}

// respAddrTTL bounds how long a peer's client address is trusted: a peer
// restarted on another port must not be advertised at its old one for long.
const respAddrTTL = 2 * time.Second

type cachedAddr struct {
	addr string
	at   time.Time
}

// peerRESPAddr asks the peer at raftAddr for its client address, caching
// the answer for respAddrTTL.
func (n *Node) peerRESPAddr(raftAddr string, timeout time.Duration) (string, bool) {
	if v, ok := n.respAddrs.Load(raftAddr); ok && time.Since(v.(cachedAddr).at) < respAddrTTL {
		return v.(cachedAddr).addr, true
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	resp, err := n.call(ctx, raftAddr, opInfo, nil)
	if err != nil {
		if v, ok := n.respAddrs.Load(raftAddr); ok {
			return v.(cachedAddr).addr, true // unreachable now: the last known address beats none
		}
		return "", false
	}
	n.respAddrs.Store(raftAddr, cachedAddr{addr: string(resp), at: time.Now()})
	return string(resp), true
}

// waitLeader waits until some node is leader, or ctx ends.
func (n *Node) waitLeader(ctx context.Context) (raft.ServerAddress, error) {
	for {
		if addr, _ := n.raft.LeaderWithID(); addr != "" {
			return addr, nil
		}
		select {
		case <-ctx.Done():
			return "", errNoLeader
		case <-n.stop:
			return "", raft.ErrRaftShutdown
		case <-time.After(10 * time.Millisecond):
		}
	}
}

var (
	errNoLeader  = errors.New("no leader")
	errNotLeader = errors.New("not leader")
)

// PeerRESPAddrs lists the client addresses of the other members.
func (n *Node) PeerRESPAddrs() []string {
	var out []string
	for _, p := range n.Status().Servers {
		if p.Addr == n.cfg.Advertise {
			continue
		}
		if addr, ok := n.peerRESPAddr(p.Addr, 200*time.Millisecond); ok {
			out = append(out, addr)
		}
	}
	return out
}

// RaftAddr is the address the Raft/RPC listener is bound to.
func (n *Node) RaftAddr() string { return n.mux.ln.Addr().String() }
