package main_test

// Differential test: the same commands, byte for byte, to a real redis-server
// (the oracle) and to a single redraft node (the subject); the replies must be
// identical byte for byte, except where a corpus line says how else to compare.
//
// Run:
//
//	go test ./cmd/redraft/ -run Differential -v
//
// Environment:
//
//	REDRAFT_BIN=/path/to/redraft      use this binary instead of building ./cmd/redraft
//	                                  (the node is started by the chaos package's launcher)
//	REDRAFT_DIFF_AGAINST_REDIS=1      self-test of the harness: the subject is a second
//	                                  redis-server instead of redraft (must pass cleanly)
//	REDRAFT_DIFF_VERBOSE=1            log every command and both replies
//
// Corpus: testdata/differential/*.txt, one command per line, run in file-name
// order, each file on fresh connections after FLUSHALL on both servers.
//
//	# comment                    (also blank lines)
//	SET k "a b\r\n" EX 10        arguments are split on blanks; "..." takes the escapes
//	                             \" \\ \r \n \t \0 \xHH; '...' is literal; "" is an empty arg
//	~1 TTL k                     integer reply, equal within ±1 (negative replies must
//	                             match exactly); ~1500 PTTL k, ~2 EXPIRETIME k
//	~set KEYS *                  array reply compared as a sorted multiset
//	~scan SCAN 0 MATCH a* COUNT 3
//	                             iterate, feeding back the returned cursor (argument 1),
//	                             until cursor 0; compare the set of keys returned (cursor
//	                             values themselves differ between implementations)
//	~shape HELLO 2               compare only the reply's shape (types, array lengths)
//	~ignore CMD ...              send to both, compare nothing (setup)
//	!sleep 250                   sleep that many milliseconds (used for expiry)
//	!reconnect                   drop both connections and open fresh ones (db 0)
//
// At the end of each file the full keyspace of db 0..15 is compared as well
// (keys, types, string values, PTTL within 1.5 s).
//
// Also: "first-read" (a fresh node's first command is a read), "malformed"
// (raw bytes: protocol errors, inline commands, pipelining, QUIT; the reply
// bytes and whether the server closed the connection must match),
// "requirepass" (both servers with a password; corpus in
// testdata/differential/auth/, plus the unauthenticated protocol limits) and
// "client-setinfo" (redraft alone: +OK as Redis 7.2 answers, the 7.0 oracle
// cannot). If redraft dies, the crash is reported with its log and a fresh
// node is started so that the rest still runs.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redraft/redraft/chaos"
)

const (
	diffReplyTimeout = 10 * time.Second
	diffPassword     = "s3cret-pass" // the requirepass subtest's password
)

func TestDifferential(t *testing.T) {
	redisBin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server not on PATH (apt-get install redis-server): the differential test needs a real Redis as its oracle")
	}
	againstRedis := os.Getenv("REDRAFT_DIFF_AGAINST_REDIS") != ""

	oracle := diffStartRedis(t, redisBin)
	subject := &diffSubject{}
	if againstRedis {
		t.Log("REDRAFT_DIFF_AGAINST_REDIS set: the subject is a second redis-server (harness self-test)")
		subject.addr = diffStartRedis(t, redisBin)
	} else {
		subject.bin = diffRedraftBinary(t)
		subject.start(t)
		t.Cleanup(subject.close)
	}

	// The very first command a fresh node gets is a read (before any write
	// has gone through the log): it must answer like Redis, not time out.
	t.Run("first-read", func(t *testing.T) {
		p := &diffPair{t: t, oracleAddr: oracle, sub: subject}
		p.connect()
		defer p.close()
		for _, args := range [][]string{{"GET", "diff:first"}, {"EXISTS", "diff:first"}, {"KEYS", "*"}, {"DBSIZE"}} {
			if o, s, ok := p.both("(fresh node)", args); ok && !bytes.Equal(o.raw, s.raw) {
				p.mismatchReplies("(fresh node)", args, "exact", o, s)
				break // the others would most likely wait and fail the same way
			}
		}
	})

	files, err := filepath.Glob(filepath.Join("testdata", "differential", "*.txt"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no corpus files in testdata/differential (%v)", err)
	}
	sort.Strings(files)
	total := 0
	for _, f := range files {
		cmds, err := diffParseCorpus(f)
		if err != nil {
			t.Fatalf("%v", err)
		}
		total += len(cmds)
		name := strings.TrimSuffix(filepath.Base(f), ".txt")
		t.Run(name, func(t *testing.T) {
			diffRunCorpus(t, oracle, subject, "", cmds)
		})
	}
	t.Logf("corpus: %d files, %d commands", len(files), total)

	t.Run("malformed", func(t *testing.T) {
		diffRunMalformed(t, oracle, subject.addr, diffWireCases)
	})

	// The same with a password: NOAUTH / WRONGPASS replies, AUTH and HELLO
	// AUTH, and the stricter limits Redis puts on unauthenticated input.
	t.Run("requirepass", func(t *testing.T) {
		const pass = diffPassword
		oracle := diffStartRedis(t, redisBin, "--requirepass", pass)
		sub := &diffSubject{bin: subject.bin, extra: []string{"--requirepass", pass}}
		if againstRedis {
			sub.addr = diffStartRedis(t, redisBin, "--requirepass", pass)
		} else {
			sub.start(t)
			t.Cleanup(sub.close)
		}
		files, err := filepath.Glob(filepath.Join("testdata", "differential", "auth", "*.txt"))
		if err != nil || len(files) == 0 {
			t.Fatalf("no corpus files in testdata/differential/auth (%v)", err)
		}
		sort.Strings(files)
		for _, f := range files {
			cmds, err := diffParseCorpus(f)
			if err != nil {
				t.Fatalf("%v", err)
			}
			t.Run(strings.TrimSuffix(filepath.Base(f), ".txt"), func(t *testing.T) {
				diffRunCorpus(t, oracle, sub, pass, cmds)
			})
		}
		t.Run("malformed", func(t *testing.T) {
			diffRunMalformed(t, oracle, sub.addr, diffAuthWireCases)
		})
	})

	t.Run("client-setinfo", func(t *testing.T) {
		// COMPAT.md: answer +OK like Redis 7.2+; the 7.0 oracle rejects it, so
		// this is checked on the subject alone.
		if againstRedis {
			t.Skip("subject is redis-server 7.0, which rejects CLIENT SETINFO")
		}
		c := diffDial(t, subject.addr)
		defer c.Close()
		for _, args := range [][]string{
			{"CLIENT", "SETINFO", "LIB-NAME", "ioredis"},
			{"CLIENT", "SETINFO", "LIB-VER", "5.11.1"},
			{"client", "setinfo", "lib-name", "ioredis(node-red)"},
		} {
			r, err := c.do(args...)
			if err != nil {
				t.Fatalf("%s: %v", strings.Join(args, " "), err)
			}
			if string(r.raw) != "+OK\r\n" {
				t.Errorf("%s: want %q, got %q", strings.Join(args, " "), "+OK\r\n", r.raw)
			}
		}
	})
}

