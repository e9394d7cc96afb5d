package main

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redraft/redraft/chaos"
)

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
	buildDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// binary builds ./cmd/redraft once per test run.
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		if buildDir, buildErr = os.MkdirTemp("", "redraft-test-bin"); buildErr == nil {
			builtBin, buildErr = chaos.BuildBinary(buildDir)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

func startCluster(t *testing.T, n int, extra ...string) *chaos.Cluster {
	t.Helper()
	return startClusterIn(t, t.TempDir(), n, extra...)
}

func startClusterIn(t *testing.T, dir string, n int, extra ...string) *chaos.Cluster {
	t.Helper()
	c, err := chaos.StartCluster(chaos.ClusterConfig{Binary: binary(t), Nodes: n, Dir: dir, ExtraArgs: extra})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for i := range c.Nodes() {
				if b, err := os.ReadFile(filepath.Join(dir, c.Nodes()[i].ID+".log")); err == nil {
					lines := strings.Split(string(b), "\n")
					t.Logf("%s log tail:\n%s", c.Nodes()[i].ID, strings.Join(lines[max(0, len(lines)-30):], "\n"))
				}
			}
		}
		c.Close()
	})
	return c
}

// client connects to node i with no client-side retries: every outcome the
// test sees is the server's.
func client(t *testing.T, c *chaos.Cluster, i int) *redis.Client {
	t.Helper()
	r := redis.NewClient(&redis.Options{Addr: c.RESPAddr(i), MaxRetries: -1, DialTimeout: time.Second,
		ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second, Protocol: 2})
	t.Cleanup(func() { r.Close() })
	return r
}

// A write acknowledged on any node is seen at once by a read on every
// other node: reads are linearizable everywhere.
func TestClusterWriteAnywhereReadEverywhere(t *testing.T) {
	c := startCluster(t, 3)
	ctx := context.Background()
	clients := []*redis.Client{client(t, c, 0), client(t, c, 1), client(t, c, 2)}
	for i := 0; i < 60; i++ {
		w := i % 3
		key, val := fmt.Sprintf("k%d", i), fmt.Sprintf("v%d", i)
		if err := clients[w].Set(ctx, key, val, 0).Err(); err != nil {
			t.Fatalf("set via node %d: %v", w, err)
		}
		for r := range clients {
			got, err := clients[r].Get(ctx, key).Result()
			if err != nil || got != val {
				t.Fatalf("write on node %d, read on node %d: %q %v, want %q", w, r, got, err, val)
			}
		}
		n, err := clients[(w+1)%3].Incr(ctx, "counter").Result()
		if err != nil || n != int64(i+1) {
			t.Fatalf("incr via node %d = %d %v, want %d", (w+1)%3, n, err, i+1)
		}
	}
	// A pipeline through a follower: writes forwarded as one batch, in order.
	leader, err := c.Leader(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	f := clients[(leader+1)%3]
	pipe := f.Pipeline()
	for i := 0; i < 100; i++ {
		pipe.Append(ctx, "log", strconv.Itoa(i%10))
	}
	get := pipe.Get(ctx, "log")
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	if want := strings.Repeat("0123456789", 10); get.Val() != want {
		t.Fatalf("pipelined appends through a follower: %q", get.Val())
	}
	// Pipelines from clients in different databases, at once, through the
	// follower and the leader: forwarded together and packed into runs
	// (one log entry per database), each write lands in its own database.
	var wg sync.WaitGroup
	for db := 0; db < 4; db++ {
		for _, node := range []int{leader, (leader + 1) % 3} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := redis.NewClient(&redis.Options{Addr: c.RESPAddr(node), DB: db, Protocol: 2})
				defer r.Close()
				pipe := r.Pipeline()
				for i := 0; i < 50; i++ {
					pipe.Set(ctx, fmt.Sprintf("n%d:k%d", node, i), fmt.Sprintf("db%d", db), 0)
				}
				if _, err := pipe.Exec(ctx); err != nil {
					t.Error(err)
				}
			}()
		}
	}
	wg.Wait()
	for db := 0; db < 4; db++ {
		r := redis.NewClient(&redis.Options{Addr: c.RESPAddr((leader + 2) % 3), DB: db, Protocol: 2})
		for _, node := range []int{leader, (leader + 1) % 3} {
			for i := 0; i < 50; i += 7 {
				if got, err := r.Get(ctx, fmt.Sprintf("n%d:k%d", node, i)).Result(); err != nil || got != fmt.Sprintf("db%d", db) {
					t.Fatalf("db %d, key n%d:k%d: %q %v", db, node, i, got, err)
				}
			}
		}
		if n, err := r.DBSize(ctx).Result(); err != nil || n < 100 {
			t.Fatalf("db %d holds %d keys: %v", db, n, err)
		}
		r.Close()
	}
	assertConverged(t, c)
}

