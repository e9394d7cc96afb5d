package respserver

import (
	"crypto/subtle"
	"strconv"
	"strings"
	"time"

	"github.com/redraft/redraft/fsm"
)

func cmdPing(c *conn, args [][]byte) {
	switch len(args) {
	case 1:
		c.writeStatus("PONG")
	case 2:
		c.writeBulk(args[1])
	default:
		c.writeError(fsm.ErrArity("ping"))
	}
}

func cmdEcho(c *conn, args [][]byte) { c.writeBulk(args[1]) }

func cmdQuit(c *conn, _ [][]byte) {
	c.writeStatus("OK")
	c.closing = true
}

func cmdSelect(c *conn, args [][]byte) {
	n, ok := fsm.ParseInt(args[1])
	if !ok {
		c.writeError(fsm.ErrNotInteger)
		return
	}
	if n != int64(int32(n)) {
		c.writeError("ERR value is out of range, must be between -2147483648 and 2147483647")
		return
	}
	if n < 0 || n >= fsm.Databases {
		c.writeError(fsm.ErrDBIndex)
		return
	}
	c.db = int(n)
	c.writeStatus("OK")
}

// cmdAuth accepts AUTH password and AUTH default password.
func cmdAuth(c *conn, args [][]byte) {
	if len(args) > 3 {
		c.writeError(fsm.ErrSyntax)
		return
	}
	user, pass := "default", string(args[1])
	if len(args) == 3 {
		user, pass = string(args[1]), string(args[2])
	}
	if c.s.cfg.RequirePass == "" && len(args) == 2 {
		c.writeError("ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?")
		return
	}
	if !c.s.checkPassword(user, pass) {
		c.writeError("WRONGPASS invalid username-password pair or user is disabled.")
		return
	}
	c.authed = true
	c.writeStatus("OK")
}

func (s *Server) checkPassword(user, pass string) bool {
	if user != "default" {
		return false
	}
	if s.cfg.RequirePass == "" {
		return true // Redis's default user has nopass
	}
	return subtle.ConstantTimeCompare([]byte(pass), []byte(s.cfg.RequirePass)) == 1
}

// cmdHello speaks RESP2 only: HELLO 3 gets -NOPROTO, and ioredis 6 falls
// back to RESP2 on it.
func cmdHello(c *conn, args [][]byte) {
	i := 1
	if len(args) > 1 {
		v, err := strconv.ParseInt(string(args[1]), 10, 64)
		if err != nil {
			c.writeError("ERR Protocol version is not an integer or out of range")
			return
		}
		if v != 2 {
			c.writeError("NOPROTO unsupported protocol version")
			return
		}
		i = 2
	}
	authed := c.authed
	for ; i < len(args); i++ {
		switch {
		case strings.EqualFold(string(args[i]), "auth") && i+2 < len(args):
			if !c.s.checkPassword(string(args[i+1]), string(args[i+2])) {
				c.writeError("WRONGPASS invalid username-password pair or user is disabled.")
				return
			}
			authed = true
			i += 2
		case strings.EqualFold(string(args[i]), "setname") && i+1 < len(args):
			if !validClientName(args[i+1]) {
				c.writeError("ERR Client names cannot contain spaces, newlines or special characters.")
				return
			}
			c.name = string(args[i+1])
			i++
		default:
			c.writeError("ERR Syntax error in HELLO option '" + string(args[i]) + "'")
			return
		}
	}
	if !authed {
		c.writeError("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time")
		return
	}
	c.authed = true
	b := fsm.AppendArray(nil, 14)
	b = fsm.AppendBulkString(b, "server")
	b = fsm.AppendBulkString(b, "redis")
	b = fsm.AppendBulkString(b, "version")
	b = fsm.AppendBulkString(b, redisVersion)
	b = fsm.AppendBulkString(b, "proto")
	b = fsm.AppendInt(b, 2)
	b = fsm.AppendBulkString(b, "id")
	b = fsm.AppendInt(b, c.id)
	b = fsm.AppendBulkString(b, "mode")
	b = fsm.AppendBulkString(b, "standalone")
	b = fsm.AppendBulkString(b, "role")
	b = fsm.AppendBulkString(b, c.s.role())
	b = fsm.AppendBulkString(b, "modules")
	b = fsm.AppendArray(b, 0)
	c.write(b)
}

func validClientName(b []byte) bool {
	for _, ch := range b {
		if ch < '!' || ch > '~' {
			return false
		}
	}
	return true
}

