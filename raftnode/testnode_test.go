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
