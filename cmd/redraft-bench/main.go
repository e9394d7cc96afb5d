// Command redraft-bench measures redraft (or any Redis) from the outside.
//
//	redraft-bench pubsub --addrs 127.0.0.1:6379,127.0.0.1:6380,127.0.0.1:6381 \
//	    --subscribers 100 --rate 1000 --duration 10s [--publishers 1] [--size 64] [--json]
//
// pubsub: subscribers are spread round-robin over the nodes, all on one
// channel; publishers (--publishers pipelined connections per node) send at
// a fixed rate, open loop, each message to the next connection in turn (so
// the nodes take turns), stamped with its send time. Publish-to-delivery
// latency is receive time minus send time, so the subscribers must run on
// the machine that publishes (one clock). It
// also checks what every subscriber got: nothing lost, duplicated or out of
// order.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	if len(os.Args) < 2 || os.Args[1] != "pubsub" {
		fmt.Fprintln(os.Stderr, "usage: redraft-bench pubsub --addrs a,b,c [--subscribers 100] [--rate 1000] [--duration 10s] [--size 64] [--warmup 1s] [--json]")
		os.Exit(2)
	}
	if err := pubsub(os.Args[2:]); err != nil {
		fmt.Fprintln(os.Stderr, "redraft-bench:", err)
		os.Exit(1)
	}
}

type config struct {
	addrs       []string
	subscribers int
	publishers  int // publishing connections per node
	rate        int
	duration    time.Duration
	warmup      time.Duration
	size        int
	password    string
	json        bool
}

// Result is what a run reports.
type Result struct {
	Nodes        int                `json:"nodes"`
	Subscribers  int                `json:"subscribers"`
	Rate         int                `json:"rate_per_s"`
	DurationS    float64            `json:"duration_s"`
	Published    int64              `json:"published"`
	PublishErrs  int64              `json:"publish_errors"`
	FirstErr     string             `json:"first_error,omitempty"`
	Deliveries   int64              `json:"deliveries"` // messages received, all subscribers
	Expected     int64              `json:"expected"`   // acknowledged publishes x subscribers
	Lost         int64              `json:"lost"`
	Duplicates   int64              `json:"duplicates"`
	OutOfOrder   int64              `json:"out_of_order"`
	Dropped      int                `json:"subscribers_disconnected"`
	Disagree     int                `json:"subscribers_disagreeing"` // on the order of common messages
	LatencyUs    Summary            `json:"latency_us"`              // after warmup
	AckUs        Summary            `json:"publish_ack_us"`          // PUBLISH round trip, after warmup
	ByNode       map[string]Summary `json:"latency_us_by_subscriber_node"`
	DeliveriesPS float64            `json:"deliveries_per_s"`
}

// Summary holds latency percentiles in microseconds.
type Summary struct {
	Samples                        int
	P50, P90, P99, P999, Max, Mean float64
}