// ---------------------------------------------------------------------------
// servers

func diffFreePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func diffStartRedis(t *testing.T, bin string, extra ...string) string {
	t.Helper()
	dir := t.TempDir()
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port := diffFreePort(t)
		logf, err := os.Create(filepath.Join(dir, fmt.Sprintf("redis-%d.log", port)))
		if err != nil {
			t.Fatal(err)
		}
		args := append([]string{
			"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--daemonize", "no",
			"--dir", dir, "--protected-mode", "yes"}, extra...)
		cmd := exec.Command(bin, args...)
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			logf.Close()
			t.Fatalf("start redis-server: %v", err)
		}
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		t.Cleanup(func() {
			cmd.Process.Kill()
			<-done
			logf.Close()
		})
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		if lastErr = diffWaitPing(addr, diffFlagValue(extra, "--requirepass"), done, 10*time.Second); lastErr == nil {
			return addr
		}
		cmd.Process.Kill()
	}
	t.Fatalf("redis-server did not come up: %v", lastErr)
	return ""
}

func diffFlagValue(args []string, name string) string {
	for i, a := range args {
		if a == name && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

// diffWaitPing waits until addr answers PING with +PONG.
func diffWaitPing(addr, pass string, exited <-chan struct{}, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var lastErr error
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return errors.New("process exited")
		default:
		}
		c, err := diffDialRaw(addr)
		if err == nil {
			if pass != "" {
				c.do("AUTH", pass)
			}
			r, err2 := c.do("PING")
			c.Close()
			if err2 == nil && string(r.raw) == "+PONG\r\n" {
				return nil
			}
			if err2 != nil {
				err = err2
			} else {
				err = fmt.Errorf("PING replied %q", r.raw)
			}
		}
		lastErr = err
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("timeout: %v", lastErr)
}

func diffRedraftBinary(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("REDRAFT_BIN"); bin != "" {
		return bin
	}
	bin, err := chaos.BuildBinary(t.TempDir())
	if err != nil {
		t.Fatalf("%v", err)
	}
	return bin
}

// diffSubject is the server under test: a single bootstrapped redraft node
// started through the chaos launcher (addrs.json, PING, ROLE master), or a
// plain address in the self-test. When redraft dies the harness reports the
// crash with its log and starts a fresh node so the rest of the corpus still
// runs.
type diffSubject struct {
	addr    string
	bin     string         // "" in the self-test
	extra   []string       // extra flags (--requirepass)
	cluster *chaos.Cluster // current node
	mu      sync.Mutex
}

func (s *diffSubject) start(t *testing.T) {
	t.Helper()
	dir, err := os.MkdirTemp("", "redraft-diff-")
	if err != nil {
		t.Fatal(err)
	}
	c, err := chaos.StartCluster(chaos.ClusterConfig{Binary: s.bin, Nodes: 1, Dir: dir, ExtraArgs: s.extra})
	if err != nil {
		os.RemoveAll(dir)
		t.Fatalf("start redraft: %v", err)
	}
	s.mu.Lock()
	old := s.cluster
	s.cluster, s.addr = c, c.RESPAddr(0)
	s.mu.Unlock()
	if old != nil {
		old.Close()
		os.RemoveAll(filepath.Dir(old.Nodes()[0].DataDir))
	}
}

func (s *diffSubject) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cluster != nil {
		s.cluster.Close()
		os.RemoveAll(filepath.Dir(s.cluster.Nodes()[0].DataDir))
		s.cluster = nil
	}
}

