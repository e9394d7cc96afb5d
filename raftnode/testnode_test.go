package raftnode

import (
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"
)

// openTestNode opens a real node for a test: on a loopback port the OS
// picks, in a temporary directory, logging nowhere, with a long election
// wait so a slow machine does not fail writes. It closes with the test.
func openTestNode(t *testing.T, cfg Config) *Node {
	t.Helper()
	if cfg.ID == "" {
		cfg.ID = "n1"
	}
	cfg.RaftBind = "127.0.0.1:0"
	cfg.DataDir = filepath.Join(t.TempDir(), cfg.ID)
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	if cfg.ElectionWait == 0 {
		cfg.ElectionWait = 30 * time.Second
	}
	n, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// write runs one command through n and fails the test on an error reply.
func write(t *testing.T, n *Node, args ...string) {
	t.Helper()
	cmd := make([][]byte, len(args))
	for i, a := range args {
		cmd[i] = []byte(a)
	}
	if r := n.Write(0, [][][]byte{cmd}); r[0][0] == '-' {
		t.Fatalf("%s: %q", args[0], r[0])
	}
}

// waitFor polls cond until it holds, failing the test with what() after
// 30 s.
func waitFor(t *testing.T, cond func() bool, what func() string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal(what())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
