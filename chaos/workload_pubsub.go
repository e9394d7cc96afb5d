package chaos

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// PubSubWorkload: one subscriber per node, on a raw RESP connection
// subscribed to every channel, and Publishers clients that PUBLISH
// sequence-numbered messages ("m<client>-<n>") on random channels through
// random nodes. A subscriber resubscribes on a fresh connection every
// Segment (and whenever its connection breaks); each connection is one
// segment, checked on its own by CheckPubSub: no duplicates, publish order,
// one order for all subscribers, and no gaps unless the segment's node was
// cut off while it listened (see pubsubStreams).
type PubSubWorkload struct {
	Publishers int
	Channels   int           // default 3
	Segment    time.Duration // default 10s

	mu   sync.Mutex
	segs []*subSegment
}

// subSegment is what one subscriber connection received.
type subSegment struct {
	Node       int
	Seq        int // per node, from 1
	Start, End time.Duration
	From       map[string]time.Duration // subscription confirmed, per channel
	Msgs       []subMsg                 // in the order received
	Broken     string                   // why the connection ended, if not by us
	AfterBreak bool                     // the previous connection broke, or connecting failed
}

type subMsg struct{ Channel, Payload string }

// pubsubCatchUp is how long after a fault on a node has been healed and the
// cluster has recovered the node may still be catching up (possibly from a
// snapshot, which skips the messages it covers).
const pubsubCatchUp = 5 * time.Second

func (*PubSubWorkload) Name() string { return "pubsub" }

func (w *PubSubWorkload) defaults() (channels []string, segment time.Duration) {
	n := w.Channels
	if n <= 0 {
		n = 3
	}
	for i := range n {
		channels = append(channels, fmt.Sprintf("ps:%d", i))
	}
	segment = w.Segment
	if segment <= 0 {
		segment = 10 * time.Second
	}
	return channels, segment
}

func (w *PubSubWorkload) Run(ctx context.Context, env *Env) {
	channels, segment := w.defaults()
	// Subscribers listen a little past the publishers, so that what was
	// published last has time to arrive.
	subCtx, stopSubs := context.WithCancel(context.Background())
	var subs sync.WaitGroup
	for node := range env.Cluster.Nodes() {
		subs.Add(1)
		go func() {
			defer subs.Done()
			w.subscriber(subCtx, env, node, channels, segment)
		}()
	}
	var pubs sync.WaitGroup
	for range w.Publishers {
		pubs.Add(1)
		go func() {
			defer pubs.Done()
			id := env.NewClientID()
			rnd := env.Rand(id)
			clients := make([]*redis.Client, len(env.Cluster.Nodes()))
			defer func() {
				for _, cl := range clients {
					if cl != nil {
						cl.Close()
					}
				}
			}()
			for n := 0; n < env.MaxOps && pace(ctx, rnd, 20*time.Millisecond); n++ {
				node := rnd.IntN(len(clients))
				if clients[node] == nil {
					clients[node] = env.Client(node)
				}
				ch := channels[rnd.IntN(len(channels))]
				octx, cancel := env.opCtx(ctx)
				op := env.History.Begin(id, node, KindPublish, ch, fmt.Sprintf("m%d-%d", id, n))
				env.History.End(op, clients[node].Publish(octx, ch, op.Value).Err())
				cancel()
			}
		}()
	}
	pubs.Wait()
	sleepCtx(context.Background(), time.Second)
	stopSubs()
	subs.Wait()
}

// subscriber keeps one connection to node subscribed at a time until ctx
// is done.
func (w *PubSubWorkload) subscriber(ctx context.Context, env *Env, node int, channels []string, segment time.Duration) {
	rnd := env.Rand(1_000_000 + node)
	afterBreak := false
	for seq := 1; ctx.Err() == nil; {
		rotate := segment + time.Duration(rnd.Int64N(int64(segment/5)+1))
		recorded, err := w.listen(ctx, env, node, seq, channels, afterBreak, rotate)
		if recorded {
			seq++
		}
		if err != nil {
			afterBreak = true
			sleepCtx(ctx, 200*time.Millisecond)
		} else {
			afterBreak = false
		}
	}
}