// crashed reports whether the redraft process has died (waiting briefly for
// the exit to be noticed) and returns its log tail.
func (s *diffSubject) crashed() (bool, string) {
	if s.cluster == nil {
		return false, ""
	}
	for i := 0; i < 20; i++ {
		if !s.cluster.Running(0) {
			return true, s.cluster.LogTail(0)
		}
		time.Sleep(25 * time.Millisecond)
	}
	return false, ""
}

// ---------------------------------------------------------------------------
// raw RESP client

type diffConn struct {
	addr string
	nc   net.Conn
	r    *bufio.Reader
}

type diffReply struct {
	raw   []byte // the exact bytes of the reply
	kind  byte   // '+', '-', ':', '$', '*', ... (RESP3 kinds too)
	line  string // for simple kinds: the text after the kind byte
	bulk  []byte // for '$' (nil when null)
	null  bool
	elems []*diffReply
}

func diffDialRaw(addr string) (*diffConn, error) {
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	return &diffConn{addr: addr, nc: nc, r: bufio.NewReaderSize(nc, 64*1024)}, nil
}

func diffDial(t *testing.T, addr string) *diffConn {
	t.Helper()
	c, err := diffDialRaw(addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	return c
}

func (c *diffConn) Close() error { return c.nc.Close() }

func diffEncode(args []string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	return b.Bytes()
}

func (c *diffConn) do(args ...string) (*diffReply, error) {
	c.nc.SetDeadline(time.Now().Add(diffReplyTimeout))
	if _, err := c.nc.Write(diffEncode(args)); err != nil {
		return nil, err
	}
	return c.read()
}

func (c *diffConn) read() (*diffReply, error) {
	c.nc.SetReadDeadline(time.Now().Add(diffReplyTimeout))
	var raw bytes.Buffer
	return diffReadReply(c.r, &raw)
}

func diffReadReply(br *bufio.Reader, raw *bytes.Buffer) (*diffReply, error) {
	start := raw.Len()
	rep, err := diffReadValue(br, raw)
	if rep != nil {
		// Every element keeps its own exact bytes (for ~set and ~scan).
		rep.raw = append([]byte(nil), raw.Bytes()[start:]...)
	}
	return rep, err
}

func diffReadValue(br *bufio.Reader, raw *bytes.Buffer) (*diffReply, error) {
	line, err := br.ReadBytes('\n')
	raw.Write(line)
	if err != nil {
		return nil, err
	}
	if len(line) < 3 || line[len(line)-2] != '\r' {
		return nil, fmt.Errorf("malformed reply line %q", line)
	}
	rep := &diffReply{kind: line[0], line: string(line[1 : len(line)-2])}
	count := func() (int, error) {
		n, err := strconv.Atoi(rep.line)
		if err != nil {
			return 0, fmt.Errorf("bad length in %q", line)
		}
		return n, nil
	}
	switch rep.kind {
	case '+', '-', ':', '_', ',', '#', '(':
		rep.null = rep.kind == '_'
		return rep, nil
	case '$', '!', '=':
		n, err := count()
		if err != nil {
			return nil, err
		}
		if n < 0 {
			rep.null = true
			return rep, nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(br, buf); err != nil {
			raw.Write(buf)
			return nil, err
		}
		raw.Write(buf)
		if buf[n] != '\r' || buf[n+1] != '\n' {
			return nil, fmt.Errorf("bulk of %d bytes not followed by CRLF", n)
		}
		rep.bulk = buf[:n]
		return rep, nil
	case '*', '~', '>', '%', '|':
		n, err := count()
		if err != nil {
			return nil, err
		}
		if n < 0 {
			rep.null = true
			return rep, nil
		}
		if rep.kind == '%' || rep.kind == '|' {
			n *= 2
		}
		for i := 0; i < n; i++ {
			e, err := diffReadReply(br, raw)
			if err != nil {
				return nil, err
			}
			rep.elems = append(rep.elems, e)
		}
		return rep, nil
	}
	return nil, fmt.Errorf("unknown reply type in %q", line)
}

// shape describes a reply without its contents: kinds and array lengths.
func (r *diffReply) shape() string {
	switch {
	case r.null:
		return string(r.kind) + "null"
	case len(r.elems) > 0 || r.kind == '*' || r.kind == '~' || r.kind == '%' || r.kind == '>':
		parts := make([]string, len(r.elems))
		for i, e := range r.elems {
			parts[i] = e.shape()
		}
		return string(r.kind) + "[" + strings.Join(parts, " ") + "]"
	case r.kind == '-':
		// keep the error code (first word), not the text
		code, _, _ := strings.Cut(r.line, " ")
		return "-" + code
	}
	return string(r.kind)
}

// ---------------------------------------------------------------------------
// corpus

type diffCmd struct {
	file   string
	line   int
	text   string
	marker string // "", "tol", "set", "scan", "shape", "ignore"
	tol    int64
	direct string // "sleep", "reconnect"
	arg    int
	args   []string
}

func (c *diffCmd) where() string { return fmt.Sprintf("%s:%d", c.file, c.line) }

func diffParseCorpus(path string) ([]*diffCmd, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var cmds []*diffCmd
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimRight(line, "\r")
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		c := &diffCmd{file: path, line: i + 1, text: trimmed}
		bad := func(format string, a ...any) error {
			return fmt.Errorf("%s: "+format, append([]any{c.where()}, a...)...)
		}
		if strings.HasPrefix(trimmed, "!") {
			f := strings.Fields(trimmed[1:])
			switch {
			case len(f) == 2 && f[0] == "sleep":
				n, err := strconv.Atoi(f[1])
				if err != nil {
					return nil, bad("bad !sleep")
				}
				c.direct, c.arg = "sleep", n
			case len(f) == 1 && f[0] == "reconnect":
				c.direct = "reconnect"
			default:
				return nil, bad("unknown directive %q", trimmed)
			}
			cmds = append(cmds, c)
			continue
		}
		rest := trimmed
		if strings.HasPrefix(rest, "~") {
			m, r, _ := strings.Cut(rest, " ")
			rest = r
			switch m = m[1:]; m {
			case "set", "scan", "shape", "ignore":
				c.marker = m
			default:
				n, err := strconv.ParseInt(m, 10, 64)
				if err != nil || n < 0 {
					return nil, bad("unknown marker ~%s", m)
				}
				c.marker, c.tol = "tol", n
			}
		}
		args, err := diffSplitArgs(rest)
		if err != nil {
			return nil, bad("%v", err)
		}
		if len(args) == 0 {
			return nil, bad("no command")
		}
		c.args = args
		cmds = append(cmds, c)
	}
	return cmds, nil
}

// diffSplitArgs splits a corpus line into arguments: blanks separate, "..."
// takes backslash escapes, '...' is literal.
func diffSplitArgs(s string) ([]string, error) {
	var args []string
	i := 0
	for {
		for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
			i++
		}
		if i >= len(s) {
			return args, nil
		}
		var cur strings.Builder
		inArg := true
		for inArg && i < len(s) {
			switch ch := s[i]; ch {
			case ' ', '\t':
				inArg = false
			case '"':
				i++
				closed := false
				for i < len(s) {
					if s[i] == '"' {
						closed = true
						i++
						break
					}
					if s[i] == '\\' && i+1 < len(s) {
						i++
						switch s[i] {
						case 'n':
							cur.WriteByte('\n')
						case 'r':
							cur.WriteByte('\r')
						case 't':
							cur.WriteByte('\t')
						case '0':
							cur.WriteByte(0)
						case 'x':
							if i+2 >= len(s) {
								return nil, errors.New("short \\x escape")
							}
							v, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
							if err != nil {
								return nil, fmt.Errorf("bad \\x escape: %v", err)
							}
							cur.WriteByte(byte(v))
							i += 2
						default:
							cur.WriteByte(s[i])
						}
						i++
						continue
					}
					cur.WriteByte(s[i])
					i++
				}
				if !closed {
					return nil, errors.New("unbalanced double quote")
				}
				continue
			case '\'':
				j := strings.IndexByte(s[i+1:], '\'')
				if j < 0 {
					return nil, errors.New("unbalanced single quote")
				}
				cur.WriteString(s[i+1 : i+1+j])
				i += j + 2
				continue
			default:
				cur.WriteByte(ch)
			}
			i++
		}
		args = append(args, cur.String())
	}
}