func pubsub(args []string) error {
	var cfg config
	var addrs string
	fs := flag.NewFlagSet("pubsub", flag.ContinueOnError)
	fs.StringVar(&addrs, "addrs", "127.0.0.1:6379", "comma-separated RESP addresses of the nodes")
	fs.IntVar(&cfg.subscribers, "subscribers", 100, "subscriber connections, spread over the nodes")
	fs.IntVar(&cfg.publishers, "publishers", 1, "publishing connections per node, each pipelined")
	fs.IntVar(&cfg.rate, "rate", 1000, "messages published per second, in total")
	fs.DurationVar(&cfg.duration, "duration", 10*time.Second, "how long to publish")
	fs.DurationVar(&cfg.warmup, "warmup", time.Second, "leading part of the run left out of the latency figures")
	fs.IntVar(&cfg.size, "size", 64, "message size in bytes (at least the stamp)")
	fs.StringVar(&cfg.password, "password", os.Getenv("REDRAFT_BENCH_PASSWORD"), "AUTH password (default $REDRAFT_BENCH_PASSWORD)")
	fs.BoolVar(&cfg.json, "json", false, "print the result as JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg.addrs = strings.Split(addrs, ",")
	if cfg.rate <= 0 || cfg.subscribers <= 0 || cfg.publishers <= 0 {
		return errors.New("--rate, --subscribers and --publishers must be positive")
	}
	res, err := run(cfg)
	if err != nil {
		return err
	}
	if cfg.json {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	l := res.LatencyUs
	fmt.Printf("pubsub: %d nodes, %d subscribers, %d msg/s for %.1fs (%d published, %d errors)\n",
		res.Nodes, res.Subscribers, res.Rate, res.DurationS, res.Published, res.PublishErrs)
	if res.FirstErr != "" {
		fmt.Printf("first publish error: %s\n", res.FirstErr)
	}
	fmt.Printf("deliveries: %d of %d expected (%.0f/s); lost %d, duplicates %d, out of order %d, subscribers disconnected %d, disagreeing on order %d\n",
		res.Deliveries, res.Expected, res.DeliveriesPS, res.Lost, res.Duplicates, res.OutOfOrder, res.Dropped, res.Disagree)
	fmt.Printf("publish-to-delivery latency (%d samples): p50 %.2fms p90 %.2fms p99 %.2fms p99.9 %.2fms max %.2fms mean %.2fms\n",
		l.Samples, l.P50/1e3, l.P90/1e3, l.P99/1e3, l.P999/1e3, l.Max/1e3, l.Mean/1e3)
	a := res.AckUs
	fmt.Printf("PUBLISH round trip (commit through the log): p50 %.2fms p99 %.2fms max %.2fms\n", a.P50/1e3, a.P99/1e3, a.Max/1e3)
	for _, a := range strings.Split(addrs, ",") {
		n := res.ByNode[a]
		fmt.Printf("  subscribers on %s: p50 %.2fms p99 %.2fms\n", a, n.P50/1e3, n.P99/1e3)
	}
	return nil
}

type conn struct {
	nc net.Conn
	br *bufio.Reader
}

func dial(addr, password string) (*conn, error) {
	nc, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		return nil, err
	}
	c := &conn{nc: nc, br: bufio.NewReaderSize(nc, 64<<10)}
	if password != "" {
		nc.Write(encode("AUTH", password))
		if line, err := c.br.ReadString('\n'); err != nil || !strings.HasPrefix(line, "+OK") {
			nc.Close()
			return nil, fmt.Errorf("%s: AUTH: %q %v", addr, line, err)
		}
	}
	return c, nil
}

func encode(args ...string) []byte {
	b := []byte("*" + strconv.Itoa(len(args)) + "\r\n")
	for _, a := range args {
		b = append(b, '$')
		b = strconv.AppendInt(b, int64(len(a)), 10)
		b = append(b, "\r\n"...)
		b = append(b, a...)
		b = append(b, "\r\n"...)
	}
	return b
}

// readFrame returns one reply's scalar elements (arrays flattened).
func (c *conn) readFrame() ([]string, error) {
	var out []string
	var read func() error
	read = func() error {
		line, err := c.br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(line) < 3 {
			return errors.New("short reply line")
		}
		body := string(line[1 : len(line)-2])
		switch line[0] {
		case '*':
			n, _ := strconv.Atoi(body)
			for i := 0; i < n; i++ {
				if err := read(); err != nil {
					return err
				}
			}
		case '$':
			n, _ := strconv.Atoi(body)
			if n < 0 {
				out = append(out, "")
				return nil
			}
			b := make([]byte, n+2)
			if _, err := io.ReadFull(c.br, b); err != nil {
				return err
			}
			out = append(out, string(b[:n]))
		case '-':
			return errors.New(body)
		default:
			out = append(out, body)
		}
		return nil
	}
	return out, read()
}

type subscriber struct {
	node      int
	latencies []time.Duration // after warmup
	received  atomic.Int64    // read while the run drains
	dups      int64
	disorder  int64
	seen      []bool  // by sequence number
	order     []int32 // sequence numbers in arrival order
	err       error
}

func run(cfg config) (*Result, error) {
	channel := fmt.Sprintf("redraft-bench:%d", time.Now().UnixNano())
	total := int(float64(cfg.rate)*cfg.duration.Seconds()) + 1
	// Message seq goes out on publishing connection seq % npub.
	npub := len(cfg.addrs) * cfg.publishers
	subs := make([]*subscriber, cfg.subscribers)
	conns := make([]*conn, cfg.subscribers)
	for i := range subs {
		node := i % len(cfg.addrs)
		c, err := dial(cfg.addrs[node], cfg.password)
		if err != nil {
			return nil, err
		}
		defer c.nc.Close()
		c.nc.Write(encode("SUBSCRIBE", channel))
		if e, err := c.readFrame(); err != nil || len(e) != 3 || e[0] != "subscribe" {
			return nil, fmt.Errorf("SUBSCRIBE on %s: %v %v", cfg.addrs[node], e, err)
		}
		subs[i] = &subscriber{node: node, seen: make([]bool, total), latencies: make([]time.Duration, 0, total), order: make([]int32, 0, total)}
		conns[i] = c
	}
	start := time.Now()
	measureFrom := start.Add(cfg.warmup)
	var wg sync.WaitGroup
	for i, s := range subs {
		wg.Add(1)
		go func(s *subscriber, c *conn) {
			defer wg.Done()
			// Messages from one publishing connection keep their order;
			// across connections the log decides.
			last := make([]int, npub)
			for i := range last {
				last[i] = -1
			}
			for {
				e, err := c.readFrame()
				now := time.Now()
				if err != nil {
					if !errors.Is(err, net.ErrClosed) {
						s.err = err
					}
					return
				}
				if len(e) != 3 || e[0] != "message" {
					continue
				}
				seqStr, rest, _ := strings.Cut(e[2], ":")
				stampStr, _, _ := strings.Cut(rest, ":")
				seq, _ := strconv.Atoi(seqStr)
				stamp, _ := strconv.ParseInt(stampStr, 10, 64)
				if seq < 0 || seq >= len(s.seen) {
					continue
				}
				s.received.Add(1)
				if s.seen[seq] {
					s.dups++
					continue
				}
				s.seen[seq] = true
				if lane := seq % npub; seq < last[lane] {
					s.disorder++
				} else {
					last[lane] = seq
				}
				s.order = append(s.order, int32(seq))
				if sent := time.Unix(0, stamp); sent.After(measureFrom) {
					s.latencies = append(s.latencies, now.Sub(sent))
				}
			}
		}(s, conns[i])
	}

	// Publishers: --publishers pipelined connections per node, open loop.
	// A connection's PUBLISHes commit in order, one batch at a time, so with
	// one connection a slow commit delays the messages queued behind it.
	pubs := make([]*conn, npub)
	for i := range pubs {
		c, err := dial(cfg.addrs[i%len(cfg.addrs)], cfg.password)
		if err != nil {
			return nil, err
		}
		defer c.nc.Close()
		pubs[i] = c
	}
	sendTimes := make([]atomic.Int64, total)
	acks := make([]time.Duration, total) // each written by one reply reader
	var acked, errs atomic.Int64
	var firstErr atomic.Value
	var ackedSeqs sync.Map
	sentSeqs := make([]chan int, len(pubs))
	var pwg sync.WaitGroup
	for i, c := range pubs {
		sentSeqs[i] = make(chan int, total)
		pwg.Add(1)
		go func(c *conn, seqs chan int) { // replies, in order
			defer pwg.Done()
			for seq := range seqs {
				if _, err := c.readFrame(); err != nil {
					firstErr.CompareAndSwap(nil, err.Error())
					errs.Add(1)
					continue
				}
				acked.Add(1)
				ackedSeqs.Store(seq, true)
				if sent := time.Unix(0, sendTimes[seq].Load()); sent.After(measureFrom) {
					acks[seq] = time.Since(sent)
				}
			}
		}(c, sentSeqs[i])
	}
	pad := strings.Repeat("x", max(0, cfg.size-30))
	seq := 0
	for seq < total {
		due := min(total, int(time.Since(start).Seconds()*float64(cfg.rate))+1)
		for ; seq < due; seq++ {
			pub := seq % npub
			now := time.Now().UnixNano()
			sendTimes[seq].Store(now)
			msg := strconv.Itoa(seq) + ":" + strconv.FormatInt(now, 10) + ":" + pad
			if _, err := pubs[pub].nc.Write(encode("PUBLISH", channel, msg)); err != nil {
				return nil, err
			}
			sentSeqs[pub] <- seq
		}
		time.Sleep(200 * time.Microsecond)
	}
	for _, ch := range sentSeqs {
		close(ch)
	}
	pwg.Wait()
	elapsed := time.Since(start)
	// Let deliveries drain: wait until every subscriber has everything
	// acknowledged, or has stopped making progress for 2 s.
	want := acked.Load()
	lastProgress, lastSum := time.Now(), int64(-1)
	for time.Since(lastProgress) < 2*time.Second {
		var sum int64
		done := true
		for _, s := range subs {
			n := s.received.Load()
			sum += n
			done = done && n >= want
		}
		if done {
			break
		}
		if sum != lastSum {
			lastSum, lastProgress = sum, time.Now()
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, c := range conns {
		c.nc.Close()
	}
	wg.Wait()

	res := &Result{Nodes: len(cfg.addrs), Subscribers: cfg.subscribers, Rate: cfg.rate, DurationS: elapsed.Seconds(),
		Published: int64(total), PublishErrs: errs.Load(), Expected: want * int64(cfg.subscribers)}
	res.FirstErr, _ = firstErr.Load().(string)
	var all []time.Duration
	byNode := make([][]time.Duration, len(cfg.addrs))
	for _, s := range subs {
		byNode[s.node] = append(byNode[s.node], s.latencies...)
		res.Deliveries += s.received.Load() - s.dups
		res.Duplicates += s.dups
		res.OutOfOrder += s.disorder
		if s.err != nil {
			res.Dropped++
		}
		ackedSeqs.Range(func(k, _ any) bool {
			if !s.seen[k.(int)] {
				res.Lost++
			}
			return true
		})
		all = append(all, s.latencies...)
		if !sameOrder(subs[0].order, s.order, total) {
			res.Disagree++
		}
	}
	res.DeliveriesPS = float64(res.Deliveries) / elapsed.Seconds()
	res.LatencyUs = summarize(all)
	res.AckUs = summarize(slices.DeleteFunc(acks, func(d time.Duration) bool { return d == 0 }))
	res.ByNode = map[string]Summary{}
	for i, d := range byNode {
		res.ByNode[cfg.addrs[i]] = summarize(d)
	}
	return res, nil
}

// sameOrder reports whether the messages both received came in the same
// relative order.
func sameOrder(a, b []int32, total int) bool {
	pos := make([]int32, total)
	for i := range pos {
		pos[i] = -1
	}
	for i, seq := range a {
		pos[seq] = int32(i)
	}
	last := int32(-1)
	for _, seq := range b {
		if p := pos[seq]; p >= 0 {
			if p < last {
				return false
			}
			last = p
		}
	}
	return true
}

func summarize(d []time.Duration) Summary {
	if len(d) == 0 {
		return Summary{}
	}
	slices.Sort(d)
	us := func(x time.Duration) float64 { return float64(x.Nanoseconds()) / 1e3 }
	at := func(q float64) float64 { return us(d[min(len(d)-1, int(q*float64(len(d))))]) }
	var sum time.Duration
	for _, x := range d {
		sum += x
	}
	return Summary{Samples: len(d), P50: at(0.50), P90: at(0.90), P99: at(0.99), P999: at(0.999),
		Max: us(d[len(d)-1]), Mean: us(sum / time.Duration(len(d)))}
}
