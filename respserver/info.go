package respserver

import (
	"fmt"
	"net"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redraft/redraft/fsm"
)

// redisVersion is the Redis version redraft answers as: the command surface
// it matches (Redis 7.2's, see COMPAT.md).
const redisVersion = "7.2.0"

func (s *Server) role() string {
	if s.node.IsLeader() {
		return "master"
	}
	return "slave"
}

func splitHostPort(addr string) (string, int) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return addr, 0
	}
	n, _ := strconv.Atoi(p)
	return h, n
}

// cmdRole answers as Redis's ROLE does: master with its replicas on the
// leader, slave with the leader's client address on followers.
func cmdRole(c *conn, _ [][]byte) {
	st := c.s.node.Status()
	if c.s.node.IsLeader() {
		peers := c.s.node.PeerRESPAddrs()
		b := fsm.AppendArray(nil, 3)
		b = fsm.AppendBulkString(b, "master")
		b = fsm.AppendInt(b, int64(st.AppliedIndex))
		b = fsm.AppendArray(b, len(peers))
		for _, p := range peers {
			h, port := splitHostPort(p)
			b = fsm.AppendArray(b, 3)
			b = fsm.AppendBulkString(b, h)
			b = fsm.AppendBulkString(b, strconv.Itoa(port))
			b = fsm.AppendBulkString(b, strconv.FormatUint(st.AppliedIndex, 10))
		}
		c.write(b)
		return
	}
	host, port := "", -1
	state := "connect"
	if addr, ok := c.s.node.LeaderRESPAddr(); ok {
		host, port = splitHostPort(addr)
		state = "connected"
	}
	b := fsm.AppendArray(nil, 5)
	b = fsm.AppendBulkString(b, "slave")
	b = fsm.AppendBulkString(b, host)
	b = fsm.AppendInt(b, int64(port))
	b = fsm.AppendBulkString(b, state)
	b = fsm.AppendInt(b, int64(st.AppliedIndex))
	c.write(b)
}

var infoSections = []string{"server", "clients", "memory", "persistence", "stats", "replication", "cpu", "raft", "keyspace"}

// cmdInfo carries what ioredis's ready check parses (loading, role,
// redis_version) and what operators look for, in Redis's format.
func cmdInfo(c *conn, args [][]byte) {
	want := map[string]bool{}
	for _, a := range args[1:] {
		want[strings.ToLower(string(a))] = true
	}
	all := len(want) == 0 || want["all"] || want["everything"] || want["default"]
	var b strings.Builder
	for _, sec := range infoSections {
		if !all && !want[sec] {
			continue
		}
		if b.Len() > 0 {
			b.WriteString("\r\n")
		}
		b.WriteString("# " + strings.ToUpper(sec[:1]) + sec[1:] + "\r\n")
		for _, kv := range c.s.infoSection(sec) {
			b.WriteString(kv[0] + ":" + kv[1] + "\r\n")
		}
	}
	c.writeBulkString(b.String())
}