func diffQuoteArgs(args []string) string {
	parts := make([]string, len(args))
	for i, a := range args {
		if a != "" && !strings.ContainsAny(a, " \t\r\n\"'\\") && strconv.Quote(a) == `"`+a+`"` {
			parts[i] = a
		} else {
			parts[i] = strconv.Quote(a)
		}
	}
	return strings.Join(parts, " ")
}

// ---------------------------------------------------------------------------
// running a corpus file

type diffPair struct {
	t               *testing.T
	oracleAddr      string
	sub             *diffSubject
	oracle, subject *diffConn
	password        string // requirepass of both servers, "" if none
	crashed         bool
	verbose         bool
	mismatches      int
}

func (p *diffPair) connect() {
	p.t.Helper()
	if p.oracle != nil {
		p.oracle.Close()
	}
	if p.subject != nil {
		p.subject.Close()
	}
	p.oracle = diffDial(p.t, p.oracleAddr)
	p.subject = diffDial(p.t, p.sub.addr)
}

// authenticate sends AUTH on both connections (setup, replies not compared).
func (p *diffPair) authenticate() {
	if p.password == "" {
		return
	}
	p.oracle.do("AUTH", p.password)
	p.subject.do("AUTH", p.password)
}

func (p *diffPair) close() {
	if p.oracle != nil {
		p.oracle.Close()
	}
	if p.subject != nil {
		p.subject.Close()
	}
}

