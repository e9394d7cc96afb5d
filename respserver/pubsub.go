package respserver

// Pub/sub on one node. PUBLISH is a write (fsm/pubsub.go): it goes through
// the Raft log and every node, on applying it, calls deliver from raft's FSM
// goroutine, once per message, in log order. So every subscriber on every
// node sees one order, interleaved correctly with writes. Subscriptions are
// connection-local, as in Redis.
//
// deliver must never block Apply, so a subscribed connection gets an outbox:
// deliver appends the frame to it under a short mutex and wakes the
// connection's flusher goroutine, which alone does network I/O. The outbox is
// bounded like Redis's `client-output-buffer-limit pubsub 32mb 8mb 60`: past
// the hard limit, or over the soft limit for longer than the soft time, the
// connection is closed and its queue dropped, so a subscriber that never
// reads costs at most the hard limit.
//
// While a connection is subscribed, all of its output (its own replies too)
// goes through the outbox, so confirmations, PONGs and messages leave in the
// order they were queued. Confirmations are queued while holding the registry
// lock that deliver also takes: no message for a channel can be queued ahead
// of the confirmation of its subscription. When the last subscription goes,
// the outbox is emptied into the connection's writer and removed, so a normal
// connection pays nothing for pub/sub.

import (
	"bytes"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redraft/redraft/fsm"
)

// Redis's defaults: client-output-buffer-limit pubsub 32mb 8mb 60.
const (
	defaultPubSubHard = 32 << 20
	defaultPubSubSoft = 8 << 20
	defaultPubSubTime = 60 * time.Second
	// An outbox keeps its drained buffer for reuse only up to this size, so
	// a burst does not pin memory for the life of the connection.
	maxSpareOutbox = 64 << 10
)

// pubsub is the node's registry of subscriptions.
type pubsub struct {
	mu       sync.RWMutex
	channels map[string][]*subscriber // in subscription order, as Redis
	patterns map[string]*patternSubs

	delivered atomic.Int64 // message frames queued to subscribers
	dropped   atomic.Int64 // subscribers closed over the output buffer limit
}

type patternSubs struct {
	pattern []byte
	subs    []*subscriber
}

// subscriber is a connection's pub/sub state; it exists while the
// connection has at least one subscription.
type subscriber struct {
	c *conn
	// Subscriptions, in the order made (UNSUBSCRIBE with no argument
	// answers in this order). Changed by the connection's goroutine under
	// the registry's write lock.
	channels, patterns []string
	chanSet, patSet    map[string]struct{}

	hard, soft int64
	softTime   time.Duration

	mu        sync.Mutex
	buf       []byte // queued, not yet handed to the writer
	spare     []byte // a drained buffer kept for reuse
	inflight  int    // bytes being written by a drain right now
	softSince time.Time
	dead      bool // closed over the limit, or no longer subscribed

	wake chan struct{} // capacity 1: "there is something to write"
	stop chan struct{}
}

func (sub *subscriber) count() int { return len(sub.channels) + len(sub.patterns) }

// publishCounts copies the subscription counts where CLIENT LIST, running on
// another connection's goroutine, can read them.
func (c *conn) publishCounts() {
	if c.ps == nil {
		c.nsub.Store(0)
		c.npsub.Store(0)
		return
	}
	c.nsub.Store(int64(len(c.ps.channels)))
	c.npsub.Store(int64(len(c.ps.patterns)))
}

// pubsubLimits resolves the configured output buffer limits: 0 means Redis's
// default, a negative value means no limit.
func (s *Server) pubsubLimits() (hard, soft int64, softTime time.Duration) {
	pick := func(v, def int64) int64 {
		switch {
		case v == 0:
			return def
		case v < 0:
			return 0
		}
		return v
	}
	hard = pick(s.cfg.PubSubHardLimit, defaultPubSubHard)
	soft = pick(s.cfg.PubSubSoftLimit, defaultPubSubSoft)
	softTime = s.cfg.PubSubSoftTime
	if softTime == 0 {
		softTime = defaultPubSubTime
	}
	return hard, soft, softTime
}

