package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// An online backup taken from a running node seeds a new cluster that holds
// the same data and accepts new writes on top of it.
func TestSnapshotSaveAndRestore(t *testing.T) {
	c := startCluster(t, 1, "--http-addr", "127.0.0.1:0")
	ctx := context.Background()
	r := client(t, c, 0)
	for i := 0; i < 500; i++ {
		if err := r.Set(ctx, fmt.Sprintf("k%d", i), i, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Incr(ctx, "n").Err(); err != nil {
		t.Fatal(err)
	}
	var addrs map[string]string
	b, err := os.ReadFile(filepath.Join(c.Nodes()[0].DataDir, "addrs.json"))
	if err != nil || json.Unmarshal(b, &addrs) != nil || addrs["http"] == "" {
		t.Fatalf("addrs.json: %s %v", b, err)
	}
	dir := t.TempDir()
	backup := filepath.Join(dir, "backup.db")
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(binary(t), args...).CombinedOutput(); err != nil {
			t.Fatalf("redraft %v: %v\n%s", args, err, out)
		}
	}
	run("snapshot", "save", backup, "--http-addr", addrs["http"])
	fresh := t.TempDir()
	seeded := filepath.Join(fresh, "n1") // where chaos.StartCluster puts node n1's data
	run("snapshot", "restore", backup, "--data-dir", seeded)
	if out, err := exec.Command(binary(t), "snapshot", "restore", backup, "--data-dir", seeded).CombinedOutput(); err == nil {
		t.Fatalf("restore over existing state must be refused:\n%s", out)
	}

	// A fresh single-node cluster on the seeded dir.
	c2 := startClusterIn(t, fresh, 1)
	r2 := client(t, c2, 0)
	if v, err := r2.Get(ctx, "k499").Result(); err != nil || v != "499" {
		t.Fatalf("seeded k499 = %q %v", v, err)
	}
	if n, err := r2.Incr(ctx, "n").Result(); err != nil || n != 2 {
		t.Fatalf("incr on seeded data = %d %v, want 2 (new entries apply on top)", n, err)
	}
}
