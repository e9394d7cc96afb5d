package fsm

import (
	"encoding/binary"
	"errors"
)

// Entry is one replicated command: what a client asked for, in which
// database, at which moment. Now is the leader's clock when it proposed the
// entry; the FSM never reads a clock of its own, so every node derives the
// same TTL deadlines from the same log.
type Entry struct {
	Now  int64 // unix milliseconds, stamped by the leader
	DB   int
	Args [][]byte // Args[0] is the command name
}

const (
	entryVersion = 1 // an Entry
	runVersion   = 2 // a Run
)

var errBadEntry = errors.New("fsm: malformed log entry")

// Log entries share a header, version(1) now(8) db(1), then hold commands
// as argc(uvarint) { len(uvarint) bytes }*: an Entry one command, a Run a
// count(uvarint) and that many.

func appendHeader(b []byte, version byte, now int64, db int) []byte {
	b = append(b, version)
	b = binary.BigEndian.AppendUint64(b, uint64(now))
	return append(b, byte(db))
}

func argsLen(args [][]byte) int {
	n := binary.MaxVarintLen64
	for _, a := range args {
		n += binary.MaxVarintLen64 + len(a)
	}
	return n
}

func appendArgs(b []byte, args [][]byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(args)))
	for _, a := range args {
		b = binary.AppendUvarint(b, uint64(len(a)))
		b = append(b, a...)
	}
	return b
}

// readHeader checks the version and returns the entry's time, database and
// the rest of b.
func readHeader(b []byte, version byte) (now int64, db int, rest []byte, err error) {
	if len(b) < 10 || b[0] != version {
		return 0, 0, nil, errBadEntry
	}
	return int64(binary.BigEndian.Uint64(b[1:9])), int(b[9]), b[10:], nil
}

// readCount reads a uvarint count of things that each take at least a byte.
func readCount(b []byte) (int, []byte, error) {
	c, n := binary.Uvarint(b)
	if n <= 0 || c > uint64(len(b)) {
		return 0, nil, errBadEntry
	}
	return int(c), b[n:], nil
}

// readArgs reads one command; its arguments alias b.
func readArgs(b []byte) ([][]byte, []byte, error) {
	argc, b, err := readCount(b)
	if err != nil {
		return nil, nil, err
	}
	args := make([][]byte, argc)
	for i := range args {
		l, n := binary.Uvarint(b)
		if n <= 0 || l > uint64(len(b)-n) {
			return nil, nil, errBadEntry
		}
		args[i] = b[n : n+int(l) : n+int(l)]
		b = b[n+int(l):]
	}
	return args, b, nil
}

// Encode returns the entry's log representation.
func (e *Entry) Encode() []byte {
	b := make([]byte, 0, 10+argsLen(e.Args))
	return appendArgs(appendHeader(b, entryVersion, e.Now, e.DB), e.Args)
}

// DecodeEntry parses an encoded entry. Args alias b.
func DecodeEntry(b []byte) (Entry, error) {
	var e Entry
	var err error
	if e.Now, e.DB, b, err = readHeader(b, entryVersion); err != nil {
		return Entry{}, err
	}
	if e.Args, _, err = readArgs(b); err != nil {
		return Entry{}, err
	}
	return e, nil
}

// Run is several commands from one client's pipeline (or several clients'
// forwarded writes) in one database, replicated as one log entry. It
// applies exactly as that many consecutive entries with the same time
// would, and costs raft one entry instead of many: the log, replication and
// the FSM pay per entry, and a pipeline of 16 SETs is one.
type Run struct {
	Now  int64
	DB   int
	Cmds [][][]byte
}

// Encode returns the run's log representation.
func (r *Run) Encode() []byte {
	n := 10 + binary.MaxVarintLen64
	for _, args := range r.Cmds {
		n += argsLen(args)
	}
	b := appendHeader(make([]byte, 0, n), runVersion, r.Now, r.DB)
	b = binary.AppendUvarint(b, uint64(len(r.Cmds)))
	for _, args := range r.Cmds {
		b = appendArgs(b, args)
	}
	return b
}

// decodeLog parses a log entry of either kind. Args alias b.
func decodeLog(b []byte) (Run, error) {
	if len(b) > 0 && b[0] == entryVersion {
		e, err := DecodeEntry(b)
		return Run{Now: e.Now, DB: e.DB, Cmds: [][][]byte{e.Args}}, err
	}
	now, db, b, err := readHeader(b, runVersion)
	if err != nil {
		return Run{}, err
	}
	count, b, err := readCount(b)
	if err != nil {
		return Run{}, err
	}
	r := Run{Now: now, DB: db, Cmds: make([][][]byte, count)}
	for i := range r.Cmds {
		if r.Cmds[i], b, err = readArgs(b); err != nil {
			return Run{}, err
		}
	}
	return r, nil
}