// push queues b for the connection, or closes it if b takes the queue past
// its limit. It never blocks on the network.
func (sub *subscriber) push(b []byte) {
	sub.mu.Lock()
	if sub.dead {
		sub.mu.Unlock()
		return
	}
	sub.buf = append(sub.buf, b...)
	size := int64(len(sub.buf) + sub.inflight)
	reason := ""
	switch {
	case sub.hard > 0 && size >= sub.hard:
		reason = "hard"
	case sub.soft > 0 && size >= sub.soft:
		now := time.Now()
		if sub.softSince.IsZero() {
			sub.softSince = now
		} else if now.Sub(sub.softSince) > sub.softTime {
			reason = "soft"
		}
	default:
		sub.softSince = time.Time{}
	}
	if reason != "" {
		sub.dead, sub.buf, sub.spare = true, nil, nil
	}
	sub.mu.Unlock()
	if reason != "" {
		sub.c.s.ps.dropped.Add(1)
		sub.c.s.log.Warn("closing pub/sub client over its output buffer limit",
			"client", sub.c.addr, "id", sub.c.id, "limit", reason, "bytes", size)
		sub.c.nc.Close() // the connection's goroutine sees it and cleans up
		return
	}
	select {
	case sub.wake <- struct{}{}:
	default:
	}
}

// flusher writes whatever deliver queued, until the subscriber goes.
func (sub *subscriber) flusher() {
	for {
		select {
		case <-sub.stop:
			return
		case <-sub.wake:
		}
		for {
			more, err := sub.c.drain(sub)
			if err != nil {
				sub.c.nc.Close()
				return
			}
			if !more {
				break
			}
		}
	}
}

// drain hands one batch of queued bytes to the writer and flushes it. It
// holds wmu throughout, so batches (and anything written before the
// connection subscribed) reach the socket in queue order.
func (c *conn) drain(sub *subscriber) (more bool, err error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	sub.mu.Lock()
	b := sub.buf
	sub.buf, sub.spare = sub.spare[:0], nil
	sub.inflight = len(b)
	sub.mu.Unlock()
	if len(b) > 0 {
		_, err = c.w.Write(b)
	}
	if err == nil {
		err = c.w.Flush()
	}
	sub.mu.Lock()
	sub.inflight = 0
	if cap(b) <= maxSpareOutbox && sub.spare == nil && !sub.dead {
		sub.spare = b[:0]
	}
	more = len(sub.buf) > 0 && !sub.dead
	sub.mu.Unlock()
	return more, err
}

// flushPubSub is the connection goroutine's flush while subscribed: one
// batch now (its own replies are queued by then), the rest to the flusher.
func (c *conn) flushPubSub() error {
	more, err := c.drain(c.ps)
	if more {
		select {
		case c.ps.wake <- struct{}{}:
		default:
		}
	}
	return err
}

// subscriberFor returns the connection's pub/sub state, creating it (and its
// flusher) on the first subscription.
func (c *conn) subscriberFor() *subscriber {
	if c.ps == nil {
		sub := &subscriber{c: c, chanSet: map[string]struct{}{}, patSet: map[string]struct{}{},
			wake: make(chan struct{}, 1), stop: make(chan struct{})}
		sub.hard, sub.soft, sub.softTime = c.s.pubsubLimits()
		c.ps = sub
		go sub.flusher()
	}
	return c.ps
}

// leavePubSub ends subscribe mode once no subscription is left: what is
// still queued moves to the writer, in order (unless the connection is
// going away: keep false), and output goes straight to the writer again.
func (c *conn) leavePubSub(keep bool) {
	sub := c.ps
	if sub == nil || sub.count() > 0 {
		return
	}
	c.ps = nil
	close(sub.stop)
	c.wmu.Lock()
	sub.mu.Lock()
	b := sub.buf
	sub.dead, sub.buf, sub.spare = true, nil, nil
	sub.mu.Unlock()
	if keep {
		c.w.Write(b)
	}
	c.wmu.Unlock()
}

// pubsubClose silently drops every subscription: RESET (keep: what is
// queued still goes out before +RESET) and the end of a connection.
func (c *conn) pubsubClose(keep bool) {
	defer c.publishCounts()
	if c.ps == nil {
		return
	}
	c.unsubscribeAll(false, false)
	c.unsubscribeAll(true, false)
	c.leavePubSub(keep)
}

