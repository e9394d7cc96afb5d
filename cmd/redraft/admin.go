package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"

	"github.com/redraft/redraft/raftnode"
	"github.com/redraft/redraft/respserver"
)

// serveAdmin runs the operator's HTTP port: health, readiness, status,
// Prometheus metrics, an online backup (/snapshot) and pprof.
func serveAdmin(ln net.Listener, node *raftnode.Node, srv *respserver.Server) {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		st := node.Status()
		if st.LeaderID == "" || st.AppliedIndex < st.CommitIndex {
			http.Error(w, "not ready: no leader or not caught up", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.HandleFunc("/status", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"raft": node.Status(), "server": srv.Stats()})
	})
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, _ *http.Request) {
		st := node.Status()
		leader := 0
		if node.IsLeader() {
			leader = 1
		}
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		metric := func(name, help, typ string, v any) {
			fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n%s %v\n", name, help, name, typ, name, v)
		}
		metric("redraft_raft_is_leader", "1 if this node is the Raft leader.", "gauge", leader)
		metric("redraft_raft_term", "Current Raft term.", "gauge", st.Term)
		metric("redraft_raft_commit_index", "Raft commit index.", "gauge", st.CommitIndex)
		metric("redraft_raft_applied_index", "Index applied to the state machine.", "gauge", st.AppliedIndex)
		metric("redraft_raft_last_index", "Last index in the Raft log.", "gauge", st.LastIndex)
		metric("redraft_raft_servers", "Members in the Raft configuration.", "gauge", len(st.Servers))
		for k, v := range srv.Stats() {
			metric("redraft_"+k, "Server counter "+k+".", "counter", v)
		}
	})
	mux.HandleFunc("/snapshot", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		if _, err := node.FSM().Backup(w); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	})
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	http.Serve(ln, mux)
}
