package raftnode

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	wal "github.com/hashicorp/raft-wal"
	bolt "go.etcd.io/bbolt"
)

// logStore is where the Raft log and the node's vote/term live.
type logStore interface {
	raft.LogStore
	raft.StableStore
	io.Closer
}

// openLogStore opens the Raft log. The default is raft-wal: one fdatasync
// per batch on preallocated segment files. raft-boltdb costs two fsyncs and
// a B+tree rewrite per batch; measured here it spent ~30% of the leader's
// CPU in StoreLogs and capped writes well below the WAL (docs/benchmarks.md).
// "bolt" stays available for existing data dirs and comparison.
//
// raft-wal drops log prefixes a whole segment at a time, so with the
// default 64 MiB segments a compacted log still reaches back until a
// segment fills; segmentSize (bytes, 0 = default) lowers that.
func openLogStore(kind, dir string, segmentSize int, log hclog.Logger) (logStore, error) {
	switch kind {
	case "", "wal":
		walDir := filepath.Join(dir, "wal")
		if err := os.MkdirAll(walDir, 0o700); err != nil {
			return nil, err
		}
		if segmentSize <= 0 {
			segmentSize = wal.DefaultSegmentSize
		}
		w, err := wal.Open(walDir, wal.WithLogger(log), wal.WithSegmentSize(segmentSize))
		if err != nil {
			return nil, fmt.Errorf("raft wal: %w", err)
		}
		return w, nil
	case "bolt":
		b, err := raftboltdb.New(raftboltdb.Options{
			Path:        filepath.Join(dir, "raft.db"),
			BoltOptions: &bolt.Options{Timeout: time.Second, NoFreelistSync: true},
		})
		if err != nil {
			return nil, fmt.Errorf("raft bolt store: %w", err)
		}
		return b, nil
	}
	return nil, fmt.Errorf("unknown log store %q (wal or bolt)", kind)
}
