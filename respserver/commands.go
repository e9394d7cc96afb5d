package respserver

import (
	"github.com/redraft/redraft/fsm"
)

type flags uint8

const (
	noAuth   flags = 1 << iota // allowed before AUTH
	pubsubOK                   // allowed in subscribe mode
)

type kind uint8

const (
	kindLocal kind = iota
	kindRead
	kindWrite
)

// command is a row of the server's one command table: either a data
// command (semantics in fsm) or a connection-level one (handled here).
type command struct {
	name  string
	arity int
	flags flags
	data  *fsm.Command
	local func(c *conn, args [][]byte)
	sub   map[string]*command // subcommands, for COMMAND INFO and arity texts
}

func (cmd *command) kind() kind {
	switch {
	case cmd.data == nil:
		return kindLocal
	case cmd.data.Flags&fsm.Write != 0:
		return kindWrite
	default:
		return kindRead
	}
}

func (cmd *command) arityOK(argc int) bool {
	if cmd.arity >= 0 {
		return argc == cmd.arity
	}
	return argc >= -cmd.arity
}

// connection-level commands.
var localCommands = []*command{
	{name: "ping", arity: -1, flags: pubsubOK, local: cmdPingPubSub},
	{name: "echo", arity: 2, local: cmdEcho},
	{name: "quit", arity: -1, flags: noAuth | pubsubOK, local: cmdQuit},
	{name: "hello", arity: -1, flags: noAuth, local: cmdHello},
	{name: "auth", arity: -2, flags: noAuth, local: cmdAuth},
	{name: "select", arity: 2, local: cmdSelect},
	{name: "client", arity: -2, local: cmdClient},
	{name: "info", arity: -1, local: cmdInfo},
	{name: "command", arity: -1, local: cmdCommand},
	{name: "config", arity: -2, local: cmdConfig},
	{name: "role", arity: 1, local: cmdRole},
	{name: "time", arity: 1, local: cmdTime},
	// pub/sub (pubsub.go); PUBLISH is a data command, through the log
	{name: "subscribe", arity: -2, flags: pubsubOK, local: cmdSubscribe},
	{name: "unsubscribe", arity: -1, flags: pubsubOK, local: cmdUnsubscribe},
	{name: "psubscribe", arity: -2, flags: pubsubOK, local: cmdPSubscribe},
	{name: "punsubscribe", arity: -1, flags: pubsubOK, local: cmdPUnsubscribe},
	{name: "pubsub", arity: -2, local: cmdPubSub},
	{name: "reset", arity: 1, flags: noAuth | pubsubOK, local: cmdReset},
}

// table is the one lookup every command goes through. It is filled in
// init because some handlers (COMMAND) read it.
var table = map[string]*command{}

func init() {
	for _, c := range localCommands {
		table[c.name] = c
	}
	for _, d := range fsm.Commands() {
		if d.Flags&fsm.Internal != 0 {
			continue
		}
		table[d.Name] = &command{name: d.Name, arity: d.Arity, data: d}
	}
}

// lookup finds a command by name in any case, without allocating for the
// usual short names.
func lookup(name []byte) *command {
	var buf [32]byte
	if len(name) > len(buf) {
		return nil
	}
	for i, ch := range name {
		if ch >= 'A' && ch <= 'Z' {
			ch += 'a' - 'A'
		}
		buf[i] = ch
	}
	return table[string(buf[:len(name)])]
}
