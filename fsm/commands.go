package fsm

import (
	"fmt"
	"sort"
	"strings"
)

// Flags say how a command touches state; the server routes on them.
type Flags uint16

const (
	// Write commands change state: they go through the Raft log.
	Write Flags = 1 << iota
	// Read commands only read state: they run locally behind a read barrier.
	Read
	// NoScript commands may not be called from Lua.
	NoScript
	// Internal commands are proposed by redraft itself, never by clients.
	Internal
)

// Command is one data command: its Redis metadata and its semantics.
type Command struct {
	Name     string // lower case, as Redis reports it
	Arity    int    // Redis convention: n exact, -n at least n (name included)
	Flags    Flags
	FirstKey int // key positions for COMMAND INFO: first, last (-1 = to the end), step
	LastKey  int
	Step     int
	Run      func(c *Ctx, args [][]byte)
}

// table is the one list of data commands. Connection-level commands (AUTH,
// SELECT, CLIENT...) live with the server, which merges both into its own
// lookup.
var table = []*Command{
	// strings
	{Name: "get", Arity: 2, Flags: Read, FirstKey: 1, LastKey: 1, Step: 1, Run: cmdGet},
	{Name: "set", Arity: -3, Flags: Write, FirstKey: 1, LastKey: 1, Step: 1, Run: cmdSet},
	{Name: "setnx", Arity: 3, Flags: Write, FirstKey: 1, LastKey: 1, Step: 1, Run: cmdSetNX},
	{Name: "setex", Arity: 4, Flags: Write, FirstKey: 1, LastKey: 1, Step: 1, Run: cmdSetEX},
	{Name: "psetex", Arity: 4, Flags: Write, FirstKey: 1, LastKey: 1, Step: 1, Run: cmdPSetEX},
	{Name: "getset", Arity: 3, Flags: Write, FirstKey: 1, LastKey: 1, Step: 1, Run: cmdGetSet},
	{Name: "getdel", Arity: 2, Flags: Write, FirstKey: 1, LastKey: 1, Step: 1, Run: cmdGetDel},
	{Name: "getex", Arity: -2, Flags: Write, FirstKey: 1, LastKey: 1, Step: 1, Run: cmdGetEx},
	{Name: "mget", Arity: -2, Flags: Read, FirstKey: 1, LastKey: -1, Step: 1, Run: cmdMGet},
	{Name: "mset", Arity: -3, Flags: Write, FirstKey: 1, LastKey: -1, Step: 2, Run: cmdMSet},
	{Name: "msetnx", Arity: -3, Flags: Write, FirstKey: 1, LastKey: -1, Step: 2, Run: cmdMSetNX},
	{Name: "incr", Arity: 2, Flags: Write, FirstKey: 1, LastKey: 1, Step: 1, Run: cmdIncr},
	{Name: "decr", Arity: 2, Flags: Write, FirstKey: 1, LastKey: 1, Step: 1, Run: cmdDecr},
	{Name: "incrby", Arity: 3, Flags: Write, FirstKey: 1, LastKey: 1, Step: 1, Run: cmdIncrBy},
	{Name: "decrby", Arity: 3, Flags: Write, FirstKey: 1, LastKey: 1, Step: 1, Run: cmdDecrBy},
	{Name: "incrbyfloat", Arity: 3, Flags: Write, FirstKey: 1, LastKey: 1, Step: 1, Run: cmdIncrByFloat},
	{Name: "append", Arity: 3, Flags: Write, FirstKey: 1, LastKey: 1, Step: 1, Run: cmdAppend},
	{Name: "strlen", Arity: 2, Flags: Read, FirstKey: 1, LastKey: 1, Step: 1, Run: cmdStrlen},
	{Name: "getrange", Arity: 4, Flags: Read, FirstKey: 1, LastKey: 1, Step: 1, Run: cmdGetRange},
	{Name: "setrange", Arity: 4, Flags: Write, FirstKey: 1, LastKey: 1, Step: 1, Run: cmdSetRange},

	// keys
	{Name: "del", Arity: -2, Flags: Write, FirstKey: 1, LastKey: -1, Step: 1, Run: cmdDel},
	{Name: "unlink", Arity: -2, Flags: Write, FirstKey: 1, LastKey: -1, Step: 1, Run: cmdDel},
	{Name: "exists", Arity: -2, Flags: Read, FirstKey: 1, LastKey: -1, Step: 1, Run: cmdExists},
	{Name: "type", Arity: 2, Flags: Read, FirstKey: 1, LastKey: 1, Step: 1, Run: cmdType},
	{Name: "rename", Arity: 3, Flags: Write, FirstKey: 1, LastKey: 2, Step: 1, Run: cmdRename},
	{Name: "renamenx", Arity: 3, Flags: Write, FirstKey: 1, LastKey: 2, Step: 1, Run: cmdRenameNX},
	{Name: "keys", Arity: 2, Flags: Read, Run: cmdKeys},
	{Name: "scan", Arity: -2, Flags: Read, Run: cmdScan},
	{Name: "expire", Arity: -3, Flags: Write, FirstKey: 1, LastKey: 1, Step: 1, Run: cmdExpire},
	{Name: "pexpire", Arity: -3, Flags: Write, FirstKey: 1, LastKey: 1, Step: 1, Run: cmdPExpire},
	{Name: "expireat", Arity: -3, Flags: Write, FirstKey: 1, LastKey: 1, Step: 1, Run: cmdExpireAt},
	{Name: "pexpireat", Arity: -3, Flags: Write, FirstKey: 1, LastKey: 1, Step: 1, Run: cmdPExpireAt},
	{Name: "ttl", Arity: 2, Flags: Read, FirstKey: 1, LastKey: 1, Step: 1, Run: cmdTTL},
	{Name: "pttl", Arity: 2, Flags: Read, FirstKey: 1, LastKey: 1, Step: 1, Run: cmdPTTL},
	{Name: "expiretime", Arity: 2, Flags: Read, FirstKey: 1, LastKey: 1, Step: 1, Run: cmdExpireTime},
	{Name: "pexpiretime", Arity: 2, Flags: Read, FirstKey: 1, LastKey: 1, Step: 1, Run: cmdPExpireTime},
	{Name: "persist", Arity: 2, Flags: Write, FirstKey: 1, LastKey: 1, Step: 1, Run: cmdPersist},
	{Name: "dbsize", Arity: 1, Flags: Read, Run: cmdDBSize},
	{Name: "flushdb", Arity: -1, Flags: Write, Run: cmdFlushDB},
	{Name: "debug", Arity: -2, Flags: Read | NoScript, Run: cmdDebug},
	{Name: "flushall", Arity: -1, Flags: Write, Run: cmdFlushAll},

	// pub/sub: through the log so messages are ordered with writes (pubsub.go)
	{Name: "publish", Arity: 3, Flags: Write, Run: cmdPublish},

	// scripting
	{Name: "eval", Arity: -3, Flags: Write | NoScript, Run: cmdEval},
	{Name: "evalsha", Arity: -3, Flags: Write | NoScript, Run: cmdEvalSha},
	{Name: "eval_ro", Arity: -3, Flags: Read | NoScript, Run: cmdEvalRO},
	{Name: "evalsha_ro", Arity: -3, Flags: Read | NoScript, Run: cmdEvalShaRO},
	{Name: "script", Arity: -2, Flags: Write | NoScript, Run: cmdScript},

	// proposed by redraft itself: the sweeper's deletions, and a new
	// leader's first entry (see raftnode's watchLeadership)
	{Name: "redraft.noop", Arity: 1, Flags: Write | Internal | NoScript, Run: func(c *Ctx, _ [][]byte) { c.out = AppendStatus(c.out, "OK") }},
	{Name: "redraft.expire", Arity: -2, Flags: Write | Internal | NoScript, Run: cmdSweep},
}

