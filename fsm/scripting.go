package fsm

import (
	"bytes"
	"strconv"
	"strings"

	"github.com/redraft/redraft/lua"
)

// Scripts run inside Apply on every node against the same state, so their
// effects are identical everywhere. The script cache (sha -> body) is part
// of the replicated state: it changes only through the log (EVAL, SCRIPT
// LOAD, SCRIPT FLUSH) and travels in snapshots, so EVALSHA works on every
// node after a SCRIPT LOAD on any node.

// ScriptLimits bounds every script. The limits are counted, not timed, so a
// runaway script fails at the same instruction on every node; they must be
// the same on every node (--lua-max-steps, --lua-max-memory).
var ScriptLimits lua.Limits

const errNoScript = "NOSCRIPT No matching script. Please use EVAL."

func cmdEval(c *Ctx, args [][]byte)   { c.eval(args[1], args[2:], false, true) }
func cmdEvalRO(c *Ctx, args [][]byte) { c.eval(args[1], args[2:], true, false) }

func cmdEvalSha(c *Ctx, args [][]byte)   { c.evalSha(args, false) }
func cmdEvalShaRO(c *Ctx, args [][]byte) { c.evalSha(args, true) }

func (c *Ctx) evalSha(args [][]byte, readOnly bool) {
	body := c.scriptBody(args[1])
	if n, ok := parseInt(args[2]); body == nil && ok && n >= 0 && n <= int64(len(args)-3) { // numkeys errors first, as Redis
		c.out = AppendError(c.out, errNoScript)
		return
	}
	c.eval(body, args[2:], readOnly, false)
}

// scriptBody looks a script up by sha, in any case.
func (c *Ctx) scriptBody(sha []byte) []byte {
	if len(sha) != 40 {
		return nil
	}
	return c.v.get(bucketIDScripts, bytes.ToLower(sha))
}

// eval runs body with rest = numkeys key... arg..., checking numkeys as
// Redis does. cache stores the body so EVALSHA finds it later (EVAL does
// that in Redis too).
func (c *Ctx) eval(body []byte, rest [][]byte, readOnly, cache bool) {
	n, ok := parseInt(rest[0])
	switch {
	case !ok:
		c.out = AppendError(c.out, ErrNotInteger)
		return
	case n > int64(len(rest)-1):
		c.out = AppendError(c.out, "ERR Number of keys can't be greater than number of args")
		return
	case n < 0:
		c.out = AppendError(c.out, "ERR Number of keys can't be negative")
		return
	}
	if cache && c.writable && lua.Check(body) == "" { // Redis caches only scripts that compile
		c.storeScript(body)
	}
	keys, argv := rest[1:1+n], rest[1+n:]
	db := c.DB // SELECT inside a script changes it for the rest of the script
	call := func(cargs [][]byte) []byte {
		if reply, ok := connectionCommand(cargs, &db, c.Now); ok {
			return reply
		}
		cmd := Lookup(cargs[0])
		switch {
		case cmd == nil || cmd.Flags&Internal != 0:
			return AppendError(nil, "ERR redraft does not support '"+strings.ToLower(string(cargs[0]))+"' (yet), called from script")
		case cmd.Flags&NoScript != 0:
			return AppendError(nil, "ERR This Redis command is not allowed from script")
		case cmd.Flags&Write != 0 && (readOnly || !c.writable):
			return AppendError(nil, "ERR Write commands are not allowed from read-only scripts.")
		}
		child := Ctx{v: c.v, meta: c.meta, DB: db, Now: c.Now, writable: c.writable && !readOnly}
		reply := child.run(cargs)
		c.effects = append(c.effects, child.effects...)
		return reply
	}
	c.out = append(c.out, lua.Eval(body, keys, argv, call, ScriptLimits)...)
}

func (c *Ctx) storeScript(body []byte) string {
	sha := lua.SHA1Hex(body)
	if c.v.get(bucketIDScripts, []byte(sha)) == nil {
		c.v.put(bucketIDScripts, []byte(sha), append([]byte(nil), body...))
	}
	return sha
}

// cmdScript is SCRIPT LOAD / EXISTS / FLUSH / KILL. All of it goes through
// the log: LOAD and FLUSH change the replicated cache, and EXISTS is cheap.
func cmdScript(c *Ctx, args [][]byte) {
	sub := strings.ToLower(string(args[1]))
	arity := func(ok bool) bool {
		if !ok {
			c.out = AppendError(c.out, ErrArity("script|"+sub))
		}
		return ok
	}
	switch sub {
	case "load":
		if !arity(len(args) == 3) {
			return
		}
		if msg := lua.Check(args[2]); msg != "" {
			c.out = AppendError(c.out, "ERR Error compiling script (new function): "+msg)
			return
		}
		c.out = AppendBulkString(c.out, c.storeScript(args[2]))
	case "exists":
		if !arity(len(args) >= 3) {
			return
		}
		c.out = AppendArray(c.out, len(args)-2)
		for _, sha := range args[2:] {
			if c.scriptBody(sha) != nil {
				c.out = AppendInt(c.out, 1)
			} else {
				c.out = AppendInt(c.out, 0)
			}
		}
	case "flush":
		if len(args) > 3 || (len(args) == 3 && !eqFold(args[2], "async") && !eqFold(args[2], "sync")) {
			c.out = AppendError(c.out, "ERR SCRIPT FLUSH only support SYNC|ASYNC option")
			return
		}
		for _, sha := range c.v.keys(bucketIDScripts) {
			c.v.delete(bucketIDScripts, sha)
		}
		c.out = AppendStatus(c.out, "OK")
	case "kill":
		if arity(len(args) == 2) {
			c.out = AppendError(c.out, "NOTBUSY No scripts in execution right now.")
		}
	default:
		c.out = AppendError(c.out, "ERR unknown subcommand '"+string(args[1])+"'. Try SCRIPT HELP.")
	}
}

// connectionCommand answers, for scripts, the connection-level commands
// Redis lets them call (the server handles these for clients, so they are
// not in the data table). TIME is the entry's time: a script must see the
// same clock on every node.
func connectionCommand(args [][]byte, db *int, now int64) ([]byte, bool) {
	switch strings.ToLower(string(args[0])) {
	case "ping":
		if len(args) == 2 {
			return AppendBulk(nil, args[1]), true
		}
		return AppendStatus(nil, "PONG"), true
	case "echo":
		return AppendBulk(nil, args[1]), true
	case "time":
		b := AppendArray(nil, 2)
		b = AppendBulkString(b, strconv.FormatInt(now/1000, 10))
		return AppendBulkString(b, strconv.FormatInt(now%1000*1000, 10)), true
	case "select":
		n, ok := parseInt(args[1])
		switch {
		case !ok:
			return AppendError(nil, ErrNotInteger), true
		case n < 0 || n >= Databases:
			return AppendError(nil, ErrDBIndex), true
		}
		*db = int(n)
		return AppendStatus(nil, "OK"), true
	}
	return nil, false
}