// assertConverged waits until every running node has applied the same
// index and checks that their states are identical (DEBUG DIGEST).
func assertConverged(t *testing.T, c *chaos.Cluster) {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var digests []string
		var applied []string
		for i := range c.Nodes() {
			if !c.Running(i) {
				continue
			}
			r := client(t, c, i)
			info, _ := r.Info(ctx, "raft").Result()
			applied = append(applied, infoField(info, "raft_applied_index"))
			d, _ := r.Do(ctx, "debug", "digest").Text()
			digests = append(digests, d)
		}
		same := true
		for i := range digests {
			same = same && digests[i] == digests[0] && applied[i] == applied[0] && digests[i] != ""
		}
		if same {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nodes did not converge: applied %v, digests %v", applied, digests)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func infoField(info, name string) string {
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, name+":"); ok {
			return v
		}
	}
	return ""
}

// load writes unique keys through random nodes until stop closes, and
// returns the keys whose SET was acknowledged with OK.
func load(t *testing.T, c *chaos.Cluster, workers int, stop chan struct{}, okCount *atomic.Int64) func() []string {
	var mu sync.Mutex
	var acked []string
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rng := rand.New(rand.NewSource(int64(w)))
			ctx := context.Background()
			for n := 0; n < 1_000_000; n++ {
				select {
				case <-stop:
					return
				default:
				}
				i := rng.Intn(len(c.Nodes()))
				if !c.Running(i) {
					continue
				}
				r := redis.NewClient(&redis.Options{Addr: c.RESPAddr(i), MaxRetries: -1, DialTimeout: 500 * time.Millisecond,
					ReadTimeout: 8 * time.Second, PoolSize: 1, Protocol: 2})
				for j := 0; j < 50; j++ {
					key := fmt.Sprintf("w%d-%d-%d", w, n, j)
					if r.Set(ctx, key, key, 0).Err() != nil {
						break
					}
					okCount.Add(1)
					mu.Lock()
					acked = append(acked, key)
					mu.Unlock()
				}
				r.Close()
			}
		}(w)
	}
	return func() []string {
		wg.Wait()
		return acked
	}
}

func assertPresent(t *testing.T, c *chaos.Cluster, keys []string) {
	t.Helper()
	ctx := context.Background()
	for i := range c.Nodes() {
		r := client(t, c, i)
		for start := 0; start < len(keys); start += 500 {
			batch := keys[start:min(start+500, len(keys))]
			vals, err := r.MGet(ctx, batch...).Result()
			if err != nil {
				t.Fatalf("node %d: mget: %v", i, err)
			}
			for k, v := range vals {
				if v != batch[k] {
					t.Fatalf("node %d lost acknowledged write %s (got %v)", i, batch[k], v)
				}
			}
		}
	}
}

