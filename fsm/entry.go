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

const entryVersion = 1

var errBadEntry = errors.New("fsm: malformed log entry")

// Encode returns the entry's log representation:
// version(1) now(8) db(1) argc(uvarint) { len(uvarint) bytes }*.
func (e *Entry) Encode() []byte {
	n := 1 + 8 + 1 + binary.MaxVarintLen64
	for _, a := range e.Args {
		n += binary.MaxVarintLen64 + len(a)
	}
	b := make([]byte, 0, n)
	b = append(b, entryVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(e.Now))
	b = append(b, byte(e.DB))
	b = binary.AppendUvarint(b, uint64(len(e.Args)))
	for _, a := range e.Args {
		b = binary.AppendUvarint(b, uint64(len(a)))
		b = append(b, a...)
	}
	return b
}

// DecodeEntry parses an encoded entry. Args alias b.
func DecodeEntry(b []byte) (Entry, error) {
	var e Entry
	if len(b) < 10 || b[0] != entryVersion {
		return e, errBadEntry
	}
	e.Now = int64(binary.BigEndian.Uint64(b[1:9]))
	e.DB = int(b[9])
	b = b[10:]
	argc, n := binary.Uvarint(b)
	if n <= 0 || argc > uint64(len(b)) {
		return e, errBadEntry
	}
	b = b[n:]
	e.Args = make([][]byte, argc)
	for i := range e.Args {
		l, n := binary.Uvarint(b)
		if n <= 0 || l > uint64(len(b)-n) {
			return e, errBadEntry
		}
		e.Args[i] = b[n : n+int(l) : n+int(l)]
		b = b[n+int(l):]
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

const runVersion = 2

// Encode returns the run's log representation:
// version(1) now(8) db(1) cmds(uvarint) { argc(uvarint) { len(uvarint) bytes }* }*.
func (r *Run) Encode() []byte {
	n := 1 + 8 + 1 + binary.MaxVarintLen64
	for _, args := range r.Cmds {
		n += binary.MaxVarintLen64
		for _, a := range args {
			n += binary.MaxVarintLen64 + len(a)
		}
	}
	b := make([]byte, 0, n)
	b = append(b, runVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(r.Now))
	b = append(b, byte(r.DB))
	b = binary.AppendUvarint(b, uint64(len(r.Cmds)))
	for _, args := range r.Cmds {
		b = binary.AppendUvarint(b, uint64(len(args)))
		for _, a := range args {
			b = binary.AppendUvarint(b, uint64(len(a)))
			b = append(b, a...)
		}
	}
	return b
}

// decodeLog parses a log entry of either kind. Args alias b.
func decodeLog(b []byte) (Run, error) {
	if len(b) > 0 && b[0] == entryVersion {
		e, err := DecodeEntry(b)
		return Run{Now: e.Now, DB: e.DB, Cmds: [][][]byte{e.Args}}, err
	}
	var r Run
	if len(b) < 10 || b[0] != runVersion {
		return r, errBadEntry
	}
	r.Now = int64(binary.BigEndian.Uint64(b[1:9]))
	r.DB = int(b[9])
	b = b[10:]
	count, n := binary.Uvarint(b)
	if n <= 0 || count > uint64(len(b)) {
		return r, errBadEntry
	}
	b = b[n:]
	r.Cmds = make([][][]byte, count)
	for i := range r.Cmds {
		argc, n := binary.Uvarint(b)
		if n <= 0 || argc > uint64(len(b)) {
			return r, errBadEntry
		}
		b = b[n:]
		args := make([][]byte, argc)
		for j := range args {
			l, n := binary.Uvarint(b)
			if n <= 0 || l > uint64(len(b)-n) {
				return r, errBadEntry
			}
			args[j] = b[n : n+int(l) : n+int(l)]
			b = b[n+int(l):]
		}
		r.Cmds[i] = args
	}
	return r, nil
}