// both sends args to both servers; on an I/O error on either side it reports
// the error, reconnects both and returns ok=false.
func (p *diffPair) both(where string, args []string) (o, s *diffReply, ok bool) {
	p.t.Helper()
	o, errO := p.oracle.do(args...)
	s, errS := p.subject.do(args...)
	if errO != nil || errS != nil {
		p.ioFailure(where, args, fmt.Sprintf("I/O: redis-server err=%v reply=%q; redraft err=%v reply=%q",
			errO, diffRaw(o), errS, diffRaw(s)))
		return o, s, false
	}
	if p.verbose {
		p.t.Logf("%s: %s\n    redis-server: %q\n    redraft:      %q", where, diffQuoteArgs(args), o.raw, s.raw)
	}
	return o, s, true
}

// ioFailure reports an I/O error; if redraft died, it reports the crash with
// the log, starts a fresh node and carries on (state is lost: later
// mismatches in the same file may be consequences).
func (p *diffPair) ioFailure(where string, args []string, detail string) {
	p.t.Helper()
	if dead, tail := p.sub.crashed(); dead {
		p.mismatches++
		p.crashed = true
		p.t.Errorf("CRASH %s: redraft died on: %s\n    %s\n--- redraft log (tail) ---\n%s\n--- a fresh node is started; later mismatches in this file may follow from the lost state ---",
			where, diffQuoteArgs(args), detail, tail)
		p.sub.start(p.t)
		// A write first, so that the fresh node's first-read problem (if
		// any; see the first-read subtest) does not drown the rest.
		if c, err := diffDialRaw(p.sub.addr); err == nil {
			if p.password != "" {
				c.do("AUTH", p.password)
			}
			c.do("FLUSHALL")
			c.Close()
		}
	} else {
		p.mismatch(where, args, detail)
	}
	p.connect()
}

func diffRaw(r *diffReply) []byte {
	if r == nil {
		return nil
	}
	return r.raw
}

func (p *diffPair) mismatch(where string, args []string, detail string) {
	p.t.Helper()
	p.mismatches++
	p.t.Errorf("MISMATCH %s: %s\n    %s", where, diffQuoteArgs(args), detail)
}

func (p *diffPair) mismatchReplies(where string, args []string, how string, o, s *diffReply) {
	p.t.Helper()
	p.mismatch(where, args, fmt.Sprintf("(%s)\n    redis-server: %q\n    redraft:      %q", how, o.raw, s.raw))
}

func diffRunCorpus(t *testing.T, oracleAddr string, sub *diffSubject, password string, cmds []*diffCmd) {
	p := &diffPair{t: t, oracleAddr: oracleAddr, sub: sub, password: password,
		verbose: os.Getenv("REDRAFT_DIFF_VERBOSE") != ""}
	p.connect()
	defer p.close()

	p.authenticate()
	if o, s, ok := p.both("(setup)", []string{"FLUSHALL"}); ok && !bytes.Equal(o.raw, s.raw) {
		p.mismatchReplies("(setup)", []string{"FLUSHALL"}, "exact", o, s)
	}
	if p.password != "" {
		p.connect() // the corpus starts unauthenticated
	}

	for _, c := range cmds {
		switch c.direct {
		case "sleep":
			time.Sleep(time.Duration(c.arg) * time.Millisecond)
			continue
		case "reconnect":
			p.connect()
			continue
		}
		where := c.where()
		if c.marker == "scan" {
			p.scan(c)
			continue
		}
		o, s, ok := p.both(where, c.args)
		if !ok {
			continue
		}
		switch c.marker {
		case "":
			if !bytes.Equal(o.raw, s.raw) {
				p.mismatchReplies(where, c.args, "exact", o, s)
			}
		case "ignore":
		case "shape":
			if o.shape() != s.shape() {
				p.mismatch(where, c.args, fmt.Sprintf("(shape)\n    redis-server: %s  %q\n    redraft:      %s  %q",
					o.shape(), o.raw, s.shape(), s.raw))
			}
		case "set":
			if !diffSameSet(o, s) {
				p.mismatchReplies(where, c.args, "as a set", o, s)
			}
		case "tol":
			if !diffWithin(o, s, c.tol) {
				p.mismatchReplies(where, c.args, fmt.Sprintf("integer within ±%d", c.tol), o, s)
			}
		}
	}
	if !p.crashed {
		p.compareKeyspace(cmds[len(cmds)-1].file)
	}
}

func diffSameSet(o, s *diffReply) bool {
	if o.kind != '*' || s.kind != '*' || o.null || s.null {
		return bytes.Equal(o.raw, s.raw)
	}
	a, b := diffElemStrings(o), diffElemStrings(s)
	sort.Strings(a)
	sort.Strings(b)
	return strings.Join(a, "\x00\x01") == strings.Join(b, "\x00\x01") && len(a) == len(b)
}

func diffElemStrings(r *diffReply) []string {
	out := make([]string, len(r.elems))
	for i, e := range r.elems {
		out[i] = string(e.raw)
	}
	return out
}

func diffWithin(o, s *diffReply, tol int64) bool {
	if o.kind != ':' || s.kind != ':' {
		return bytes.Equal(o.raw, s.raw)
	}
	a, err1 := strconv.ParseInt(o.line, 10, 64)
	b, err2 := strconv.ParseInt(s.line, 10, 64)
	if err1 != nil || err2 != nil {
		return false
	}
	if a < 0 || b < 0 {
		return a == b
	}
	d := a - b
	if d < 0 {
		d = -d
	}
	return d <= tol
}

