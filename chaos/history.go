package chaos

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// Status is what a client can conclude about an operation.
type Status int

const (
	// OK: acknowledged; the reply is the operation's outcome.
	OK Status = iota
	// Failed: definitely not applied (-CLUSTERDOWN).
	Failed
	// Indeterminate: may or may not have been applied (-UNCERTAIN, a
	// timeout, a closed connection, any other error). For a checker it
	// completes at the end of time.
	Indeterminate
)

func (s Status) String() string {
	switch s {
	case OK:
		return "ok"
	case Failed:
		return "fail"
	}
	return "info"
}

// MarshalText makes histories readable as JSON.
func (s Status) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads what MarshalText wrote.
func (s *Status) UnmarshalText(b []byte) error {
	switch string(b) {
	case "ok":
		*s = OK
	case "fail":
		*s = Failed
	case "info":
		*s = Indeterminate
	default:
		return fmt.Errorf("status %q", b)
	}
	return nil
}

// Op is one client operation with its invocation and completion times
// (offsets from the history's start, from the monotonic clock).
type Op struct {
	ID     int           `json:"id"`
	Client int           `json:"client"`
	Node   int           `json:"node"` // index of the node the client talked to
	Kind   string        `json:"kind"` // see the Kind* constants
	Key    string        `json:"key,omitempty"`
	Value  string        `json:"value,omitempty"` // written value, lock holder name, message
	TTL    time.Duration `json:"ttl,omitempty"`
	Out    string        `json:"out,omitempty"`
	OutNil bool          `json:"out_nil,omitempty"`
	OutInt int64         `json:"out_int,omitempty"`
	Status Status        `json:"status"`
	Err    string        `json:"err,omitempty"`
	Call   time.Duration `json:"call"`
	Return time.Duration `json:"return"`
}

// Operation kinds the checkers understand.
const (
	KindGet         = "get"          // GET key → Out/OutNil
	KindSet         = "set"          // SET key Value
	KindIncr        = "incr"         // INCR key → OutInt
	KindLockAcquire = "lock-acquire" // SET key Value EX ttl NX → Out "OK" or OutNil
	KindLockGet     = "lock-get"     // GET key (refresh/release check) → Out/OutNil
	KindLockExpire  = "lock-expire"  // EXPIRE key ttl → OutInt 1/0
	KindLockDel     = "lock-del"     // DEL key → OutInt
	KindLockCrash   = "lock-crash"   // marker: client Value died without releasing
	KindPublish     = "publish"      // PUBLISH key(channel) Value
	KindEvalIncr    = "eval-incr"    // EVAL of a JSON read-modify-write on key → OutInt (the new n)
)

// IsWrite says whether an op can change state.
func (o Op) IsWrite() bool {
	switch o.Kind {
	case KindSet, KindIncr, KindLockAcquire, KindLockExpire, KindLockDel, KindPublish, KindEvalIncr:
		return true
	}
	return false
}

// End is when the op's effect is known to be over: its return, or the end of
// time for an indeterminate op.
func (o Op) End() time.Duration {
	if o.Status == Indeterminate {
		return time.Duration(math.MaxInt64)
	}
	return o.Return
}

func (o Op) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%9.3fs..%9.3fs c%-3d n%d %-12s %s", o.Call.Seconds(), o.Return.Seconds(), o.Client, o.Node+1, o.Kind, o.Key)
	if o.Value != "" {
		fmt.Fprintf(&b, " %q", o.Value)
	}
	if o.TTL > 0 {
		fmt.Fprintf(&b, " ttl=%v", o.TTL)
	}
	switch {
	case o.Status == Failed:
		fmt.Fprintf(&b, " -> FAIL %s", o.Err)
	case o.Status == Indeterminate:
		fmt.Fprintf(&b, " -> ? %s", o.Err)
	case o.OutNil:
		b.WriteString(" -> nil")
	case o.Out != "":
		fmt.Fprintf(&b, " -> %q", o.Out)
	case o.Kind == KindSet || o.Kind == KindPublish:
		b.WriteString(" -> OK")
	default:
		fmt.Fprintf(&b, " -> %d", o.OutInt)
	}
	return b.String()
}

// History collects operations from many goroutines.
type History struct {
	mu    sync.Mutex
	start time.Time
	ops   []Op
	next  int
}

// NewHistory starts the clock at zero.
func NewHistory() *History { return &History{start: time.Now()} }

// Now is the monotonic offset from the history's start.
func (h *History) Now() time.Duration { return time.Since(h.start) }

// StartTime is the wall-clock time at offset zero.
func (h *History) StartTime() time.Time { return h.start }