func appendPubSubReply(b []byte, kind string, name []byte, nilName bool, count int) []byte {
	b = fsm.AppendArray(b, 3)
	b = fsm.AppendBulkString(b, kind)
	if nilName {
		b = fsm.AppendNull(b)
	} else {
		b = fsm.AppendBulk(b, name)
	}
	return fsm.AppendInt(b, int64(count))
}

func cmdSubscribe(c *conn, args [][]byte)  { c.subscribe(args[1:], false) }
func cmdPSubscribe(c *conn, args [][]byte) { c.subscribe(args[1:], true) }

func (c *conn) subscribe(names [][]byte, pattern bool) {
	defer c.publishCounts()
	ps := &c.s.ps
	sub := c.subscriberFor()
	kind := "subscribe"
	if pattern {
		kind = "psubscribe"
	}
	for _, name := range names {
		key := string(name)
		ps.mu.Lock()
		if pattern {
			if _, ok := sub.patSet[key]; !ok {
				sub.patSet[key] = struct{}{}
				sub.patterns = append(sub.patterns, key)
				if ps.patterns == nil {
					ps.patterns = map[string]*patternSubs{}
				}
				p := ps.patterns[key]
				if p == nil {
					p = &patternSubs{pattern: []byte(key)}
					ps.patterns[key] = p
				}
				p.subs = append(p.subs, sub)
			}
		} else if _, ok := sub.chanSet[key]; !ok {
			sub.chanSet[key] = struct{}{}
			sub.channels = append(sub.channels, key)
			if ps.channels == nil {
				ps.channels = map[string][]*subscriber{}
			}
			ps.channels[key] = append(ps.channels[key], sub)
		}
		// Queued under the registry lock: before any message it enables.
		sub.push(appendPubSubReply(nil, kind, name, false, sub.count()))
		ps.mu.Unlock()
	}
}

func cmdUnsubscribe(c *conn, args [][]byte)  { c.unsubscribe(args[1:], false) }
func cmdPUnsubscribe(c *conn, args [][]byte) { c.unsubscribe(args[1:], true) }

func (c *conn) unsubscribe(names [][]byte, pattern bool) {
	defer c.publishCounts()
	kind := "unsubscribe"
	if pattern {
		kind = "punsubscribe"
	}
	if len(names) == 0 {
		if n := c.unsubscribeAll(pattern, true); n == 0 {
			count := 0
			if c.ps != nil {
				count = c.ps.count()
			}
			c.write(appendPubSubReply(nil, kind, nil, true, count))
		}
	} else {
		for _, name := range names {
			c.unsubscribeOne(string(name), pattern, true)
		}
	}
	c.leavePubSub(true)
}

// unsubscribeAll drops every channel (or pattern) subscription, in the order
// they were made, and returns how many there were.
func (c *conn) unsubscribeAll(pattern, notify bool) int {
	if c.ps == nil {
		return 0
	}
	names := c.ps.channels
	if pattern {
		names = c.ps.patterns
	}
	names = append([]string(nil), names...)
	for _, n := range names {
		c.unsubscribeOne(n, pattern, notify)
	}
	return len(names)
}

func (c *conn) unsubscribeOne(name string, pattern, notify bool) {
	kind := "unsubscribe"
	if pattern {
		kind = "punsubscribe"
	}
	sub := c.ps
	if sub == nil {
		if notify {
			c.write(appendPubSubReply(nil, kind, []byte(name), false, 0))
		}
		return
	}
	ps := &c.s.ps
	ps.mu.Lock()
	if pattern {
		if _, ok := sub.patSet[name]; ok {
			delete(sub.patSet, name)
			sub.patterns = removeString(sub.patterns, name)
			if p := ps.patterns[name]; p != nil {
				if p.subs = removeSub(p.subs, sub); len(p.subs) == 0 {
					delete(ps.patterns, name)
				}
			}
		}
	} else if _, ok := sub.chanSet[name]; ok {
		delete(sub.chanSet, name)
		sub.channels = removeString(sub.channels, name)
		if subs := removeSub(ps.channels[name], sub); len(subs) == 0 {
			delete(ps.channels, name)
		} else {
			ps.channels[name] = subs
		}
	}
	if notify {
		sub.push(appendPubSubReply(nil, kind, []byte(name), false, sub.count()))
	}
	ps.mu.Unlock()
}