func cmdClient(c *conn, args [][]byte) {
	sub := strings.ToLower(string(args[1]))
	argc := len(args)
	arity := func(ok bool) bool {
		if !ok {
			c.writeError(fsm.ErrArity("client|" + sub))
		}
		return ok
	}
	switch sub {
	case "setname":
		if !arity(argc == 3) {
			return
		}
		if !validClientName(args[2]) {
			c.writeError("ERR Client names cannot contain spaces, newlines or special characters.")
			return
		}
		c.name = string(args[2])
		c.writeStatus("OK")
	case "getname":
		if !arity(argc == 2) {
			return
		}
		if c.name == "" {
			c.write(fsm.AppendNull(nil))
		} else {
			c.writeBulkString(c.name)
		}
	case "id":
		if arity(argc == 2) {
			c.writeInt(c.id)
		}
	case "setinfo":
		if !arity(argc == 4) {
			return
		}
		switch strings.ToLower(string(args[2])) {
		case "lib-name":
			if !validClientName(args[3]) {
				c.writeError("ERR lib-name cannot contain spaces, newlines or special characters.")
				return
			}
			c.libName = string(args[3])
		case "lib-ver":
			if !validClientName(args[3]) {
				c.writeError("ERR lib-ver cannot contain spaces, newlines or special characters.")
				return
			}
			c.libVer = string(args[3])
		default:
			c.writeError("ERR Unrecognized option '" + string(args[2]) + "'")
			return
		}
		c.writeStatus("OK")
	case "info":
		if arity(argc == 2) {
			c.writeBulkString(c.describe() + "\n")
		}
	case "list":
		var b strings.Builder
		for _, o := range c.s.clients() {
			b.WriteString(o.describe())
			b.WriteByte('\n')
		}
		c.writeBulkString(b.String())
	case "no-evict", "no-touch":
		if arity(argc == 3) {
			c.writeStatus("OK")
		}
	default:
		c.writeError("ERR unknown subcommand '" + string(args[1]) + "'. Try CLIENT HELP.")
	}
}

// describe is one CLIENT LIST line.
func (c *conn) describe() string {
	now := time.Now()
	cmd, _ := c.lastCmd.Load().(string)
	flags := "N"
	if c.nsub.Load()+c.npsub.Load() > 0 {
		flags = "P"
	}
	return "id=" + strconv.FormatInt(c.id, 10) +
		" addr=" + c.addr +
		" laddr=" + c.nc.LocalAddr().String() +
		" fd=0 name=" + c.name +
		" age=" + strconv.Itoa(int(now.Sub(c.created).Seconds())) +
		" idle=0 flags=" + flags + " db=" + strconv.Itoa(c.db) +
		" sub=" + strconv.FormatInt(c.nsub.Load(), 10) + " psub=" + strconv.FormatInt(c.npsub.Load(), 10) + " ssub=0 multi=-1 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 obl=0 oll=0 omem=0 tot-mem=0 events=r" +
		" cmd=" + cmd + " user=default redir=-1 resp=2" +
		" lib-name=" + c.libName + " lib-ver=" + c.libVer
}

func cmdTime(c *conn, _ [][]byte) {
	now := time.Now()
	b := fsm.AppendArray(nil, 2)
	b = fsm.AppendBulkString(b, strconv.FormatInt(now.Unix(), 10))
	b = fsm.AppendBulkString(b, strconv.FormatInt(int64(now.Nanosecond()/1000), 10))
	c.write(b)
}

// cmdConfig answers CONFIG GET for the few parameters clients and tools
// (redis-benchmark, ioredis) look at; CONFIG SET is refused: configuration
// is per node and comes from flags.
func cmdConfig(c *conn, args [][]byte) {
	switch strings.ToLower(string(args[1])) {
	case "get":
		if len(args) < 3 {
			c.writeError(fsm.ErrArity("config|get"))
			return
		}
		params := map[string]string{
			"save": "", "appendonly": "yes", "appendfsync": "always", "databases": "16",
			"maxclients": strconv.Itoa(c.s.cfg.MaxClients), "proto-max-bulk-len": strconv.FormatInt(c.s.cfg.MaxBulkLen, 10),
			"maxmemory": "0", "maxmemory-policy": "noeviction", "notify-keyspace-events": "",
			"timeout": "0", "protected-mode": map[bool]string{true: "yes", false: "no"}[c.s.cfg.ProtectedMode],
		}
		var out []string
		for _, p := range args[2:] {
			pat := []byte(strings.ToLower(string(p)))
			for _, name := range sortedKeys(params) {
				if fsm.Match(pat, []byte(name), true) {
					out = append(out, name, params[name])
				}
			}
		}
		b := fsm.AppendArray(nil, len(out))
		for _, s := range out {
			b = fsm.AppendBulkString(b, s)
		}
		c.write(b)
	case "resetstat", "rewrite":
		c.writeStatus("OK")
	case "set":
		c.writeError("ERR CONFIG SET is not supported by redraft: set options with flags or REDRAFT_* variables on each node")
	default:
		c.writeError("ERR unknown subcommand '" + string(args[1]) + "'. Try CONFIG HELP.")
	}
}
