package raftnode

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/redraft/redraft/fsm"
)

// Node-to-node RPCs, over the mux's RPC connections. One request at a time
// per connection; a pool keeps connections per peer. Frames:
//
//	request:  op(1) len(4) payload
//	response: status(1) len(4) payload
const (
	opApply     byte = 'A' // payload: entries (no time: the leader stamps); reply: replies for a prefix
	opReadIndex byte = 'R' // reply: the leader's read index and clock (8+8 bytes)
	opInfo      byte = 'I' // reply: this node's RESP address

	statusOK        byte = 0
	statusErr       byte = 1
	statusNotLeader byte = 2

	maxFrame = 1 << 30
)

var errRemoteNotLeader = errors.New("raftnode: peer is not the leader")

func (n *Node) serveRPC(c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	w := bufio.NewWriter(c)
	for {
		op, payload, err := readFrame(r)
		if err != nil {
			return
		}
		status, reply := n.handleRPC(op, payload)
		if err := writeFrame(w, status, reply); err != nil {
			return
		}
		if err := w.Flush(); err != nil {
			return
		}
	}
}

func (n *Node) handleRPC(op byte, payload []byte) (byte, []byte) {
	switch op {
	case opInfo:
		return statusOK, []byte(n.cfg.RESPAddr)
	case opReadIndex:
		ctx, cancel := context.WithTimeout(context.Background(), roundTimeout)
		defer cancel()
		r, err := n.leaderReads.wait(ctx)
		if errors.Is(err, errNotLeader) {
			return statusNotLeader, nil
		}
		if err != nil {
			return statusErr, []byte(err.Error())
		}
		return statusOK, binary.BigEndian.AppendUint64(putU64(r.index), uint64(r.now))
	case opApply:
		if !n.IsLeader() {
			return statusNotLeader, nil
		}
		entries, err := decodeEntries(payload)
		if err != nil {
			return statusErr, []byte(err.Error())
		}
		return statusOK, encodeReplies(n.prop.proposeNow(entries))
	}
	return statusErr, []byte(fmt.Sprintf("unknown op %q", op))
}

// forwardRPC sends entries to the leader in one RPC. It returns the
// replies of a prefix of entries, and uncertain=true when the exchange broke
// after the request may have reached the leader.
func (n *Node) forwardRPC(ctx context.Context, leader string, entries []fsm.Entry) (replies [][]byte, uncertain bool) {
	resp, err := n.call(ctx, leader, opApply, encodeEntries(entries))
	var sent *sentError
	switch {
	case err == nil:
		replies, err = decodeReplies(resp)
		if err != nil || len(replies) > len(entries) {
			return nil, true
		}
		return replies, false
	case errors.As(err, &sent):
		return nil, true
	default:
		return nil, false // never reached the leader, or it refused: not applied
	}
}

// sentError marks a failure after the request was written: the peer may
// have acted on it.
type sentError struct{ err error }

func (e *sentError) Error() string { return e.err.Error() }

// call makes one RPC to addr.
func (n *Node) call(ctx context.Context, addr string, op byte, payload []byte) ([]byte, error) {
	pc, err := n.pool.get(addr, func() (net.Conn, error) { return n.mux.dial(addr, muxRPC, time.Second) })
	if err != nil {
		return nil, err
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(10 * time.Second)
	}
	pc.c.SetDeadline(deadline)
	n.pool.begin(addr, pc)
	defer n.pool.end(addr, pc)
	if err := writeFrame(pc.w, op, payload); err != nil {
		pc.c.Close()
		return nil, err
	}
	if err := pc.w.Flush(); err != nil {
		pc.c.Close()
		return nil, &sentError{err}
	}
	status, reply, err := readFrame(pc.r)
	if err != nil {
		pc.c.Close()
		return nil, &sentError{err}
	}
	n.pool.put(addr, pc)
	switch status {
	case statusOK:
		return reply, nil
	case statusNotLeader:
		return nil, errRemoteNotLeader
	default:
		return nil, fmt.Errorf("raftnode: peer %s: %s", addr, reply)
	}
}

func writeFrame(w *bufio.Writer, kind byte, payload []byte) error {
	var h [5]byte
	h[0] = kind
	binary.BigEndian.PutUint32(h[1:], uint32(len(payload)))
	if _, err := w.Write(h[:]); err != nil {
		return err
	}
	_, err := w.Write(payload)
	return err
}

