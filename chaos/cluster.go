// Package chaos runs real redraft processes, injects faults (kill -9,
// SIGSTOP, network partitions, one-way loss, latency, crash during a
// snapshot) and checks what clients saw: linearizability of registers and
// counters, lock safety in the shape Node-RED's cluster-leader node uses,
// durability of acknowledged writes and pub/sub delivery.
package chaos

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ClusterConfig describes a cluster of real redraft processes.
type ClusterConfig struct {
	Binary    string    // path to a built redraft binary
	Nodes     int       // 1, 3 or 5
	Dir       string    // parent dir for data dirs and logs (t.TempDir())
	ExtraArgs []string  // extra flags for every node
	Proxy     bool      // put a fault proxy in front of every node's raft port
	Log       io.Writer // node stdout/stderr (prefixed "n1| "), nil = files in Dir
}

// Node is one redraft process. Its exported fields describe where it is; they
// change on Start (the RESP port is picked by the OS each time), so code that
// runs concurrently with restarts should use Cluster.RESPAddr instead.
type Node struct {
	ID        string // n1, n2, ...
	RESPAddr  string // where clients connect (from addrs.json)
	RaftBind  string // where its Raft/RPC listener is bound (from addrs.json)
	Advertise string // what peers dial: RaftBind, or the proxy's port for it
	DataDir   string

	idx   int
	addrs map[string]bool // every RESP address it has had, see leaderOnce
	ip    string          // 127.0.0.(11+idx): source IP of its outgoing Raft traffic
	args  []string        // flags, fixed for the node's life so restarts resume
	cmd   *exec.Cmd
	done  chan struct{} // closed when the process has exited
	state nodeState
	out   *lineWriter
	file  *os.File
	opMu  sync.Mutex // serialises Start/Stop/Kill/Pause/Resume of this node
}

type nodeState int

const (
	stateStopped nodeState = iota
	stateRunning
	statePaused
)

// Cluster is a set of running redraft nodes and, optionally, the fault proxy
// between them.
type Cluster struct {
	cfg    ClusterConfig
	pass   string
	nodes  []*Node
	proxy  *Proxy
	mu     sync.Mutex // guards node fields read concurrently (RESPAddr, state)
	logMu  sync.Mutex // one line at a time from all nodes into cfg.Log
	closed bool
}

// readyTimeout bounds how long a starting node may take to listen and answer
// PING; it covers a restart that replays a long log.
const readyTimeout = 60 * time.Second

// BuildBinary builds ./cmd/redraft of the module that contains the working
// directory into dir and returns the binary's path.
func BuildBinary(dir string) (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside a Go module")
	}
	bin := filepath.Join(dir, "redraft")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/redraft")
	cmd.Dir = filepath.Dir(gomod)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/redraft: %w\n%s", err, out)
	}
	return bin, nil
}

// nodeIP is the loopback address node idx dials from, so the proxy can tell
// which node a connection comes from.
func nodeIP(idx int) string { return fmt.Sprintf("127.0.0.%d", 11+idx) }