// scan iterates a SCAN-like command (cursor is argument 1) to cursor 0 on each
// server and compares the sets of elements returned.
func (p *diffPair) scan(c *diffCmd) {
	p.t.Helper()
	where := c.where()
	iterate := func(conn *diffConn) (map[string]bool, *diffReply, error) {
		args := append([]string(nil), c.args...)
		seen := map[string]bool{}
		for i := 0; i < 100000; i++ {
			r, err := conn.do(args...)
			if err != nil {
				return nil, nil, err
			}
			if r.kind != '*' || len(r.elems) != 2 || r.elems[0].kind != '$' || r.elems[1].kind != '*' {
				return nil, r, nil // error or malformed: compared as bytes
			}
			for _, e := range r.elems[1].elems {
				seen[string(e.bulk)] = true
			}
			cur := string(r.elems[0].bulk)
			if cur == "0" {
				return seen, nil, nil
			}
			if len(args) < 2 {
				return nil, r, nil
			}
			args[1] = cur
		}
		return nil, nil, errors.New("SCAN did not finish after 100000 calls")
	}
	oset, oerr, errO := iterate(p.oracle)
	sset, serr, errS := iterate(p.subject)
	if errO != nil || errS != nil {
		p.ioFailure(where, c.args, fmt.Sprintf("(scan) I/O: redis-server %v; redraft %v", errO, errS))
		return
	}
	if p.verbose {
		p.t.Logf("%s: %s (scan)\n    redis-server: %q %q\n    redraft:      %q %q", where, diffQuoteArgs(c.args),
			diffSortedKeys(oset), diffRaw(oerr), diffSortedKeys(sset), diffRaw(serr))
	}
	switch {
	case oerr != nil || serr != nil:
		if oerr == nil || serr == nil || !bytes.Equal(oerr.raw, serr.raw) {
			p.mismatch(where, c.args, fmt.Sprintf("(scan, non-scan reply)\n    redis-server: %q %q\n    redraft:      %q %q",
				diffRaw(oerr), diffSortedKeys(oset), diffRaw(serr), diffSortedKeys(sset)))
		}
	default:
		a, b := diffSortedKeys(oset), diffSortedKeys(sset)
		if strings.Join(a, "\x00") != strings.Join(b, "\x00") || len(a) != len(b) {
			p.mismatch(where, c.args, fmt.Sprintf("(scan: set of keys until cursor 0)\n    redis-server: %q\n    redraft:      %q", a, b))
		}
	}
}

