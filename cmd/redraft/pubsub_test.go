package main

// Pub/sub end to end: reply frames byte for byte against a real
// redis-server; one total order for every subscriber of a 3-node cluster;
// the Node-RED SET / PUBLISH / GET-on-message property across node pairs.
// The fault tests are in pubsub_fault_test.go.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redraft/redraft/chaos"
)

// psConn is a raw RESP connection: the tests compare frames byte for byte
// and see exactly what a subscriber receives (go-redis's PubSub reconnects
// and resubscribes by itself, which would hide what the server did).
type psConn struct {
	nc net.Conn
	br *bufio.Reader
}

func psDial(t *testing.T, addr string, opts ...func(*net.Dialer)) *psConn {
	t.Helper()
	d := &net.Dialer{Timeout: 2 * time.Second}
	for _, o := range opts {
		o(d)
	}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &psConn{nc: nc, br: bufio.NewReaderSize(nc, 64<<10)}
}

func (c *psConn) send(args ...string) error {
	var b bytes.Buffer
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	_, err := c.nc.Write(b.Bytes())
	return err
}

// frame reads one reply: its raw bytes and its scalar elements, flattened.
func (c *psConn) frame(timeout time.Duration) (raw []byte, elems []string, err error) {
	c.nc.SetReadDeadline(time.Now().Add(timeout))
	var buf bytes.Buffer
	var read func() error
	read = func() error {
		line, err := c.br.ReadString('\n')
		if err != nil {
			return err
		}
		buf.WriteString(line)
		body := strings.TrimSuffix(line, "\r\n")
		if body == "" {
			return errors.New("empty reply line")
		}
		n, _ := strconv.Atoi(body[1:])
		switch body[0] {
		case '*':
			for i := 0; i < n; i++ {
				if err := read(); err != nil {
					return err
				}
			}
		case '$':
			if n < 0 {
				elems = append(elems, "<nil>")
				return nil
			}
			b := make([]byte, n+2)
			if _, err := io.ReadFull(c.br, b); err != nil {
				return err
			}
			buf.Write(b)
			elems = append(elems, string(b[:n]))
		default:
			elems = append(elems, body)
		}
		return nil
	}
	err = read()
	return buf.Bytes(), elems, err
}

// A subscriber's "message" frames on one connection, in arrival order.
func (c *psConn) messages(timeout time.Duration, n int) ([]string, error) {
	var out []string
	for len(out) < n {
		_, e, err := c.frame(timeout)
		if err != nil {
			return out, err
		}
		switch {
		case len(e) == 3 && e[0] == "message":
			out = append(out, e[2])
		case len(e) == 4 && e[0] == "pmessage":
			out = append(out, e[3])
		}
	}
	return out, nil
}

func startRedisServer(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server not on PATH (apt-get install redis-server): the pub/sub differential test needs a real Redis")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	dir := t.TempDir()
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	addr := "127.0.0.1:" + strconv.Itoa(port)
	waitFor(t, "redis-server", func() bool {
		nc, err := net.Dial("tcp", addr)
		if err == nil {
			nc.Close()
		}
		return err == nil
	})
	return addr
}

// Compare modes for frames whose order Redis leaves to its hash tables.
const (
	exact = iota
	names // [kind name count] confirmations: kinds and counts in order, names as a set
	set   // the frames as a multiset
	elems // one array reply, elements as a multiset
)

type psStep struct {
	conn   int
	cmd    string // "" reads frames only; "|" separates pipelined commands
	frames int
	mode   int
}