// StartCluster starts every node, waits until each answers PING and one of
// them is the leader that all others acknowledge.
func StartCluster(cfg ClusterConfig) (*Cluster, error) {
	if cfg.Nodes < 1 || cfg.Nodes > 200 {
		return nil, fmt.Errorf("chaos: %d nodes", cfg.Nodes)
	}
	if cfg.Binary == "" || cfg.Dir == "" {
		return nil, errors.New("chaos: Binary and Dir are required")
	}
	c := &Cluster{cfg: cfg, pass: flagValue(cfg.ExtraArgs, "requirepass")}
	if cfg.Proxy {
		p, err := NewProxy(cfg.Nodes)
		if err != nil {
			return nil, err
		}
		c.proxy = p
	}
	peers := make([]string, cfg.Nodes)
	for i := 0; i < cfg.Nodes; i++ {
		n := &Node{ID: fmt.Sprintf("n%d", i+1), idx: i, ip: nodeIP(i)}
		n.DataDir = filepath.Join(cfg.Dir, n.ID)
		if err := os.MkdirAll(n.DataDir, 0o755); err != nil {
			c.Close()
			return nil, err
		}
		if c.proxy != nil {
			// Raft binds to an OS-picked port; the proxy's listener, already
			// open, is what peers dial, so there is no port race.
			n.RaftBind = n.ip + ":0"
			n.Advertise = c.proxy.Addr(i)
		} else {
			// Peers must know the address before the node starts: reserve a
			// port by listening and closing. The window for another process
			// to take it is tiny, and each node has its own IP.
			addr, err := freePort(n.ip)
			if err != nil {
				c.Close()
				return nil, err
			}
			n.RaftBind, n.Advertise = addr, addr
		}
		peers[i] = n.ID + "=" + n.Advertise
		c.nodes = append(c.nodes, n)
	}
	for _, n := range c.nodes {
		n.args = append([]string{
			"--id", n.ID,
			"--addr", "127.0.0.1:0",
			"--raft-addr", n.RaftBind,
			"--data-dir", n.DataDir,
			"--initial-cluster", strings.Join(peers, ","),
		}, cfg.ExtraArgs...)
	}
	// Start all processes first: a node may wait for its peers before it
	// answers, so waiting for each in turn could deadlock a bootstrap.
	for _, n := range c.nodes {
		if err := c.spawn(n); err != nil {
			c.Close()
			return nil, err
		}
	}
	errs := make([]error, len(c.nodes))
	var wg sync.WaitGroup
	for i, n := range c.nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = c.waitReady(n)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		c.Close()
		return nil, err
	}
	if _, err := c.Leader(readyTimeout); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func freePort(ip string) (string, error) {
	l, err := net.Listen("tcp", ip+":0")
	if err != nil {
		return "", err
	}
	addr := l.Addr().String()
	return addr, l.Close()
}

// flagValue finds --name V or --name=V in args.
func flagValue(args []string, name string) string {
	for i, a := range args {
		a = strings.TrimLeft(a, "-")
		if a == name && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
	}
	return ""
}

// Nodes returns the nodes in index order (n1 is index 0).
func (c *Cluster) Nodes() []*Node { return c.nodes }

// RESPAddr is node i's current client address, safe to call while the node
// restarts (the address changes on every start).
func (c *Cluster) RESPAddr(i int) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[i].RESPAddr
}

// Running reports whether node i is running and not paused.
func (c *Cluster) Running(i int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[i].state == stateRunning
}

// Alive reports whether node i's process exists (running or paused).
func (c *Cluster) Alive(i int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[i].state != stateStopped
}

// Paused reports whether node i is stopped by Pause.
func (c *Cluster) Paused(i int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[i].state == statePaused
}

// LogTail returns the last lines node i printed, for failure reports.
func (c *Cluster) LogTail(i int) string {
	if c.nodes[i].out == nil {
		return ""
	}
	return c.nodes[i].out.Tail()
}

// Password is the requirepass found in ExtraArgs, if any.
func (c *Cluster) Password() string { return c.pass }

// Proxy returns the fault proxy, nil unless ClusterConfig.Proxy was set.
func (c *Cluster) Proxy() *Proxy { return c.proxy }

// Leader polls until exactly one running node says "master" in ROLE and no
// other node that answers names a different leader, and returns that node's
// index. Nodes that are stopped, paused, do not answer or know no leader are
// not asked to agree: a partitioned node cannot know better.
func (c *Cluster) Leader(timeout time.Duration) (int, error) {
	return c.WaitLeader(timeout, nil)
}