func diffSortedKeys(m map[string]bool) []string {
	if m == nil {
		return nil
	}
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

type diffKeyState struct {
	typ   string
	value string
	pttl  int64
}

// compareKeyspace compares keys, types, string values and TTLs of db 0..15.
func (p *diffPair) compareKeyspace(file string) {
	p.t.Helper()
	where := file + ":EOF"
	p.connect()
	p.authenticate()
	for db := 0; db < 16; db++ {
		ostate, err1 := diffKeyspace(p.oracle, db)
		sstate, err2 := diffKeyspace(p.subject, db)
		if err1 != nil || err2 != nil {
			p.ioFailure(where, []string{"(keyspace of db " + strconv.Itoa(db) + ")"},
				fmt.Sprintf("redis-server: %v; redraft: %v", err1, err2))
			if p.crashed {
				return
			}
			continue
		}
		var diffs []string
		for k, o := range ostate {
			s, ok := sstate[k]
			switch {
			case !ok:
				diffs = append(diffs, fmt.Sprintf("key %q: only on redis-server (%s %q pttl %d)", k, o.typ, o.value, o.pttl))
			case o.typ != s.typ || o.value != s.value:
				diffs = append(diffs, fmt.Sprintf("key %q: redis-server %s %q, redraft %s %q", k, o.typ, o.value, s.typ, s.value))
			case (o.pttl < 0 || s.pttl < 0) && o.pttl != s.pttl,
				o.pttl >= 0 && s.pttl >= 0 && (o.pttl-s.pttl > 1500 || s.pttl-o.pttl > 1500):
				diffs = append(diffs, fmt.Sprintf("key %q: PTTL redis-server %d, redraft %d", k, o.pttl, s.pttl))
			}
		}
		for k, s := range sstate {
			if _, ok := ostate[k]; !ok {
				diffs = append(diffs, fmt.Sprintf("key %q: only on redraft (%s %q pttl %d)", k, s.typ, s.value, s.pttl))
			}
		}
		if len(diffs) > 0 {
			sort.Strings(diffs)
			p.mismatch(where, []string{"(keyspace of db " + strconv.Itoa(db) + ")"}, strings.Join(diffs, "\n    "))
		}
	}
}

func diffKeyspace(c *diffConn, db int) (map[string]diffKeyState, error) {
	r, err := c.do("SELECT", strconv.Itoa(db))
	if err != nil {
		return nil, err
	}
	if string(r.raw) != "+OK\r\n" {
		return nil, fmt.Errorf("SELECT %d: %q", db, r.raw)
	}
	r, err = c.do("KEYS", "*")
	if err != nil {
		return nil, err
	}
	if r.kind != '*' {
		return nil, fmt.Errorf("KEYS *: %q", r.raw)
	}
	out := map[string]diffKeyState{}
	for _, e := range r.elems {
		k := string(e.bulk)
		var st diffKeyState
		tr, err := c.do("TYPE", k)
		if err != nil {
			return nil, err
		}
		st.typ = tr.line
		if st.typ == "string" {
			vr, err := c.do("GET", k)
			if err != nil {
				return nil, err
			}
			st.value = string(vr.bulk)
		}
		pr, err := c.do("PTTL", k)
		if err != nil {
			return nil, err
		}
		st.pttl, _ = strconv.ParseInt(pr.line, 10, 64)
		if st.typ == "none" {
			continue // expired between KEYS and TYPE
		}
		out[k] = st
	}
	return out, nil
}

// ---------------------------------------------------------------------------
// malformed input

type diffWireCase struct {
	name string
	in   string
}

var diffWireCases = []diffWireCase{
	{"negative bulk length", "*2\r\n$3\r\nGET\r\n$-5\r\n"},
	{"non-numeric multibulk length", "*abc\r\n"},
	{"non-numeric bulk length", "*1\r\n$abc\r\n"},
	{"bulk length over proto-max-bulk-len", "*1\r\n$600000000\r\n"},
	{"huge multibulk count, no args follow", "*2000000\r\n"},
	{"multibulk count over INT_MAX", "*9999999999\r\n"},
	{"missing $ before argument", "*1\r\nPING\r\n"},
	{"empty multibulk then PING", "*0\r\n*1\r\n$4\r\nPING\r\n"},
	{"negative multibulk then PING", "*-1\r\n*1\r\n$4\r\nPING\r\n"},
	{"inline PING", "PING\r\n"},
	{"inline PING with LF only", "PING\n"},
	{"inline lowercase with argument", "ping hello\r\n"},
	{"inline double quotes", "ECHO \"hello world\"\r\n"},
	{"inline single quotes", "ECHO 'it''s'\r\n"},
	{"inline single quotes with escaped quote", "ECHO 'it\\'s'\r\n"},
	{"inline quote escapes", "ECHO \"a\\x41\\n\\\"b\"\r\n"},
	{"inline set/get with quotes", "SET \"k 1\" 'v 1'\r\nGET \"k 1\"\r\nDEL \"k 1\"\r\n"},
	{"inline unbalanced quotes", "ECHO \"abc\r\n"},
	{"inline closing quote not followed by space", "ECHO \"abc\"def\r\n"},
	{"inline tabs", "ECHO\thi\r\n"},
	{"inline unknown command", "FOO bar baz\r\n"},
	{"empty line then PING", "\r\nPING\r\n"},
	{"blank line then PING", "   \r\nPING\r\n"},
	{"pipelined multibulk", "*1\r\n$4\r\nPING\r\n*2\r\n$4\r\nECHO\r\n$2\r\nhi\r\n*2\r\n$3\r\nGET\r\n$13\r\nwire:missing1\r\n"},
	{"complete command then a partial one", "*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET\r\n"},
	{"complete command then a partial bulk", "*2\r\n$4\r\nECHO\r\n$2\r\nhi\r\n*2\r\n$4\r\nECHO\r\n$10\r\nabc"},
	{"pipelined inline and multibulk", "PING\r\n*2\r\n$4\r\nECHO\r\n$1\r\nx\r\nECHO y\r\n"},
	{"two QUITs pipelined", "*1\r\n$4\r\nQUIT\r\n*1\r\n$4\r\nQUIT\r\n"},
	{"QUIT then PING", "*1\r\n$4\r\nQUIT\r\n*1\r\n$4\r\nPING\r\n"},
	{"inline QUIT", "QUIT\r\n"},
	{"binary-safe argument", "*2\r\n$4\r\nECHO\r\n$5\r\na\x00\r\nb\r\n"},
	{"empty argument", "*2\r\n$4\r\nECHO\r\n$0\r\n\r\n"},
	{"empty command name", "*1\r\n$0\r\n\r\n"},
	{"inline request over 64 KiB without newline", strings.Repeat("a", 70000)},
}

// With requirepass, unauthenticated clients get tighter protocol limits.
var diffAuthWireCases = []diffWireCase{
	{"unauthenticated multibulk of 11", "*11\r\n"},
	{"unauthenticated multibulk of 10, no args follow", "*10\r\n"},
	{"unauthenticated bulk of 16385", "*1\r\n$16385\r\n"},
	{"unauthenticated bulk of 16384, no data follows", "*1\r\n$16384\r\n"},
	{"inline PING before AUTH", "PING\r\n"},
	{"inline AUTH then PING", "AUTH " + diffPassword + "\r\nPING\r\n"},
	{"AUTH then multibulk of 11", "*2\r\n$4\r\nAUTH\r\n$11\r\n" + diffPassword + "\r\n*11\r\n"},
	{"wrong AUTH then multibulk of 11", "*2\r\n$4\r\nAUTH\r\n$5\r\nwrong\r\n*11\r\n"},
	{"QUIT before AUTH", "*1\r\n$4\r\nQUIT\r\n"},
	{"pipelined before AUTH", "*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*2\r\n$4\r\nAUTH\r\n$11\r\n" + diffPassword + "\r\n*1\r\n$4\r\nPING\r\n"},
}

// diffWire writes in and collects everything the server sends until it closes
// the connection or stays silent for quiet.
func diffWire(addr, in string, quiet time.Duration) (out []byte, closed bool, err error) {
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, false, err
	}
	defer nc.Close()
	nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := nc.Write([]byte(in)); err != nil {
		return nil, false, err
	}
	buf := make([]byte, 4096)
	for {
		nc.SetReadDeadline(time.Now().Add(quiet))
		n, err := nc.Read(buf)
		out = append(out, buf[:n]...)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return out, false, nil
			}
			// EOF or reset: the server closed the connection.
			return out, true, nil
		}
	}
}