// The reply frames of a subscribe-mode session, byte for byte against a
// real redis-server.
func TestPubSubDifferentialAgainstRedis(t *testing.T) {
	oracle := startRedisServer(t)
	c := startCluster(t, 1)
	steps := []psStep{
		{0, "UNSUBSCRIBE", 1, exact}, {0, "PUNSUBSCRIBE", 1, exact}, {0, "UNSUBSCRIBE x y", 2, exact},
		{0, "SUBSCRIBE a b a", 3, exact}, {0, "PSUBSCRIBE p* p* ?q", 3, exact},
		{0, "GET x", 1, exact}, {0, "SET x 1", 1, exact}, {0, "CLIENT ID", 1, exact}, {0, "CLIENT foo", 1, exact},
		{0, "PUBSUB NUMPAT", 1, exact}, {0, "PUBSUB NUMPAT x", 1, exact}, {0, "PUBSUB CHANNELS", 1, exact},
		{0, "PUBLISH a m", 1, exact}, {0, "FOO", 1, exact}, {0, "GET", 1, exact}, {0, "RESET x", 1, exact},
		{0, "SUBSCRIBE", 1, exact}, {0, "PING", 1, exact}, {0, "PING hi", 1, exact}, {0, "PING a b", 1, exact},
		{1, "PUBLISH a hello", 1, exact}, {0, "", 1, exact},
		{1, "PUBLISH pq x", 1, exact}, {0, "", 2, set},
		{1, "PUBLISH b y", 1, exact}, {0, "", 1, exact}, {1, "PUBLISH none z", 1, exact},
		{1, "PUBSUB NUMSUB a b zz", 1, exact}, {1, "PUBSUB NUMSUB", 1, exact}, {1, "PUBSUB NUMPAT", 1, exact},
		{1, "PUBSUB CHANNELS", 1, elems}, {1, "PUBSUB CHANNELS a*", 1, exact}, {1, "PUBSUB CHANNELS a b", 1, exact},
		{1, "PUBSUB FOO", 1, exact}, {1, "PUBSUB", 1, exact}, {1, "PUBSUB HELP", 1, exact},
		{1, "UNSUBSCRIBE a", 1, exact}, {1, "PUNSUBSCRIBE", 1, exact},
		{0, "UNSUBSCRIBE b", 1, exact}, {0, "PUNSUBSCRIBE p*", 1, exact}, {0, "PUNSUBSCRIBE", 1, exact},
		{0, "UNSUBSCRIBE", 1, exact}, {0, "GET x", 1, exact},
		{2, "SUBSCRIBE c", 1, exact}, {2, "PSUBSCRIBE c*", 1, exact}, {1, "PUBLISH c m", 1, exact}, {2, "", 2, exact},
		{2, "SUBSCRIBE d e", 2, exact}, {2, "UNSUBSCRIBE", 3, names}, {2, "PUNSUBSCRIBE", 1, exact}, {2, "ECHO back", 1, exact},
		{0, "SUBSCRIBE a", 1, exact}, {0, "RESET", 1, exact}, {0, "GET x", 1, exact}, {0, "PING", 1, exact},
		{0, "SUBSCRIBE z", 1, exact}, {0, "PING|QUIT", 2, exact},
	}
	var conns [2][3]*psConn
	for i, addr := range []string{oracle, c.RESPAddr(0)} {
		for j := range conns[i] {
			conns[i][j] = psDial(t, addr)
		}
	}
	for n, st := range steps {
		var got [2][][]byte
		var parts [2][][]string
		for side := range conns {
			pc := conns[side][st.conn]
			if st.cmd != "" {
				for _, cmd := range strings.Split(st.cmd, "|") {
					if err := pc.send(strings.Fields(cmd)...); err != nil {
						t.Fatal(err)
					}
				}
			}
			for f := 0; f < st.frames; f++ {
				raw, e, err := pc.frame(5 * time.Second)
				if err != nil {
					t.Fatalf("step %d (c%d %q) side %d: %v", n, st.conn, st.cmd, side, err)
				}
				got[side] = append(got[side], raw)
				parts[side] = append(parts[side], e)
			}
		}
		if !psSame(st.mode, got, parts) {
			t.Errorf("step %d (c%d %q):\n redis:   %q\n redraft: %q", n, st.conn, st.cmd, got[0], got[1])
		}
	}
	// After QUIT both close the connection.
	for side := range conns {
		if _, _, err := conns[side][0].frame(5 * time.Second); !errors.Is(err, io.EOF) {
			t.Errorf("side %d: after QUIT: %v, want EOF", side, err)
		}
	}
}

func psSame(mode int, got [2][][]byte, parts [2][][]string) bool {
	switch mode {
	case set:
		a, b := slices.Clone(got[0]), slices.Clone(got[1])
		slices.SortFunc(a, bytes.Compare)
		slices.SortFunc(b, bytes.Compare)
		return fmt.Sprintf("%q", a) == fmt.Sprintf("%q", b)
	case names:
		var kc, nm [2][]string
		for side := range parts {
			for _, e := range parts[side] {
				kc[side] = append(kc[side], e[0]+" "+e[2])
				nm[side] = append(nm[side], e[1])
			}
			slices.Sort(nm[side])
		}
		return slices.Equal(kc[0], kc[1]) && slices.Equal(nm[0], nm[1])
	case elems:
		a, b := slices.Clone(parts[0][0]), slices.Clone(parts[1][0])
		slices.Sort(a)
		slices.Sort(b)
		return slices.Equal(a, b)
	}
	return fmt.Sprintf("%q", got[0]) == fmt.Sprintf("%q", got[1])
}

// subscribe opens a raw connection to node i and subscribes (or, for a
// pattern, psubscribes) to name, returning once confirmed.
func subscribe(t *testing.T, c *chaos.Cluster, i int, kind, name string, opts ...func(*net.Dialer)) *psConn {
	t.Helper()
	pc := psDial(t, c.RESPAddr(i), opts...)
	if err := pc.send(kind, name); err != nil {
		t.Fatal(err)
	}
	if _, e, err := pc.frame(5 * time.Second); err != nil || e[0] != strings.ToLower(kind) {
		t.Fatalf("%s %s on node %d: %v %v", kind, name, i, e, err)
	}
	return pc
}