func removeString(s []string, v string) []string {
	for i, x := range s {
		if x == v {
			return append(s[:i], s[i+1:]...)
		}
	}
	return s
}

func removeSub(s []*subscriber, v *subscriber) []*subscriber {
	for i, x := range s {
		if x == v {
			return append(s[:i], s[i+1:]...)
		}
	}
	return s
}

// deliver is the FSM's publish hook: it runs on raft's FSM goroutine for
// every applied PUBLISH, after its batch committed, and must not block.
func (s *Server) deliver(channel, message []byte) int {
	ps := &s.ps
	ps.mu.RLock()
	defer ps.mu.RUnlock()
	n := 0
	if subs := ps.channels[string(channel)]; len(subs) > 0 {
		f := fsm.AppendArray(make([]byte, 0, 32+len(channel)+len(message)), 3)
		f = fsm.AppendBulkString(f, "message")
		f = fsm.AppendBulk(f, channel)
		f = fsm.AppendBulk(f, message)
		for _, sub := range subs {
			sub.push(f)
		}
		n += len(subs)
	}
	for _, p := range ps.patterns {
		if !fsm.Match(p.pattern, channel, false) {
			continue
		}
		f := fsm.AppendArray(make([]byte, 0, 48+len(p.pattern)+len(channel)+len(message)), 4)
		f = fsm.AppendBulkString(f, "pmessage")
		f = fsm.AppendBulk(f, p.pattern)
		f = fsm.AppendBulk(f, channel)
		f = fsm.AppendBulk(f, message)
		for _, sub := range p.subs {
			sub.push(f)
		}
		n += len(p.subs)
	}
	ps.delivered.Add(int64(n))
	return n
}

// receivers counts who gets a message on channel here: channel subscribers
// plus pattern matches, a client counted once per match, as Redis does.
func (ps *pubsub) receivers(channel []byte) int {
	ps.mu.RLock()
	defer ps.mu.RUnlock()
	n := len(ps.channels[string(channel)])
	for _, p := range ps.patterns {
		if fsm.Match(p.pattern, channel, false) {
			n += len(p.subs)
		}
	}
	return n
}

// publishReply is the reply a PUBLISH served here gets: the log carries a
// placeholder count, replaced by this node's receivers, as in Redis Cluster
// where PUBLISH counts the subscribers of the node it was sent to. Errors
// (CLUSTERDOWN, UNCERTAIN) pass through.
func (s *Server) publishReply(args [][]byte, r []byte) []byte {
	if len(args) != 3 || len(r) == 0 || r[0] != ':' || !bytes.EqualFold(args[0], []byte("publish")) {
		return r
	}
	return fsm.AppendInt(nil, int64(s.ps.receivers(args[1])))
}

// cmdPingPubSub answers PING; in subscribe mode Redis (RESP2) replies with
// a ["pong", msg] array instead of +PONG.
func cmdPingPubSub(c *conn, args [][]byte) {
	if c.ps == nil || len(args) > 2 {
		cmdPing(c, args)
		return
	}
	var msg []byte
	if len(args) == 2 {
		msg = args[1]
	}
	b := fsm.AppendArray(nil, 2)
	b = fsm.AppendBulkString(b, "pong")
	c.write(fsm.AppendBulk(b, msg))
}

// cmdReset returns the connection to its initial state: no subscriptions
// (silently), db 0, no name, and authenticated only if no password is set.
func cmdReset(c *conn, _ [][]byte) {
	c.pubsubClose(true)
	c.db = 0
	c.name = ""
	c.authed = c.s.cfg.RequirePass == ""
	c.writeStatus("RESET")
}

var pubsubHelp = []string{
	"PUBSUB <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
	"CHANNELS [<pattern>]",
	"    Return the currently active channels matching a <pattern> (default: '*').",
	"NUMPAT",
	"    Return number of subscriptions to patterns.",
	"NUMSUB [<channel> ...]",
	"    Return the number of subscribers for the specified channels, excluding",
	"    pattern subscriptions(default: no channels).",
	"SHARDCHANNELS [<pattern>]",
	"    Return the currently active shard level channels matching a <pattern> (default: '*').",
	"SHARDNUMSUB [<shardchannel> ...]",
	"    Return the number of subscribers for the specified shard level channel(s)",
	"HELP",
	"    Prints this help.",
}

