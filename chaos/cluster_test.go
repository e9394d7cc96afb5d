package chaos

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// testBinary builds ./cmd/redraft once per test run (or takes the binary
// named by REDRAFT_CHAOS_BINARY). While the server is still being written it
// may not build; REDRAFT_CHAOS_OPTIONAL=1 turns that into a skip instead of
// a failure.
func testBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		if bin := os.Getenv("REDRAFT_CHAOS_BINARY"); bin != "" {
			builtBin = bin
			return
		}
		dir, err := os.MkdirTemp("", "redraft-chaos-bin")
		if err != nil {
			buildErr = err
			return
		}
		builtBin, buildErr = BuildBinary(dir)
	})
	if buildErr != nil {
		if os.Getenv("REDRAFT_CHAOS_OPTIONAL") == "1" {
			t.Skipf("redraft binary does not build (REDRAFT_CHAOS_OPTIONAL=1): %v", buildErr)
		}
		t.Fatalf("building the redraft binary: %v", buildErr)
	}
	return builtBin
}

// TestClusterLifecycle exercises the harness against the real binary: every
// lifecycle call and every proxy fault must leave a cluster that elects one
// leader and serves writes from any node.
func TestClusterLifecycle(t *testing.T) {
	bin := testBinary(t)
	c, err := StartCluster(ClusterConfig{Binary: bin, Nodes: 3, Dir: t.TempDir(), Proxy: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	defer c.Close() // twice is allowed

	write := func(via int, val string) {
		t.Helper()
		cl := NewClient(c, via, 10*time.Second)
		defer cl.Close()
		// An election may be under way. Setting the same value again is
		// idempotent, so retrying whatever the error is safe. Bounded.
		var err error
		for range 20 {
			if err = cl.Set(context.Background(), "k", val, 0).Err(); err == nil {
				break
			}
			t.Logf("SET via %s: %v (retrying)", c.Nodes()[via].ID, err)
		}
		if err != nil {
			t.Fatalf("SET via %s: %v", c.Nodes()[via].ID, err)
		}
		got, err := cl.Get(context.Background(), "k").Result()
		if err != nil || got != val {
			t.Fatalf("GET via %s = %q, %v; want %q", c.Nodes()[via].ID, got, err, val)
		}
	}
	leader := func() int {
		t.Helper()
		l, err := c.Leader(30 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	// A fault takes an election timeout to be noticed: wait for a leader
	// that is not the node just cut off.
	newLeader := func(old int) int {
		t.Helper()
		l, err := c.WaitLeader(30*time.Second, func(l int) bool { return l != old })
		if err != nil {
			t.Fatal(err)
		}
		return l
	}

	l := leader()
	f := (l + 1) % 3
	write(f, "through-follower")

	oldAddr := c.RESPAddr(l)
	if err := c.Kill(l); err != nil {
		t.Fatal(err)
	}
	newLeader(l)
	write(f, "after-kill")
	if err := c.Start(l); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s restarted: %s -> %s", c.Nodes()[l].ID, oldAddr, c.RESPAddr(l))
	write(l, "after-restart")

	l = leader()
	if err := c.Pause(l); err != nil {
		t.Fatal(err)
	}
	nl := newLeader(l)
	write(nl, "during-pause")
	if err := c.Resume(l); err != nil {
		t.Fatal(err)
	}
	write(l, "after-resume")

	l = leader()
	c.Proxy().Isolate(l)
	nl = newLeader(l)
	write(nl, "during-partition")
	c.Proxy().Heal()
	write(l, "after-heal")

	if err := c.Stop(leader()); err != nil {
		t.Fatal(err)
	}
	write(leader(), "after-stop")
}
