package chaos

import (
	"bytes"
	"io"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
)

// Every process the package starts is tracked so that KillAll (for a signal
// handler) can end them; the kernel's parent-death signal covers a crash.
var (
	spawnOnce sync.Once
	spawnCh   chan spawnReq
	liveMu    sync.Mutex
	live      = map[int]bool{}
)

type spawnReq struct {
	cmd *exec.Cmd
	err chan error
}

// startProcess starts cmd from one OS thread that never exits: Pdeathsig
// fires when the *thread* that forked the child dies, and Go may retire idle
// threads, which would kill healthy nodes at random.
func startProcess(cmd *exec.Cmd) error {
	spawnOnce.Do(func() {
		spawnCh = make(chan spawnReq)
		go func() {
			runtime.LockOSThread()
			for r := range spawnCh {
				r.err <- r.cmd.Start()
			}
		}()
	})
	r := spawnReq{cmd: cmd, err: make(chan error, 1)}
	spawnCh <- r
	if err := <-r.err; err != nil {
		return err
	}
	liveMu.Lock()
	live[cmd.Process.Pid] = true
	liveMu.Unlock()
	return nil
}

func untrack(pid int) {
	liveMu.Lock()
	delete(live, pid)
	liveMu.Unlock()
}

// KillAll SIGKILLs the process group of every node this package started and
// that is still running, for signal handlers of programs using the harness.
func KillAll() {
	liveMu.Lock()
	defer liveMu.Unlock()
	for pid := range live {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		_ = syscall.Kill(-pid, syscall.SIGCONT)
	}
}

// lineWriter prefixes each line and keeps the last lines for error messages.
// exec gives one goroutine to a Cmd whose Stdout and Stderr are the same
// writer, so Write is not called concurrently for one node.
type lineWriter struct {
	w      io.Writer
	prefix string
	buf    []byte
	tailMu sync.Mutex
	tail   []string
}

func newLineWriter(w io.Writer, prefix string) *lineWriter {
	return &lineWriter{w: w, prefix: prefix}
}

func (l *lineWriter) Write(p []byte) (int, error) {
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			break
		}
		l.emit(string(l.buf[:i]))
		l.buf = l.buf[i+1:]
	}
	return len(p), nil
}

// Flush writes a trailing partial line (a process killed mid-line).
func (l *lineWriter) Flush() {
	if len(l.buf) > 0 {
		l.emit(string(l.buf))
		l.buf = nil
	}
}

func (l *lineWriter) emit(line string) {
	_, _ = io.WriteString(l.w, l.prefix+line+"\n")
	l.tailMu.Lock()
	l.tail = append(l.tail, line)
	if len(l.tail) > 30 {
		l.tail = l.tail[len(l.tail)-30:]
	}
	l.tailMu.Unlock()
}

// Tail returns the last lines the node printed.
func (l *lineWriter) Tail() string {
	l.tailMu.Lock()
	defer l.tailMu.Unlock()
	return strings.Join(l.tail, "\n")
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