func (s *Server) infoSection(sec string) [][2]string {
	st := s.node.Status()
	i := func(n int64) string { return strconv.FormatInt(n, 10) }
	u := func(n uint64) string { return strconv.FormatUint(n, 10) }
	switch sec {
	case "server":
		up := time.Since(s.started)
		_, port := splitHostPort(s.ln.Addr().String())
		return [][2]string{
			{"redis_version", redisVersion}, {"redraft_version", s.cfg.Version}, {"redis_mode", "standalone"},
			{"os", runtime.GOOS + " " + runtime.GOARCH}, {"arch_bits", "64"}, {"go_version", runtime.Version()},
			{"process_id", strconv.Itoa(os.Getpid())}, {"run_id", st.ID}, {"tcp_port", strconv.Itoa(port)},
			{"uptime_in_seconds", i(int64(up.Seconds()))}, {"uptime_in_days", i(int64(up.Hours() / 24))},
		}
	case "clients":
		return [][2]string{
			{"connected_clients", strconv.Itoa(len(s.clients()))}, {"blocked_clients", "0"},
			{"maxclients", strconv.Itoa(s.cfg.MaxClients)},
		}
	case "memory":
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return [][2]string{
			{"used_memory", u(m.HeapAlloc)}, {"used_memory_human", human(m.HeapAlloc)},
			{"used_memory_rss", u(m.Sys)}, {"maxmemory", "0"}, {"maxmemory_policy", "noeviction"},
		}
	case "persistence":
		return [][2]string{{"loading", "0"}, {"aof_enabled", "1"}, {"rdb_changes_since_last_save", "0"}}
	case "stats":
		channels, patterns, delivered, dropped := s.pubsubStats()
		return [][2]string{
			{"total_connections_received", i(s.totalConns.Load())},
			{"total_commands_processed", i(s.totalCommands.Load())},
			{"rejected_connections", i(s.rejected.Load())},
			{"pubsub_channels", i(channels)}, {"pubsub_patterns", i(patterns)},
			{"pubsub_messages_delivered", i(delivered)}, {"pubsub_subscribers_dropped", i(dropped)},
		}
	case "replication":
		offset := u(st.AppliedIndex)
		if s.node.IsLeader() {
			peers := s.node.PeerRESPAddrs()
			out := [][2]string{{"role", "master"}, {"connected_slaves", strconv.Itoa(len(peers))}}
			for n, p := range peers {
				h, port := splitHostPort(p)
				out = append(out, [2]string{fmt.Sprintf("slave%d", n), fmt.Sprintf("ip=%s,port=%d,state=online,offset=%s,lag=0", h, port, offset)})
			}
			return append(out, [2]string{"master_repl_offset", offset})
		}
		host, port, link := "", "", "down"
		if addr, ok := s.node.LeaderRESPAddr(); ok {
			h, p := splitHostPort(addr)
			host, port, link = h, strconv.Itoa(p), "up"
		}
		return [][2]string{
			{"role", "slave"}, {"master_host", host}, {"master_port", port}, {"master_link_status", link},
			{"slave_repl_offset", offset}, {"slave_read_only", "0"}, {"connected_slaves", "0"}, {"master_repl_offset", offset},
		}
	case "cpu":
		return [][2]string{{"goroutines", strconv.Itoa(runtime.NumGoroutine())}}
	case "raft":
		ids := make([]string, 0, len(st.Servers))
		for _, p := range st.Servers {
			ids = append(ids, p.ID+"@"+p.Addr)
		}
		return [][2]string{
			{"raft_id", st.ID}, {"raft_state", strings.ToLower(st.State)}, {"raft_term", u(st.Term)},
			{"raft_leader_id", st.LeaderID}, {"raft_leader_addr", st.LeaderAddr},
			{"raft_commit_index", u(st.CommitIndex)}, {"raft_applied_index", u(st.AppliedIndex)},
			{"raft_last_index", u(st.LastIndex)}, {"raft_first_index", u(st.FirstIndex)},
			{"raft_peers", strings.Join(ids, ",")},
		}
	case "keyspace":
		var out [][2]string
		keys, expires := s.node.FSM().KeyCounts()
		for db, n := range keys {
			if n > 0 {
				out = append(out, [2]string{"db" + strconv.Itoa(db), "keys=" + i(n) + ",expires=" + i(expires[db]) + ",avg_ttl=0"})
			}
		}
		return out
	}
	return nil
}

func human(n uint64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2fG", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.2fM", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.2fK", float64(n)/(1<<10))
	}
	return strconv.FormatUint(n, 10) + "B"
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// cmdCommand answers COMMAND, COMMAND COUNT, COMMAND INFO and COMMAND DOCS
// (empty docs: redis-cli then uses its built-in hints).
func cmdCommand(c *conn, args [][]byte) {
	if len(args) == 1 {
		names := make([]string, 0, len(table))
		for n := range table {
			names = append(names, n)
		}
		sort.Strings(names)
		b := fsm.AppendArray(nil, len(names))
		for _, n := range names {
			b = appendCommandInfo(b, table[n])
		}
		c.write(b)
		return
	}
	switch strings.ToLower(string(args[1])) {
	case "count":
		c.writeInt(int64(len(table)))
	case "info":
		b := fsm.AppendArray(nil, len(args)-2)
		for _, a := range args[2:] {
			if cmd := lookup(a); cmd != nil {
				b = appendCommandInfo(b, cmd)
			} else {
				b = fsm.AppendNullArray(b)
			}
		}
		c.write(b)
	case "docs":
		c.write(fsm.AppendArray(nil, 0))
	case "list":
		names := make([]string, 0, len(table))
		for n := range table {
			names = append(names, n)
		}
		sort.Strings(names)
		b := fsm.AppendArray(nil, len(names))
		for _, n := range names {
			b = fsm.AppendBulkString(b, n)
		}
		c.write(b)
	default:
		c.writeError("ERR unknown subcommand '" + string(args[1]) + "'. Try COMMAND HELP.")
	}
}

func appendCommandInfo(b []byte, cmd *command) []byte {
	var fl []string
	first, last, step := 0, 0, 0
	if d := cmd.data; d != nil {
		if d.Flags&fsm.Write != 0 {
			fl = append(fl, "write")
		} else {
			fl = append(fl, "readonly")
		}
		first, last, step = d.FirstKey, d.LastKey, d.Step
	} else {
		fl = append(fl, "fast")
	}
	b = fsm.AppendArray(b, 10)
	b = fsm.AppendBulkString(b, cmd.name)
	b = fsm.AppendInt(b, int64(cmd.arity))
	b = fsm.AppendArray(b, len(fl))
	for _, f := range fl {
		b = fsm.AppendStatus(b, f)
	}
	b = fsm.AppendInt(b, int64(first))
	b = fsm.AppendInt(b, int64(last))
	b = fsm.AppendInt(b, int64(step))
	for i := 0; i < 4; i++ {
		b = fsm.AppendArray(b, 0)
	}
	return b
}
