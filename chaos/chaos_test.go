package chaos

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestChaosShort runs three real nodes for about 40 seconds through a kill
// -9 of the leader, a SIGSTOP of the leader, a partition isolating the
// leader and one-way loss towards it, and fails on any violation: a
// non-linearizable register, counter or Lua (EVAL read-modify-write)
// counter history, a lock the server granted twice, an acknowledged write
// missing after the final heal, pub/sub messages duplicated, out of order or
// missing, or a cluster that did not recover.
func TestChaosShort(t *testing.T) {
	bin := testBinary(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "report")
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	rep, err := Run(context.Background(), Config{
		Binary:   bin,
		Nodes:    3,
		Duration: 40 * time.Second,
		Kinds:    []string{FaultKillLeader, FaultPauseLeader, FaultIsolateLeader, FaultOneWayToLeader},
		Seed:     1,
		Dir:      filepath.Join(dir, "nodes"),
		Out:      out,
		Progress: testWriter{t},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("report:\n%s", rep.Text())
	if len(rep.Violations) > 0 {
		t.Errorf("%d violations; node logs under %s", len(rep.Violations), dir)
	}
	// The run must have exercised the cluster, not just idled.
	if rep.Ops["all"].OK == 0 || rep.Locks == nil || rep.Locks.Acquisitions == 0 {
		t.Errorf("the workloads did nothing: %+v", rep.Ops["all"])
	}
	if s := rep.Ops[KindEvalIncr]; s == nil || s.OK == 0 {
		t.Errorf("no EVAL was acknowledged: %+v", s)
	}
	if rep.PubSub == nil || rep.PubSub.Received == 0 || rep.PubSub.GapChecked == 0 {
		t.Errorf("pub/sub checked nothing: %+v", rep.PubSub)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p[:len(p)-1]))
	return len(p), nil
}
