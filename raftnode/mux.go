package raftnode

import (
	"errors"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// One TCP port carries both Raft's own traffic and redraft's node-to-node
// RPCs (write forwarding, read index, node info): the first byte of every
// connection says which. Peers then need only the Raft address of a node,
// and a partition cuts both kinds of traffic alike.
const (
	muxRaft byte = 'r'
	muxRPC  byte = 'q'
)

type mux struct {
	ln     net.Listener
	local  *net.TCPAddr // dials originate from this IP, so faults can be injected per link
	raft   chan net.Conn
	rpc    func(net.Conn)
	closed chan struct{}
	once   sync.Once
}

func newMux(bind string, rpc func(net.Conn)) (*mux, error) {
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, err
	}
	tcp := ln.Addr().(*net.TCPAddr)
	m := &mux{
		ln:     ln,
		local:  &net.TCPAddr{IP: tcp.IP},
		raft:   make(chan net.Conn, 16),
		rpc:    rpc,
		closed: make(chan struct{}),
	}
	go m.serve()
	return m, nil
}

func (m *mux) serve() {
	for {
		c, err := m.ln.Accept()
		if err != nil {
			select {
			case <-m.closed:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond) // e.g. EMFILE: back off, do not spin
			continue
		}
		go m.route(c)
	}
}

func (m *mux) route(c net.Conn) {
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var b [1]byte
	if _, err := c.Read(b[:]); err != nil {
		c.Close()
		return
	}
	c.SetReadDeadline(time.Time{})
	switch b[0] {
	case muxRaft:
		select {
		case m.raft <- c:
		case <-m.closed:
			c.Close()
		}
	case muxRPC:
		m.rpc(c)
	default:
		c.Close()
	}
}

// dial opens a connection of the given kind to a peer.
func (m *mux) dial(addr string, kind byte, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout, LocalAddr: m.local}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	if _, err := c.Write([]byte{kind}); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func (m *mux) close() {
	m.once.Do(func() {
		close(m.closed)
		m.ln.Close()
	})
}

// streamLayer is the Raft side of the mux (raft.StreamLayer).
type streamLayer struct {
	m         *mux
	advertise net.Addr
}

func (s *streamLayer) Accept() (net.Conn, error) {
	select {
	case c := <-s.m.raft:
		return c, nil
	case <-s.m.closed:
		return nil, errors.New("raftnode: transport closed")
	}
}

func (s *streamLayer) Close() error   { s.m.close(); return nil }
func (s *streamLayer) Addr() net.Addr { return s.advertise }

func (s *streamLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return s.m.dial(string(addr), muxRaft, timeout)
}
