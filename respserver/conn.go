package respserver

import (
	"bufio"
	"errors"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redraft/redraft/fsm"
	"github.com/redraft/redraft/raftnode"
)

// maxBatch bounds how many pipelined commands are served as one batch.
const maxBatch = 1024

// conn is one client connection and its session state.
type conn struct {
	s  *Server
	nc net.Conn
	rd *reader

	wmu sync.Mutex // guards w: pushes (pub/sub) may come from other goroutines
	w   *bufio.Writer

	id      int64
	addr    string
	created time.Time
	db      int
	authed  bool
	name    string
	libName string
	libVer  string
	lastCmd atomic.Value // string
	nsub    atomic.Int64 // channels subscribed, for CLIENT LIST
	npsub   atomic.Int64 // patterns subscribed
	closing bool
	ps      *subscriber // non-nil while subscribed: output goes through its outbox (pubsub.go)
}

func newConn(s *Server, nc net.Conn) *conn {
	c := &conn{
		s:       s,
		nc:      nc,
		rd:      newReader(nc, s.cfg.MaxBulkLen),
		w:       bufio.NewWriterSize(nc, 16<<10),
		id:      s.nextID.Add(1),
		addr:    nc.RemoteAddr().String(),
		created: time.Now(),
		authed:  s.cfg.RequirePass == "",
	}
	c.lastCmd.Store("NULL")
	c.rd.unauthenticated = !c.authed
	return c
}

func (c *conn) serve() {
	defer func() {
		c.nc.Close()
		c.pubsubClose(false) // after Close: a blocked flusher write fails at once
		c.s.forget(c)
	}()
	for {
		args, err := c.rd.readCommand()
		if err != nil {
			c.fail(err)
			return
		}
		batch := [][][]byte{args}
		var pending error
		// Before AUTH, one command at a time: the limits lift the moment
		// AUTH succeeds, as in Redis.
		for len(batch) < maxBatch && !c.rd.unauthenticated && c.rd.complete() {
			args, err := c.rd.readCommand()
			if err != nil {
				pending = err
				break
			}
			batch = append(batch, args)
		}
		c.process(batch)
		c.rd.unauthenticated = !c.authed
		if pending != nil {
			c.fail(pending)
			return
		}
		if err := c.flush(); err != nil || c.closing {
			return
		}
	}
}

// fail answers a protocol error the way Redis does, then the caller closes.
func (c *conn) fail(err error) {
	var pe *protocolError
	if errors.As(err, &pe) {
		c.writeError("ERR " + pe.Error())
	}
	c.flush()
}

func (c *conn) flush() error {
	if c.ps != nil {
		return c.flushPubSub()
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.w.Flush()
}

func (c *conn) write(b []byte) {
	if c.ps != nil { // subscribed: keep order with queued messages
		c.ps.push(b)
		return
	}
	c.wmu.Lock()
	c.w.Write(b)
	c.wmu.Unlock()
}

func (c *conn) writeError(msg string)  { c.write(fsm.AppendError(nil, sanitize(msg))) }
func (c *conn) writeStatus(msg string) { c.write(fsm.AppendStatus(nil, msg)) }
func (c *conn) writeInt(n int64)       { c.write(fsm.AppendInt(nil, n)) }
func (c *conn) writeBulk(b []byte)     { c.write(fsm.AppendBulk(nil, b)) }
func (c *conn) writeBulkString(s string) {
	c.write(fsm.AppendBulkString(nil, s))
}

// process serves a pipeline in order. Consecutive writes go to the node as
// one batch (one forward, one group commit); consecutive reads share one
// read barrier. Anything else runs on its own.
func (c *conn) process(batch [][][]byte) {
	c.s.totalCommands.Add(int64(len(batch)))
	for i := 0; i < len(batch) && !c.closing; {
		cmd, refusal := c.check(batch[i])
		if refusal != "" {
			c.writeError(refusal)
			i++
			continue
		}
		c.lastCmd.Store(cmd.name)
		kind := cmd.kind()
		if kind == kindLocal {
			cmd.local(c, batch[i])
			i++
			continue
		}
		j := i + 1
		for j < len(batch) {
			next, refusal := c.check(batch[j])
			if refusal != "" || next.kind() != kind {
				break
			}
			j++
		}
		if kind == kindWrite {
			for k, r := range c.s.node.Write(c.db, batch[i:j]) {
				c.write(c.s.publishReply(batch[i+k], r)) // PUBLISH counts this node's receivers
			}
		} else {
			if now, err := c.s.node.ReadBarrier(); err != nil {
				for k := i; k < j; k++ {
					c.write([]byte(raftnode.ReplyReadTimeout))
				}
			} else {
				for _, args := range batch[i:j] {
					c.write(c.s.node.Query(c.db, now, args))
				}
			}
		}
		i = j
	}
}

// check looks a command up and applies the checks Redis makes before
// running anything: existence, arity, authentication.
func (c *conn) check(args [][]byte) (*command, string) {
	cmd := lookup(args[0])
	if cmd == nil {
		return nil, unknownCommand(args)
	}
	if !cmd.arityOK(len(args)) {
		return nil, fsm.ErrArity(cmd.name)
	}
	if !c.authed && cmd.flags&noAuth == 0 {
		return nil, "NOAUTH Authentication required."
	}
	if c.ps != nil && cmd.flags&pubsubOK == 0 {
		return nil, subscribeModeRefusal(cmd, args)
	}
	return cmd, ""
}

// unknownCommand is Redis's error text, arguments quoted up to 128 bytes.
func unknownCommand(args [][]byte) string {
	var b strings.Builder
	for _, a := range args[1:] {
		if b.Len() >= 128 {
			break
		}
		s := string(a)
		if room := 128 - b.Len(); len(s) > room {
			s = s[:room]
		}
		b.WriteString("'" + s + "' ")
	}
	name := string(args[0])
	if len(name) > 128 {
		name = name[:128]
	}
	return "ERR unknown command '" + name + "', with args beginning with: " + b.String()
}

// sanitize keeps an error on one line, as Redis does for texts that echo
// client input.
func sanitize(msg string) string {
	if !strings.ContainsAny(msg, "\r\n") {
		return msg
	}
	return strings.NewReplacer("\r", " ", "\n", " ").Replace(msg)
}
