package raftnode

import (
	"bytes"
	"context"
	"io"
	"log/slog"

	"github.com/hashicorp/go-hclog"
)

// newHCLogger bridges hashicorp/raft's hclog output into slog, so one
// process writes one log stream in one format.
func newHCLogger(l *slog.Logger) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:            "raft",
		Level:           hclog.Info,
		Output:          &slogWriter{l: l},
		DisableTime:     true,
		IncludeLocation: false,
	})
}

type slogWriter struct{ l *slog.Logger }

// Write receives one formatted hclog line: "[LEVEL] name: message: k=v".
func (w *slogWriter) Write(p []byte) (int, error) {
	line := bytes.TrimSpace(p)
	level := slog.LevelInfo
	for prefix, lv := range map[string]slog.Level{"[TRACE]": slog.LevelDebug, "[DEBUG]": slog.LevelDebug, "[INFO]": slog.LevelInfo, "[WARN]": slog.LevelWarn, "[ERROR]": slog.LevelError} {
		if bytes.HasPrefix(line, []byte(prefix)) {
			level = lv
			line = bytes.TrimSpace(line[len(prefix):])
			break
		}
	}
	w.l.Log(context.Background(), level, string(line))
	return len(p), nil
}

var _ io.Writer = (*slogWriter)(nil)
