package chaos

import (
	"fmt"
	"net"
	"sync"
	"time"
)

// Proxy is a TCP fault injector between the nodes' Raft/RPC ports. Peers dial
// the proxy's listener for node `to`; the proxy knows the node a connection
// comes from by its source IP (node i dials from 127.0.0.(11+i)), so every
// byte belongs to a directed link from→to and can be cut, dropped or delayed
// per link. Connections from unknown sources (tools, tests) are never
// faulted.
type Proxy struct {
	mu      sync.Mutex
	lns     []net.Listener
	targets []string
	rules   map[link]rule
	conns   map[*pconn]struct{}
	closed  bool
	wg      sync.WaitGroup
}

type link struct{ from, to int }

type rule struct {
	cut   bool          // connections severed and refused
	drop  bool          // bytes silently discarded (a black hole)
	delay time.Duration // added to every byte's delivery
}

// NewProxy listens on one OS-picked loopback port per node. The listeners
// stay open for the proxy's life: they are the nodes' advertised addresses.
func NewProxy(nodes int) (*Proxy, error) {
	p := &Proxy{
		targets: make([]string, nodes),
		rules:   map[link]rule{},
		conns:   map[*pconn]struct{}{},
	}
	for i := 0; i < nodes; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			p.Close()
			return nil, err
		}
		p.lns = append(p.lns, ln)
	}
	for i, ln := range p.lns {
		p.wg.Add(1)
		go p.accept(i, ln)
	}
	return p, nil
}

// Addr is the address peers dial to reach node i.
func (p *Proxy) Addr(i int) string { return p.lns[i].Addr().String() }

// SetTarget tells the proxy where node i's Raft listener really is (it
// changes when the node restarts on port 0).
func (p *Proxy) SetTarget(i int, addr string) {
	p.mu.Lock()
	p.targets[i] = addr
	p.mu.Unlock()
}

// Partition splits the nodes into groups that cannot reach each other.
// A node named in no group is cut off from every other node.
func (p *Proxy) Partition(groups ...[]int) {
	group := make([]int, len(p.lns))
	for i := range group {
		group[i] = -1 - i
	}
	for g, members := range groups {
		for _, m := range members {
			group[m] = g
		}
	}
	p.mu.Lock()
	for a := range group {
		for b := range group {
			if a != b && group[a] != group[b] {
				r := p.rules[link{a, b}]
				r.cut = true
				p.rules[link{a, b}] = r
			}
		}
	}
	p.mu.Unlock()
	p.sever()
}

// Isolate cuts node i off from all others.
func (p *Proxy) Isolate(i int) {
	var rest []int
	for j := range p.lns {
		if j != i {
			rest = append(rest, j)
		}
	}
	p.Partition([]int{i}, rest)
}

// DropOneWay black-holes every byte node `from` sends to node `to`, on
// existing and new connections alike, while bytes the other way still flow.
// TCP cannot lose bytes mid-stream and go on, so a connection that lost
// bytes is severed when the loss is healed.
func (p *Proxy) DropOneWay(from, to int) {
	p.mu.Lock()
	r := p.rules[link{from, to}]
	r.drop = true
	p.rules[link{from, to}] = r
	p.mu.Unlock()
}

// Delay adds d to the delivery of everything node `from` sends to node `to`.
// Order is kept.
func (p *Proxy) Delay(from, to int, d time.Duration) {
	p.mu.Lock()
	r := p.rules[link{from, to}]
	r.delay = d
	p.rules[link{from, to}] = r
	p.mu.Unlock()
}

// Heal removes every fault. Connections that lost bytes are closed (their
// streams are corrupt); the nodes reconnect.
func (p *Proxy) Heal() {
	p.mu.Lock()
	p.rules = map[link]rule{}
	var tainted []*pconn
	for c := range p.conns {
		if c.isTainted() {
			tainted = append(tainted, c)
		}
	}
	p.mu.Unlock()
	for _, c := range tainted {
		c.close()
	}
}