// cmdPubSub answers PUBSUB about this node's subscriptions (as Redis
// Cluster does: they are per node).
func cmdPubSub(c *conn, args [][]byte) {
	ps := &c.s.ps
	sub := strings.ToLower(string(args[1]))
	switch {
	case sub == "help" && len(args) == 2:
		b := fsm.AppendArray(nil, len(pubsubHelp))
		for _, l := range pubsubHelp {
			b = fsm.AppendStatus(b, l)
		}
		c.write(b)
	case (sub == "channels" || sub == "shardchannels") && len(args) <= 3:
		var names []string
		if sub == "channels" {
			ps.mu.RLock()
			for ch := range ps.channels {
				if len(args) == 2 || fsm.Match(args[2], []byte(ch), false) {
					names = append(names, ch)
				}
			}
			ps.mu.RUnlock()
		}
		sort.Strings(names)
		b := fsm.AppendArray(nil, len(names))
		for _, n := range names {
			b = fsm.AppendBulkString(b, n)
		}
		c.write(b)
	case sub == "numsub" || sub == "shardnumsub":
		b := fsm.AppendArray(nil, 2*(len(args)-2))
		ps.mu.RLock()
		for _, ch := range args[2:] {
			n := 0
			if sub == "numsub" {
				n = len(ps.channels[string(ch)])
			}
			b = fsm.AppendBulk(b, ch)
			b = fsm.AppendInt(b, int64(n))
		}
		ps.mu.RUnlock()
		c.write(b)
	case sub == "numpat" && len(args) == 2:
		ps.mu.RLock()
		n := len(ps.patterns)
		ps.mu.RUnlock()
		c.writeInt(int64(n))
	case sub == "numpat" || sub == "help":
		c.writeError(fsm.ErrArity("pubsub|" + sub))
	case sub == "channels" || sub == "shardchannels":
		c.writeError("ERR unknown subcommand or wrong number of arguments for '" + string(args[1]) + "'. Try PUBSUB HELP.")
	default:
		c.writeError("ERR unknown subcommand '" + string(args[1]) + "'. Try PUBSUB HELP.")
	}
}

// Redis 7.0's subcommands (with arity) of the container commands this
// server has. In subscribe mode Redis checks the subcommand and its arity
// before refusing, then names it in full (client|id); so do we.
var containerSubs = map[string]map[string]int{
	"client": {"caching": 3, "getname": 2, "getredir": 2, "help": 2, "id": 2, "info": 2, "kill": -3, "list": -2,
		"no-evict": 3, "pause": -3, "reply": 3, "setname": 3, "tracking": -3, "trackinginfo": 2, "unblock": -3, "unpause": 2},
	"config":  {"get": -3, "help": 2, "resetstat": 2, "rewrite": 2, "set": -4},
	"command": {"count": 2, "docs": -2, "getkeys": -4, "getkeysandflags": -4, "help": 2, "info": -2, "list": -2},
	"pubsub":  {"channels": -2, "help": 2, "numpat": 2, "numsub": -2, "shardchannels": -2, "shardnumsub": -2},
	"script":  {"debug": 3, "exists": -3, "flush": -2, "help": 2, "kill": 2, "load": 3},
}

// subscribeModeRefusal is the error for a command not allowed while the
// connection is subscribed.
func subscribeModeRefusal(cmd *command, args [][]byte) string {
	name := cmd.name
	if subs, ok := containerSubs[name]; ok && len(args) > 1 {
		sub := strings.ToLower(string(args[1]))
		arity, known := subs[sub]
		switch {
		case !known:
			return "ERR unknown subcommand '" + string(args[1]) + "'. Try " + strings.ToUpper(name) + " HELP."
		case !(&command{arity: arity}).arityOK(len(args)):
			return fsm.ErrArity(name + "|" + sub)
		}
		name += "|" + sub
	}
	return "ERR Can't execute '" + name + "': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"
}

// pubsubStats are the pub/sub counters for INFO, /status and /metrics.
func (s *Server) pubsubStats() (channels, patterns, delivered, dropped int64) {
	s.ps.mu.RLock()
	channels, patterns = int64(len(s.ps.channels)), int64(len(s.ps.patterns))
	s.ps.mu.RUnlock()
	return channels, patterns, s.ps.delivered.Load(), s.ps.dropped.Load()
}