// byName indexes table; filled in init because scripts (EVAL) look
// commands up from inside the table's own handlers.
var byName = map[string]*Command{}

func init() {
	for _, c := range table {
		byName[c.Name] = c
	}
}

// Lookup finds a data command by name, in any case.
func Lookup(name []byte) *Command {
	if c, ok := byName[string(name)]; ok {
		return c
	}
	return byName[strings.ToLower(string(name))]
}

// Commands lists the data commands in name order.
func Commands() []*Command {
	out := append([]*Command(nil), table...)
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// ArityOK reports whether argc (name included) satisfies the command's arity.
func (cmd *Command) ArityOK(argc int) bool {
	if cmd.Arity >= 0 {
		return argc == cmd.Arity
	}
	return argc >= -cmd.Arity
}

// run executes one command and returns its reply. The server has already
// checked name and arity; scripts reach here directly, so check again.
//
// A command must never crash the FSM: the entry is committed, so a panic
// would recur on every node and on every restart. What storage refuses
// (a key longer than bbolt allows) becomes an error reply instead.
func (c *Ctx) run(args [][]byte) (reply []byte) {
	c.out = nil
	cmd := Lookup(args[0])
	switch {
	case cmd == nil:
		return AppendError(nil, "ERR unknown command '"+string(args[0])+"'")
	case !cmd.ArityOK(len(args)):
		return AppendError(nil, ErrArity(cmd.Name))
	case cmd.Flags&Write != 0 && !c.writable:
		return AppendError(nil, "ERR write command '"+cmd.Name+"' on a read-only path")
	case cmd.Flags&Write != 0 && cmd.hasLongKey(args):
		return AppendError(nil, ErrKeyTooLong)
	}
	defer func() {
		if r := recover(); r != nil {
			reply = AppendError(nil, fmt.Sprintf("ERR '%s' failed in the state machine: %v", cmd.Name, r))
		}
	}()
	cmd.Run(c, args)
	return c.out
}

// ErrKeyTooLong refuses keys bbolt cannot store.
var ErrKeyTooLong = fmt.Sprintf("ERR key too long: redraft stores keys of up to %d bytes", MaxKeyLen)

// hasLongKey checks the key positions the command declares.
func (cmd *Command) hasLongKey(args [][]byte) bool {
	if cmd.FirstKey == 0 {
		return false
	}
	last := cmd.LastKey
	if last < 0 {
		last = len(args) + last
	}
	for i := cmd.FirstKey; i <= last && i < len(args); i += max(cmd.Step, 1) {
		if len(args[i]) > MaxKeyLen {
			return true
		}
	}
	return false
}