// Close stops the listeners and closes every connection.
func (p *Proxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	conns := make([]*pconn, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	p.mu.Unlock()
	for _, ln := range p.lns {
		ln.Close()
	}
	for _, c := range conns {
		c.close()
	}
	p.wg.Wait()
}

// String describes the active faults, for logs.
func (p *Proxy) String() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := ""
	for l, r := range p.rules {
		s += fmt.Sprintf(" n%d->n%d%+v", l.from+1, l.to+1, r)
	}
	if s == "" {
		return "healthy"
	}
	return s[1:]
}

func (p *Proxy) rule(from, to int) rule {
	if from < 0 || to < 0 {
		return rule{}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rules[link{from, to}]
}

// sever closes established connections on links that are now cut: a
// partition must stop traffic that is already flowing, not only new dials.
func (p *Proxy) sever() {
	p.mu.Lock()
	var cut []*pconn
	for c := range p.conns {
		if p.rules[link{c.from, c.to}].cut || p.rules[link{c.to, c.from}].cut {
			cut = append(cut, c)
		}
	}
	p.mu.Unlock()
	for _, c := range cut {
		c.close()
	}
}

// fromIP maps a source address to the node that owns that loopback IP.
func (p *Proxy) fromIP(addr net.Addr) int {
	ta, ok := addr.(*net.TCPAddr)
	if !ok {
		return -1
	}
	for i := range p.lns {
		if ta.IP.String() == nodeIP(i) {
			return i
		}
	}
	return -1
}

func (p *Proxy) accept(to int, ln net.Listener) {
	defer p.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go p.handle(c, p.fromIP(c.RemoteAddr()), to)
	}
}

func (p *Proxy) handle(client net.Conn, from, to int) {
	defer p.wg.Done()
	if p.rule(from, to).cut || p.rule(to, from).cut {
		client.Close()
		return
	}
	p.mu.Lock()
	target := p.targets[to]
	p.mu.Unlock()
	if target == "" {
		client.Close()
		return
	}
	server, err := net.DialTimeout("tcp", target, 2*time.Second)
	if err != nil {
		client.Close()
		return
	}
	c := &pconn{from: from, to: to, client: client, server: server}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		c.close()
		return
	}
	p.conns[c] = struct{}{}
	p.mu.Unlock()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.pump(c, client, server, from, to) }()
	go func() { defer wg.Done(); p.pump(c, server, client, to, from) }()
	wg.Wait()
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

type chunk struct {
	data []byte
	due  time.Time
}

// pump copies src→dst for the link from→to, applying that link's rule to
// each chunk as it is read. A separate writer delivers chunks in order at
// their due time, so a delay slows the link without reordering it.
func (p *Proxy) pump(c *pconn, src, dst net.Conn, from, to int) {
	queue := make(chan chunk, 256)
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		for ch := range queue {
			if d := time.Until(ch.due); d > 0 {
				time.Sleep(d)
			}
			if _, err := dst.Write(ch.data); err != nil {
				c.close()
				for range queue {
				}
				return
			}
		}
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			r := p.rule(from, to)
			switch {
			case r.cut:
				c.close()
			case r.drop:
				c.taint()
			default:
				queue <- chunk{data: append([]byte(nil), buf[:n]...), due: time.Now().Add(r.delay)}
			}
		}
		if err != nil {
			break
		}
	}
	close(queue)
	<-writerDone
	// Half-close so the peer sees EOF the way it would without the proxy;
	// a full close happens when both directions are done.
	if tc, ok := dst.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
	c.halfDone()
}

// pconn is one proxied connection.
type pconn struct {
	from, to       int
	client, server net.Conn
	mu             sync.Mutex
	tainted        bool
	halves         int
	closed         bool
}

func (c *pconn) taint() {
	c.mu.Lock()
	c.tainted = true
	c.mu.Unlock()
}

func (c *pconn) isTainted() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.tainted
}

func (c *pconn) halfDone() {
	c.mu.Lock()
	c.halves++
	both := c.halves == 2
	c.mu.Unlock()
	if both {
		c.close()
	}
}

func (c *pconn) close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.mu.Unlock()
	// SetLinger(0) sends RST: the peer learns at once that the link is gone,
	// as it would from a router that drops its state.
	for _, nc := range []net.Conn{c.client, c.server} {
		if tc, ok := nc.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		_ = nc.Close()
	}
}