// listen runs one connection: subscribe, record what arrives until the
// rotation time or ctx is done (a nil error) or the connection fails.
// recorded says whether the subscription was confirmed (a segment exists).
func (w *PubSubWorkload) listen(ctx context.Context, env *Env, node, seq int, channels []string, afterBreak bool, rotate time.Duration) (recorded bool, err error) {
	h := env.History
	conn, err := net.DialTimeout("tcp", env.Cluster.RESPAddr(node), 2*time.Second)
	if err != nil {
		return false, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	r := bufio.NewReader(conn)
	// A paused node accepts connections (the kernel does) but answers
	// nothing: give up on the handshake after a while.
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	var b strings.Builder
	if pass := env.Cluster.Password(); pass != "" {
		encode(&b, "AUTH", pass)
	}
	encode(&b, append([]string{"SUBSCRIBE"}, channels...)...)
	if _, err := conn.Write([]byte(b.String())); err != nil {
		return false, err
	}
	if env.Cluster.Password() != "" {
		rep, err := readReply(r)
		if err != nil {
			return false, err
		}
		if e, ok := rep.(RespError); ok {
			return false, fmt.Errorf("AUTH: %w", e)
		}
	}
	seg := &subSegment{Node: node, Seq: seq, Start: h.Now(), From: map[string]time.Duration{}, AfterBreak: afterBreak}
	for range channels {
		rep, err := readReply(r)
		if err != nil {
			return false, err
		}
		arr, _ := rep.([]any)
		if len(arr) != 3 || arr[0] != "subscribe" {
			return false, fmt.Errorf("SUBSCRIBE answered %v", rep)
		}
		ch, _ := arr[1].(string)
		seg.From[ch] = h.Now()
	}
	w.mu.Lock()
	w.segs = append(w.segs, seg)
	w.mu.Unlock()
	_ = conn.SetWriteDeadline(time.Time{})
	_ = conn.SetReadDeadline(time.Now().Add(rotate))
	for {
		rep, err := readReply(r)
		if err != nil {
			seg.End = h.Now()
			if ctx.Err() != nil || errors.Is(err, os.ErrDeadlineExceeded) {
				return true, nil
			}
			seg.Broken = err.Error()
			return true, err
		}
		arr, _ := rep.([]any)
		if len(arr) == 3 && arr[0] == "message" {
			ch, _ := arr[1].(string)
			msg, _ := arr[2].(string)
			seg.Msgs = append(seg.Msgs, subMsg{ch, msg})
		}
	}
}

func (*PubSubWorkload) Final(context.Context, *Env) map[string]FinalValue { return nil }

func (w *PubSubWorkload) Check(env *Env, ops []Op, _ map[string]FinalValue) Findings {
	var ids []string
	for _, n := range env.Cluster.Nodes() {
		ids = append(ids, n.ID)
	}
	w.mu.Lock()
	segs := append([]*subSegment(nil), w.segs...)
	w.mu.Unlock()
	channels, _ := w.defaults()
	return checkPubSubRun(channels, ops, segs, env.Faults, ids)
}

// PubSubReport summarises the pub/sub check.
type PubSubReport struct {
	Channels    int `json:"channels"`
	Published   int `json:"published"`    // PUBLISH attempted
	Acked       int `json:"acked"`        // PUBLISH acknowledged
	Connections int `json:"connections"`  // subscriber segments
	Streams     int `json:"streams"`      // segments × channels
	CutOff      int `json:"cut_off"`      // streams on which gaps were allowed
	Received    int `json:"received"`     // messages received, all streams
	GapChecked  int `json:"gap_checked"`  // acknowledged messages some stream had to have
	Violations  int `json:"violations"`   // what CheckPubSub found
	Broken      int `json:"broken_conns"` // connections that ended by an error
	// Streams lists every stream without its messages.
	StreamList []SubStream `json:"stream_list,omitempty"`
}

// checkPubSubRun turns recorded subscriber segments into streams for
// CheckPubSub and checks them against the PUBLISH ops.
func checkPubSubRun(channels []string, ops []Op, segs []*subSegment, faults []FaultRecord, nodeIDs []string) Findings {
	var pubs []Op
	rep := &PubSubReport{Channels: len(channels), Connections: len(segs)}
	for _, op := range ops {
		if op.Kind == KindPublish {
			pubs = append(pubs, op)
			rep.Published++
			if op.Status == OK {
				rep.Acked++
			}
		}
	}
	streams := pubsubStreams(channels, pubs, segs, faults, nodeIDs)
	for _, s := range streams {
		rep.Streams++
		rep.Received += len(s.Messages)
		if s.CutOff {
			rep.CutOff++
			continue
		}
		for _, p := range pubs {
			if p.Key == s.Channel && p.Status == OK && p.Call >= s.From && p.Return <= s.To {
				rep.GapChecked++
			}
		}
	}
	for _, s := range segs {
		if s.Broken != "" {
			rep.Broken++
		}
	}
	f := Findings{PubSub: rep, Violations: CheckPubSub(pubs, streams)}
	rep.Violations = len(f.Violations)
	for _, s := range streams {
		s.Messages = nil
		rep.StreamList = append(rep.StreamList, s)
	}
	if rep.Received == 0 {
		f.Notes = append(f.Notes, "pubsub: no subscriber received any message; the pub/sub check proved nothing")
	}
	return f
}

// pubsubStreams makes one SubStream per segment and channel.
//
// From is when the subscription was confirmed. To is not when the
// connection ended but the invocation time of the latest-invoked message it
// received (on any channel): a node delivers in log order, and a PUBLISH
// acknowledged before another was sent precedes it in the log, so the
// connection must have delivered it first. (Acknowledged only means the
// leader applied it; a follower may deliver later, and a connection closed
// at time t owes nothing that was acknowledged just before t.)
//
// Gaps are allowed (CutOff) on a segment whose node a fault named (killed,
// stopped, paused, partitioned, cut off one way, restarted) at any time
// from the fault's start to pubsubCatchUp after the cluster recovered from
// it, and on the first segment after a connection broke or could not be
// made: a node that falls behind may catch up from a snapshot, which skips
// the messages it covers. Latency faults name no node and excuse nothing.
func pubsubStreams(channels []string, pubs []Op, segs []*subSegment, faults []FaultRecord, nodeIDs []string) []SubStream {
	call := map[string]time.Duration{}
	for _, p := range pubs {
		if p.Status != Failed { // a refused message received is a violation anyway
			call[p.Key+"\x00"+p.Value] = p.Call
		}
	}
	type window struct{ from, to time.Duration }
	cut := map[string][]window{}
	for _, f := range faults {
		to := time.Duration(1<<63 - 1)
		if f.Recovered != 0 { // 0: never recovered
			to = max(f.Healed, f.Recovered) + pubsubCatchUp
		}
		for _, id := range f.Nodes {
			cut[id] = append(cut[id], window{f.Start, to})
		}
	}
	sorted := append([]*subSegment(nil), segs...)
	sort.SliceStable(sorted, func(i, j int) bool {
		if sorted[i].Node != sorted[j].Node {
			return sorted[i].Node < sorted[j].Node
		}
		return sorted[i].Seq < sorted[j].Seq
	})
	var out []SubStream
	for _, s := range sorted {
		id := fmt.Sprintf("n%d", s.Node+1)
		if s.Node < len(nodeIDs) {
			id = nodeIDs[s.Node]
		}
		cutOff := s.AfterBreak
		for _, wd := range cut[id] {
			if wd.from <= s.End && wd.to >= s.Start {
				cutOff = true
			}
		}
		var to time.Duration
		for _, m := range s.Msgs {
			if c, ok := call[m.Channel+"\x00"+m.Payload]; ok && c > to {
				to = c
			}
		}
		for _, ch := range channels {
			from, ok := s.From[ch]
			if !ok {
				continue
			}
			st := SubStream{Subscriber: fmt.Sprintf("sub-%s.%d", id, s.Seq), Node: s.Node, Channel: ch,
				From: from, To: max(to, from), CutOff: cutOff}
			for _, m := range s.Msgs {
				if m.Channel == ch {
					st.Messages = append(st.Messages, m.Payload)
				}
			}
			out = append(out, st)
		}
	}
	return out
}