// WaitLeader is Leader, but keeps polling until accept(leader) is true (nil
// accepts any): after a fault, "a leader other than the one we just cut
// off" is the condition to wait for.
func (c *Cluster) WaitLeader(timeout time.Duration, accept func(int) bool) (int, error) {
	deadline := time.Now().Add(timeout)
	for {
		leader, why := c.leaderOnce()
		if leader >= 0 && (accept == nil || accept(leader)) {
			return leader, nil
		}
		if leader >= 0 {
			why = c.nodes[leader].ID + " is leader, not accepted yet"
		}
		if time.Now().After(deadline) {
			return -1, fmt.Errorf("chaos: no agreed leader after %v: %s", timeout, why)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *Cluster) leaderOnce() (int, string) {
	type answer struct {
		role, follows string
		err           error
	}
	answers := make([]answer, len(c.nodes))
	var wg sync.WaitGroup
	for i := range c.nodes {
		if !c.Running(i) {
			answers[i].err = errors.New("not running")
			continue
		}
		addr := c.RESPAddr(i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			a := &answers[i]
			a.role, a.follows, a.err = role(addr, c.pass, time.Second)
		}()
	}
	wg.Wait()
	leader, masters := -1, 0
	var desc []string
	for i, a := range answers {
		switch {
		case a.err != nil:
			desc = append(desc, fmt.Sprintf("%s: %v", c.nodes[i].ID, a.err))
		case a.role == "master":
			leader, masters = i, masters+1
			desc = append(desc, c.nodes[i].ID+": master")
		default:
			desc = append(desc, fmt.Sprintf("%s: %s of %q", c.nodes[i].ID, a.role, a.follows))
		}
	}
	why := strings.Join(desc, ", ")
	if masters != 1 {
		return -1, why
	}
	// Agreement is on which node leads. A follower may still name the
	// leader's address from before it restarted on a new port; that is a
	// reporting issue, not a second leader.
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, a := range answers {
		if a.err == nil && a.role != "master" && a.follows != "" && !c.nodes[leader].addrs[a.follows] {
			return -1, why
		}
	}
	return leader, ""
}

// Kill sends SIGKILL to node i and waits for it to exit. Killing a node that
// is not running is a no-op.
func (c *Cluster) Kill(i int) error {
	n := c.nodes[i]
	n.opMu.Lock()
	defer n.opMu.Unlock()
	return c.signalAndWait(n, syscall.SIGKILL, 30*time.Second)
}

// Stop sends SIGTERM to node i and waits for a graceful exit; after 30 s it
// kills the node and reports that it did not stop.
func (c *Cluster) Stop(i int) error {
	n := c.nodes[i]
	n.opMu.Lock()
	defer n.opMu.Unlock()
	err := c.signalAndWait(n, syscall.SIGTERM, 30*time.Second)
	if err != nil {
		_ = c.signalAndWait(n, syscall.SIGKILL, 30*time.Second)
	}
	return err
}

func (c *Cluster) signalAndWait(n *Node, sig syscall.Signal, timeout time.Duration) error {
	c.mu.Lock()
	st, cmd, done := n.state, n.cmd, n.done
	c.mu.Unlock()
	if st == stateStopped || cmd == nil {
		return nil
	}
	pid := cmd.Process.Pid
	_ = syscall.Kill(-pid, sig)
	if st == statePaused {
		// A stopped process only acts on SIGTERM once it runs again.
		_ = syscall.Kill(-pid, syscall.SIGCONT)
	}
	select {
	case <-done:
	case <-time.After(timeout):
		return fmt.Errorf("chaos: %s did not exit within %v of %v", n.ID, timeout, sig)
	}
	c.mu.Lock()
	n.state = stateStopped
	c.mu.Unlock()
	return nil
}

// Start (re)starts node i with the same data dir and flags and waits until it
// answers PING. Its RESP address (and, behind the proxy, its Raft port) may
// change; Node and the proxy are updated.
func (c *Cluster) Start(i int) error {
	n := c.nodes[i]
	n.opMu.Lock()
	defer n.opMu.Unlock()
	c.mu.Lock()
	st := n.state
	c.mu.Unlock()
	if st != stateStopped {
		return fmt.Errorf("chaos: %s is already running", n.ID)
	}
	if err := c.spawn(n); err != nil {
		return err
	}
	return c.waitReady(n)
}

// Pause stops node i with SIGSTOP: it keeps its sockets but answers nothing,
// like a machine stuck in a long GC pause or swapped out.
func (c *Cluster) Pause(i int) error { return c.setPaused(i, true) }

// Resume continues a paused node with SIGCONT.
func (c *Cluster) Resume(i int) error { return c.setPaused(i, false) }

func (c *Cluster) setPaused(i int, pause bool) error {
	n := c.nodes[i]
	n.opMu.Lock()
	defer n.opMu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	from, to, sig := stateRunning, statePaused, syscall.SIGSTOP
	if !pause {
		from, to, sig = statePaused, stateRunning, syscall.SIGCONT
	}
	if n.state != from {
		return fmt.Errorf("chaos: %s cannot get %v in its state", n.ID, sig)
	}
	if err := syscall.Kill(-n.cmd.Process.Pid, sig); err != nil {
		return err
	}
	n.state = to
	return nil
}

// Close kills every node and closes the proxy. It is safe to call twice.
func (c *Cluster) Close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.mu.Unlock()
	for i := range c.nodes {
		_ = c.Kill(i)
	}
	if c.proxy != nil {
		c.proxy.Close()
	}
	for _, n := range c.nodes {
		if n.file != nil {
			n.file.Close()
		}
	}
}

// spawn starts node n's process. It does not wait for it to be ready.
func (c *Cluster) spawn(n *Node) error {
	// A stale addrs.json from the previous run would make waitReady trust an
	// old port.
	addrsFile := filepath.Join(n.DataDir, "addrs.json")
	if err := os.Remove(addrsFile); err != nil && !os.IsNotExist(err) {
		return err
	}
	if n.out == nil {
		var w io.Writer
		if c.cfg.Log != nil {
			w = &lockedWriter{mu: &c.logMu, w: c.cfg.Log}
			n.out = newLineWriter(w, n.ID+"| ")
		} else {
			f, err := os.OpenFile(filepath.Join(c.cfg.Dir, n.ID+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
			if err != nil {
				return err
			}
			n.file = f
			n.out = newLineWriter(f, "")
		}
	}
	fmt.Fprintf(n.out, "chaos: starting %s %s\n", c.cfg.Binary, strings.Join(n.args, " "))
	cmd := exec.Command(c.cfg.Binary, n.args...)
	cmd.Stdout, cmd.Stderr = n.out, n.out
	cmd.SysProcAttr = procAttr()
	cmd.WaitDelay = 2 * time.Second
	if err := startProcess(cmd); err != nil {
		return fmt.Errorf("chaos: start %s: %w", n.ID, err)
	}
	done := make(chan struct{})
	go func() {
		err := cmd.Wait()
		untrack(cmd.Process.Pid)
		n.out.Flush()
		fmt.Fprintf(n.out, "chaos: %s exited: %v\n", n.ID, err)
		c.mu.Lock()
		if n.cmd == cmd {
			// Also when it dies by itself: Running must not report a corpse.
			n.state = stateStopped
		}
		c.mu.Unlock()
		close(done)
	}()
	c.mu.Lock()
	n.cmd, n.done, n.state = cmd, done, stateRunning
	c.mu.Unlock()
	return nil
}

// waitReady polls for addrs.json and then PING, and points the proxy at the
// node's (possibly new) Raft port.
func (c *Cluster) waitReady(n *Node) error {
	c.mu.Lock()
	done := n.done
	c.mu.Unlock()
	deadline := time.Now().Add(readyTimeout)
	addrsFile := filepath.Join(n.DataDir, "addrs.json")
	var lastErr error
	for {
		select {
		case <-done:
			return fmt.Errorf("chaos: %s exited while starting; last output:\n%s", n.ID, n.out.Tail())
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("chaos: %s not ready after %v (%v); last output:\n%s", n.ID, readyTimeout, lastErr, n.out.Tail())
		}
		var addrs struct{ RESP, Raft string }
		b, err := os.ReadFile(addrsFile)
		if err == nil {
			err = json.Unmarshal(b, &addrs)
		}
		if err == nil && addrs.RESP != "" {
			if err = ping(addrs.RESP, c.pass, time.Second); err == nil {
				c.mu.Lock()
				n.RESPAddr = addrs.RESP
				if n.addrs == nil {
					n.addrs = map[string]bool{}
				}
				n.addrs[addrs.RESP] = true
				if addrs.Raft != "" {
					n.RaftBind = addrs.Raft
				}
				if c.proxy == nil {
					n.Advertise = n.RaftBind
				}
				c.mu.Unlock()
				if c.proxy != nil {
					c.proxy.SetTarget(n.idx, addrs.Raft)
				}
				return nil
			}
		}
		lastErr = err
		time.Sleep(50 * time.Millisecond)
	}
}