// Begin stamps the invocation of an operation; fill in the outputs and pass
// it to End.
func (h *History) Begin(client, node int, kind, key, value string) Op {
	h.mu.Lock()
	h.next++
	id := h.next
	h.mu.Unlock()
	return Op{ID: id, Client: client, Node: node, Kind: kind, Key: key, Value: value, Call: h.Now()}
}

// End stamps the completion, classifies err and records the op.
func (h *History) End(op Op, err error) Op {
	op.Return = h.Now()
	op.Status, op.Err = Classify(err)
	h.Add(op)
	return op
}

// Add records a complete op (a marker, or a hand-written history).
func (h *History) Add(op Op) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if op.ID == 0 {
		h.next++
		op.ID = h.next
	}
	h.ops = append(h.ops, op)
}

// Ops returns a copy of the history sorted by invocation time.
func (h *History) Ops() []Op {
	h.mu.Lock()
	ops := append([]Op(nil), h.ops...)
	h.mu.Unlock()
	SortOps(ops)
	return ops
}

// SortOps orders ops by invocation, then completion, then id.
func SortOps(ops []Op) {
	sort.SliceStable(ops, func(i, j int) bool {
		if ops[i].Call != ops[j].Call {
			return ops[i].Call < ops[j].Call
		}
		if ops[i].Return != ops[j].Return {
			return ops[i].Return < ops[j].Return
		}
		return ops[i].ID < ops[j].ID
	})
}

// WriteJSONL writes one op per line.
func WriteJSONL(w io.Writer, ops []Op) error {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	for _, op := range ops {
		if err := enc.Encode(op); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// Classify maps a client error to what it proves. Only -CLUSTERDOWN is a
// definite failure (the server's contract); a nil reply is a success; every
// other error — -UNCERTAIN, timeouts, closed connections, errors nobody
// promised anything about — leaves the outcome unknown, which is the
// conservative reading for every checker.
func Classify(err error) (Status, string) {
	if err == nil || errors.Is(err, redis.Nil) {
		return OK, ""
	}
	msg := err.Error()
	var rerr redis.Error
	if errors.As(err, &rerr) && strings.HasPrefix(msg, "CLUSTERDOWN") {
		return Failed, msg
	}
	// A connection that could not be opened carried no command: the client
	// dials before it writes. (A killed node refuses connections; counting
	// those as indeterminate would leave hundreds of open operations for
	// the linearizability search.)
	var oerr *net.OpError
	if errors.As(err, &oerr) && oerr.Op == "dial" {
		return Failed, msg
	}
	var nerr net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &nerr) && nerr.Timeout():
		msg = "timeout: " + msg
	}
	return Indeterminate, msg
}

// ErrorClass is a short label for an error, to count errors by kind.
func ErrorClass(msg string) string {
	if msg == "" {
		return ""
	}
	if strings.HasPrefix(msg, "timeout") {
		return "timeout"
	}
	f := strings.Fields(msg)
	if len(f) == 0 {
		return "?"
	}
	if strings.ToUpper(f[0]) == f[0] && !strings.Contains(f[0], ":") {
		return f[0] // a RESP error code: CLUSTERDOWN, UNCERTAIN, ERR, ...
	}
	switch {
	case strings.Contains(msg, "connection refused"):
		return "refused"
	case strings.Contains(msg, "reset by peer"), strings.Contains(msg, "EOF"), strings.Contains(msg, "closed"):
		return "closed"
	}
	return "other"
}

// quietLogger drops go-redis's own log lines: while nodes are down its pool
// logs every failed dial, which is expected here and drowns the progress.
type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

// QuietClientLogs silences go-redis's process-wide logger.
func QuietClientLogs() { redis.SetLogger(quietLogger{}) }

// NewClient returns a go-redis client for node i of c that redials the
// node's current address (it changes on restart) and never retries by
// itself: a silent retry of INCR would apply it twice and look like a bug in
// the server. The read timeout outlasts the server's election wait so that
// -CLUSTERDOWN can arrive before the client gives up.
func NewClient(c *Cluster, i int, timeout time.Duration) *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr: fmt.Sprintf("node-%d", i), // informational; the Dialer decides
		Dialer: func(ctx context.Context, network, _ string) (net.Conn, error) {
			d := net.Dialer{Timeout: 2 * time.Second}
			return d.DialContext(ctx, "tcp", c.RESPAddr(i))
		},
		Password:                 c.Password(),
		Protocol:                 2,
		DisableIdentity:          true,
		MaxRetries:               -1,
		DialTimeout:              2 * time.Second,
		ReadTimeout:              timeout,
		WriteTimeout:             timeout,
		PoolSize:                 4,
		PoolTimeout:              timeout,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
}