// Publishers on random nodes, subscribers (channel and pattern) on every
// node: everyone receives every message exactly once, all in one order, each
// publisher's messages in the order it sent them; PUBLISH counts the
// receivers of the node that served it.
func TestPubSubClusterOneOrder(t *testing.T) {
	c := startCluster(t, 3)
	// Node i has i+1 receivers for "order": PUBLISH through it answers i+1.
	var subs []*psConn
	for i := 0; i < 3; i++ {
		subs = append(subs, subscribe(t, c, i, "SUBSCRIBE", "order"))
		if i >= 1 {
			subs = append(subs, subscribe(t, c, i, "PSUBSCRIBE", "ord*"))
		}
		if i == 2 {
			subs = append(subs, subscribe(t, c, i, "PSUBSCRIBE", "*"))
		}
	}
	const publishers, each = 6, 100
	var wg sync.WaitGroup
	errs := make(chan error, publishers)
	for p := 0; p < publishers; p++ {
		wg.Add(1)
		go func(p int) {
			defer wg.Done()
			rng := rand.New(rand.NewSource(int64(p)))
			clients := []*redis.Client{client(t, c, 0), client(t, c, 1), client(t, c, 2)}
			for m := 0; m < each; m++ {
				i := rng.Intn(3)
				n, err := clients[i].Publish(context.Background(), "order", fmt.Sprintf("%d-%d", p, m)).Result()
				if err == nil && n != int64(i+1) {
					err = fmt.Errorf("PUBLISH through node %d counted %d receivers, want %d", i, n, i+1)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}(p)
	}
	got := make([][]string, len(subs))
	for s, pc := range subs {
		wg.Add(1)
		go func(s int, pc *psConn) {
			defer wg.Done()
			msgs, err := pc.messages(30*time.Second, publishers*each)
			got[s] = msgs
			if err != nil {
				errs <- fmt.Errorf("subscriber %d after %d messages: %v", s, len(msgs), err)
			}
		}(s, pc)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for s := range got {
		if !slices.Equal(got[s], got[0]) {
			t.Fatalf("subscribers 0 and %d disagree on the order", s)
		}
	}
	last := map[string]int{}
	for _, m := range got[0] {
		p, seq, _ := strings.Cut(m, "-")
		n, _ := strconv.Atoi(seq)
		if prev, ok := last[p]; ok && n != prev+1 {
			t.Fatalf("publisher %s: message %d after %d", p, n, prev)
		}
		last[p] = n
	}
	// Stats reach INFO.
	info, err := client(t, c, 2).Info(context.Background(), "stats").Result()
	if err != nil || infoField(info, "pubsub_channels") != "1" || infoField(info, "pubsub_patterns") != "2" ||
		infoField(info, "pubsub_messages_delivered") != strconv.Itoa(3*publishers*each) {
		t.Fatalf("INFO stats on node 3: %v\n%s", err, info)
	}
}

// The Node-RED storage pattern, over and over across random node pairs: SET
// the flows, PUBLISH "updated"; a subscriber that gets the message and then
// GETs on its own node (another connection) sees the flows.
func TestPubSubWriteThenPublishThenRead(t *testing.T) {
	c := startCluster(t, 3)
	const writers, each = 4, 250
	var checks atomic.Int64
	errs := make(chan error, 64)
	var wg sync.WaitGroup
	for i := 0; i < 3; i++ {
		pc := subscribe(t, c, i, "SUBSCRIBE", "nodered:flows:updated")
		reader := client(t, c, i)
		work := make(chan string, writers*each)
		wg.Add(1)
		go func() { // receive; GETs start only after their message arrived
			defer wg.Done()
			defer close(work)
			for n := 0; n < writers*each; n++ {
				msgs, err := pc.messages(30*time.Second, 1)
				if err != nil {
					errs <- fmt.Errorf("subscriber on node %d: %v", i, err)
					return
				}
				work <- msgs[0]
			}
		}()
		for w := 0; w < 4; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for id := range work {
					v, err := reader.Get(context.Background(), "nodered:flows:"+id).Result()
					if err != nil || v != "flows-"+id {
						errs <- fmt.Errorf("node %d: message %s, then GET nodered:flows:%s = %q %v", i, id, id, v, err)
						return
					}
					checks.Add(1)
				}
			}()
		}
	}
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rng := rand.New(rand.NewSource(int64(w)))
			clients := []*redis.Client{client(t, c, 0), client(t, c, 1), client(t, c, 2)}
			ctx := context.Background()
			for n := 0; n < each; n++ {
				id := fmt.Sprintf("%d-%d", w, n)
				pipe := clients[rng.Intn(3)].Pipeline()
				pipe.Set(ctx, "nodered:flows:"+id, "flows-"+id, 0)
				pipe.Publish(ctx, "nodered:flows:updated", id)
				if _, err := pipe.Exec(ctx); err != nil {
					errs <- err
					return
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if checks.Load() != 3*writers*each {
		t.Fatalf("%d reads checked, want %d", checks.Load(), 3*writers*each)
	}
}