func readFrame(r *bufio.Reader) (byte, []byte, error) {
	var h [5]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	l := binary.BigEndian.Uint32(h[1:])
	if l > maxFrame {
		return 0, nil, errors.New("raftnode: frame too large")
	}
	b := make([]byte, l)
	if _, err := io.ReadFull(r, b); err != nil {
		return 0, nil, err
	}
	return h[0], b, nil
}

// encodeEntries packs entries for forwarding, without a time: the leader
// stamps them.
func encodeEntries(entries []fsm.Entry) []byte {
	var b []byte
	b = binary.AppendUvarint(b, uint64(len(entries)))
	for _, e := range entries {
		enc := e.Encode()
		b = binary.AppendUvarint(b, uint64(len(enc)))
		b = append(b, enc...)
	}
	return b
}

func decodeEntries(b []byte) ([]fsm.Entry, error) {
	chunks, err := splitChunks(b)
	if err != nil {
		return nil, err
	}
	entries := make([]fsm.Entry, len(chunks))
	for i, c := range chunks {
		if entries[i], err = fsm.DecodeEntry(c); err != nil {
			return nil, err
		}
		entries[i].Now = 0
	}
	return entries, nil
}

func encodeReplies(replies [][]byte) []byte {
	var b []byte
	b = binary.AppendUvarint(b, uint64(len(replies)))
	for _, r := range replies {
		b = binary.AppendUvarint(b, uint64(len(r)))
		b = append(b, r...)
	}
	return b
}

func decodeReplies(b []byte) ([][]byte, error) { return splitChunks(b) }

func splitChunks(b []byte) ([][]byte, error) {
	count, n := binary.Uvarint(b)
	if n <= 0 || count > uint64(len(b)) {
		return nil, errors.New("raftnode: malformed frame")
	}
	b = b[n:]
	out := make([][]byte, 0, count)
	for i := uint64(0); i < count; i++ {
		l, n := binary.Uvarint(b)
		if n <= 0 || l > uint64(len(b)-n) {
			return nil, errors.New("raftnode: malformed frame")
		}
		out = append(out, b[n:n+int(l)])
		b = b[n+int(l):]
	}
	return out, nil
}

func putU64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }
func getU64(b []byte) uint64 { return binary.BigEndian.Uint64(b) }

// pool keeps idle RPC connections per peer, and knows the ones in use so
// that calls to a leader that has been replaced can be cut short.
type pool struct {
	mu     sync.Mutex
	idle   map[string][]*pconn
	busy   map[string]map[*pconn]struct{}
	closed bool
}

func (p *pool) begin(addr string, pc *pconn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.busy[addr] == nil {
		p.busy[addr] = map[*pconn]struct{}{}
	}
	p.busy[addr][pc] = struct{}{}
}

func (p *pool) end(addr string, pc *pconn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.busy[addr], pc)
}

// abort fails every call in flight to addr now: a new leader has been
// elected, and a forwarded write or read-index round waiting on the old one
// (paused, cut off) would otherwise wait out its whole deadline.
func (p *pool) abort(addr string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for pc := range p.busy[addr] {
		pc.c.SetDeadline(time.Now())
	}
}

type pconn struct {
	c net.Conn
	r *bufio.Reader
	w *bufio.Writer
}

const maxIdlePerPeer = 64

func newPool() *pool {
	return &pool{idle: map[string][]*pconn{}, busy: map[string]map[*pconn]struct{}{}}
}

func (p *pool) get(addr string, dial func() (net.Conn, error)) (*pconn, error) {
	p.mu.Lock()
	if l := p.idle[addr]; len(l) > 0 {
		pc := l[len(l)-1]
		p.idle[addr] = l[:len(l)-1]
		p.mu.Unlock()
		return pc, nil
	}
	p.mu.Unlock()
	c, err := dial()
	if err != nil {
		return nil, err
	}
	return &pconn{c: c, r: bufio.NewReader(c), w: bufio.NewWriter(c)}, nil
}

func (p *pool) put(addr string, pc *pconn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || len(p.idle[addr]) >= maxIdlePerPeer {
		pc.c.Close()
		return
	}
	p.idle[addr] = append(p.idle[addr], pc)
}

func (p *pool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for _, l := range p.idle {
		for _, pc := range l {
			pc.c.Close()
		}
	}
	p.idle = nil
}