func diffRunMalformed(t *testing.T, oracle, subject string, cases []diffWireCase) {
	const quiet = 400 * time.Millisecond
	type result struct {
		out    []byte
		closed bool
		err    error
	}
	// Every case on its own connections, all at once: most of the time is
	// spent waiting for silence.
	res := make([][2]result, len(cases))
	var wg sync.WaitGroup
	for i, tc := range cases {
		for side, addr := range []string{oracle, subject} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				out, closed, err := diffWire(addr, tc.in, quiet)
				res[i][side] = result{out, closed, err}
			}()
		}
	}
	wg.Wait()
	for i, tc := range cases {
		o, s := res[i][0], res[i][1]
		if o.err != nil || s.err != nil {
			t.Errorf("MISMATCH malformed %q: %q: I/O redis-server %v, redraft %v", tc.name, tc.in, o.err, s.err)
			continue
		}
		if os.Getenv("REDRAFT_DIFF_VERBOSE") != "" {
			t.Logf("malformed %q: %q\n    redis-server: %q closed=%v\n    redraft:      %q closed=%v", tc.name, tc.in, o.out, o.closed, s.out, s.closed)
		}
		if !bytes.Equal(o.out, s.out) || o.closed != s.closed {
			t.Errorf("MISMATCH malformed %q: sent %q\n    redis-server: %q (connection closed: %v)\n    redraft:      %q (connection closed: %v)",
				tc.name, tc.in, o.out, o.closed, s.out, s.closed)
		}
	}
}

// TestDifferentialHarness checks the harness's own parsing and comparisons
// (no servers needed), so that a lenient comparator cannot hide mismatches.
func TestDifferentialHarness(t *testing.T) {
	parse := func(s string) *diffReply {
		t.Helper()
		var raw bytes.Buffer
		r, err := diffReadReply(bufio.NewReader(strings.NewReader(s)), &raw)
		if err != nil {
			t.Fatalf("parse %q: %v", s, err)
		}
		if string(r.raw) != s {
			t.Fatalf("raw %q, want %q", r.raw, s)
		}
		return r
	}
	a := parse("*3\r\n$1\r\na\r\n$2\r\nbb\r\n$-1\r\n")
	if len(a.elems) != 3 || string(a.elems[1].raw) != "$2\r\nbb\r\n" || string(a.elems[1].bulk) != "bb" || !a.elems[2].null {
		t.Fatalf("nested elements not kept: %+v", a.elems)
	}
	same := parse("*3\r\n$-1\r\n$2\r\nbb\r\n$1\r\na\r\n")
	other := parse("*3\r\n$1\r\na\r\n$2\r\nbc\r\n$-1\r\n")
	shorter := parse("*2\r\n$1\r\na\r\n$2\r\nbb\r\n")
	if !diffSameSet(a, same) || diffSameSet(a, other) || diffSameSet(a, shorter) {
		t.Fatal("diffSameSet is wrong")
	}
	for _, c := range []struct {
		o, s string
		tol  int64
		want bool
	}{
		{":100\r\n", ":99\r\n", 1, true},
		{":100\r\n", ":98\r\n", 1, false},
		{":-1\r\n", ":-2\r\n", 5, false},
		{":-1\r\n", ":0\r\n", 5, false},
		{":5\r\n", "$1\r\n5\r\n", 5, false},
	} {
		if got := diffWithin(parse(c.o), parse(c.s), c.tol); got != c.want {
			t.Errorf("diffWithin(%q, %q, %d) = %v", c.o, c.s, c.tol, got)
		}
	}
	if parse("*2\r\n$1\r\nx\r\n:1\r\n").shape() == parse("*2\r\n$1\r\nx\r\n$1\r\n1\r\n").shape() {
		t.Error("shape ignores element kinds")
	}
	args, err := diffSplitArgs(`SET "a b\r\n\x41" 'c d' "" x`)
	if err != nil || diffQuoteArgs(args) != `SET "a b\r\nA" "c d" "" x` {
		t.Errorf("diffSplitArgs: %q %v", args, err)
	}
	if _, err := diffSplitArgs(`SET "unterminated`); err == nil {
		t.Error("unbalanced quote accepted")
	}
}
