// Package respserver speaks RESP2 to Redis clients: connections, parsing
// with Redis's limits, the command table, connection-level commands (AUTH,
// SELECT, CLIENT, INFO, HELLO...), and routing of data commands to the Raft
// node — writes through the log, reads behind a read barrier. It knows
// nothing of storage: replies come back from the node as RESP bytes.
package respserver

import (
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redraft/redraft/fsm"
	"github.com/redraft/redraft/raftnode"
)

// Config configures the client-facing server.
type Config struct {
	Addr          string
	RequirePass   string
	ProtectedMode bool // without a password, accept loopback clients only
	MaxClients    int
	MaxBulkLen    int64 // proto-max-bulk-len
	Version       string
	Logger        *slog.Logger
	// Pub/sub output buffer limits (client-output-buffer-limit pubsub):
	// bytes, 0 = Redis's default (32 MiB hard, 8 MiB soft, 60 s), < 0 = none.
	PubSubHardLimit int64
	PubSubSoftLimit int64
	PubSubSoftTime  time.Duration
}

// Server accepts Redis clients and serves them from a Raft node.
type Server struct {
	cfg     Config
	node    *raftnode.Node
	log     *slog.Logger
	ln      net.Listener
	started time.Time

	mu     sync.Mutex
	conns  map[*conn]struct{}
	closed bool

	nextID        atomic.Int64
	totalConns    atomic.Int64
	totalCommands atomic.Int64
	rejected      atomic.Int64

	ps pubsub // subscriptions on this node (pubsub.go)
}

// New makes a server for node; call Listen then Serve.
func New(cfg Config, node *raftnode.Node) *Server {
	if cfg.MaxClients == 0 {
		cfg.MaxClients = 10000
	}
	if cfg.MaxBulkLen == 0 {
		cfg.MaxBulkLen = 512 << 20
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Server{cfg: cfg, node: node, log: cfg.Logger, conns: map[*conn]struct{}{}, started: time.Now()}
}

// Listen binds the client address.
func (s *Server) Listen() error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return err
	}
	s.ln = ln
	return nil
}

// Addr is the bound address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Serve accepts clients until Close.
func (s *Server) Serve() error {
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed || errors.Is(err, net.ErrClosed) {
				return nil
			}
			time.Sleep(10 * time.Millisecond) // EMFILE and friends: back off
			continue
		}
		s.totalConns.Add(1)
		if tc, ok := nc.(*net.TCPConn); ok {
			tc.SetNoDelay(true)
			tc.SetKeepAlive(true)
			tc.SetKeepAlivePeriod(300 * time.Second)
		}
		if reply := s.refuse(nc); reply != "" {
			s.rejected.Add(1)
			nc.SetWriteDeadline(time.Now().Add(time.Second))
			nc.Write([]byte(reply))
			nc.Close()
			continue
		}
		c := newConn(s, nc)
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			nc.Close()
			return nil
		}
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		go c.serve()
	}
}

const deniedReply = "-DENIED redraft is running in protected mode because no password is set: only loopback clients are accepted. Set --requirepass, or start with --protected-mode no if this network is trusted.\r\n"

// refuse returns the error a new client gets instead of service, if any.
func (s *Server) refuse(nc net.Conn) string {
	if s.cfg.ProtectedMode && s.cfg.RequirePass == "" {
		if a, ok := nc.RemoteAddr().(*net.TCPAddr); ok && !a.IP.IsLoopback() {
			return deniedReply
		}
	}
	s.mu.Lock()
	n := len(s.conns)
	s.mu.Unlock()
	if n >= s.cfg.MaxClients {
		return "-ERR max number of clients reached\r\n"
	}
	return ""
}

func (s *Server) forget(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// Close stops accepting and closes every client connection.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	err := s.ln.Close()
	for _, c := range conns {
		c.nc.Close()
	}
	return err
}

// clients returns the live connections, for CLIENT LIST and INFO.
func (s *Server) clients() []*conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		out = append(out, c)
	}
	return out
}

// Attach sets the node the server serves from; the listener may be bound
// before the node exists (its address is part of the node's config).
func (s *Server) Attach(node *raftnode.Node) {
	s.node = node
	node.FSM().SetHooks(fsm.Hooks{Publish: s.deliver}) // applied PUBLISHes reach our subscribers
}

// Stats are the server's counters, for INFO, /status and /metrics.
func (s *Server) Stats() map[string]int64 {
	channels, patterns, delivered, dropped := s.pubsubStats()
	return map[string]int64{
		"connected_clients":          int64(len(s.clients())),
		"total_connections_received": s.totalConns.Load(),
		"total_commands_processed":   s.totalCommands.Load(),
		"rejected_connections":       s.rejected.Load(),
		"pubsub_channels":            channels,
		"pubsub_patterns":            patterns,
		"pubsub_messages_delivered":  delivered,
		"pubsub_subscribers_dropped": dropped,
	}
}