// Killing the leader (SIGKILL) under load: a new leader serves within
// seconds and every acknowledged write survives.
func TestClusterLeaderKillUnderLoad(t *testing.T) {
	c := startCluster(t, 3)
	leader, err := c.Leader(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var ok atomic.Int64
	wait := load(t, c, 6, stop, &ok)
	waitFor(t, "writes before the kill", func() bool { return ok.Load() >= 300 })
	killed := time.Now()
	if err := c.Kill(leader); err != nil {
		t.Fatal(err)
	}
	before := ok.Load()
	waitFor(t, "writes after the kill", func() bool { return ok.Load() >= before+300 })
	t.Logf("failover: 300 more writes acknowledged %v after kill -9 of the leader", time.Since(killed))
	close(stop)
	acked := wait()
	if err := c.Start(leader); err != nil {
		t.Fatal(err)
	}
	// The old leader had entries no one else committed: as a follower it
	// truncates its log's tail. A second kill -9 right after must not leave
	// a log that will not open (raft-wal before v0.4.1 did exactly that).
	if err := c.Kill(leader); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(leader); err != nil {
		t.Fatal(err)
	}
	assertPresent(t, c, acked)
	assertConverged(t, c)
}

// kill -9 of every node at once loses nothing that was acknowledged.
func TestClusterKillAllRestart(t *testing.T) {
	c := startCluster(t, 3)
	stop := make(chan struct{})
	var ok atomic.Int64
	wait := load(t, c, 4, stop, &ok)
	waitFor(t, "writes", func() bool { return ok.Load() >= 1000 })
	for i := range c.Nodes() {
		if err := c.Kill(i); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	acked := wait()
	for i := range c.Nodes() {
		if err := c.Start(i); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Leader(20 * time.Second); err != nil {
		t.Fatal(err)
	}
	assertPresent(t, c, acked)
	assertConverged(t, c)
}

// A follower that was down while thousands of writes happened, and whose
// missing log was compacted away, catches up through a snapshot.
func TestClusterFollowerCatchesUpViaSnapshot(t *testing.T) {
	// Pipelines of 100 SETs are one log entry each (fsm.Run): the 3,000
	// writes below are ~30 entries, hence the small threshold.
	c := startCluster(t, 3, "--snapshot-threshold", "8", "--trailing-logs", "4", "--snapshot-interval", "200ms", "--wal-segment-size", "262144")
	leader, err := c.Leader(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	follower := (leader + 1) % 3
	ctx0 := context.Background()
	info, err := client(t, c, follower).Info(ctx0, "raft").Result()
	if err != nil {
		t.Fatal(err)
	}
	stoppedAt, _ := strconv.ParseUint(infoField(info, "raft_last_index"), 10, 64)
	if err := c.Stop(follower); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	r := client(t, c, leader)
	var keys []string
	for i := 0; i < 3000; i += 100 {
		pipe := r.Pipeline()
		for j := i; j < i+100; j++ {
			k := "s" + strconv.Itoa(j)
			keys = append(keys, k)
			pipe.Set(ctx, k, strings.Repeat(k, 100), 0)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// Start the follower only once the leader's log no longer reaches back to
	// where the follower stopped: only a snapshot can bring it up to date.
	waitFor(t, "the leader to compact its log past the stopped follower", func() bool {
		info, err := r.Info(ctx, "raft").Result()
		first, _ := strconv.ParseUint(infoField(info, "raft_first_index"), 10, 64)
		return err == nil && first > stoppedAt+1
	})
	if err := c.Start(follower); err != nil {
		t.Fatal(err)
	}
	assertConverged(t, c)
	logPath := filepath.Join(filepath.Dir(c.Nodes()[follower].DataDir), c.Nodes()[follower].ID+".log")
	if b, err := os.ReadFile(logPath); err == nil && !strings.Contains(strings.ToLower(string(b)), "installed remote snapshot") {
		t.Fatalf("follower caught up without installing a snapshot; the log compaction settings did not take effect")
	}
}

// waitFor polls cond; a condition, not a sleep, is what tests wait on.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
