package fsm

import (
	"bytes"
	"math"
	"strconv"
)

// MaxStringSize is Redis's proto-max-bulk-len default: no string value may
// grow beyond it (APPEND, SETRANGE).
const MaxStringSize = 512 << 20

func cmdGet(c *Ctx, args [][]byte) { c.replyString(args[1]) }

// replyString answers GET's way: the value, nil, or WRONGTYPE. It reports
// whether a string was there.
func (c *Ctx) replyString(key []byte) bool {
	v, found, wrong := c.lookupString(key)
	switch {
	case wrong:
		c.out = AppendError(c.out, ErrWrongType)
	case !found:
		c.out = AppendNull(c.out)
	default:
		c.out = AppendBulk(c.out, v)
		return true
	}
	return false
}

// setFlags are SET's and GETEX's options.
type setFlags struct {
	nx, xx, get, keepTTL, persist bool
	expireUnit                    byte // 0 none, 'E' EX, 'P' PX, 'e' EXAT, 'p' PXAT
	expire                        []byte
}

// parseSetOptions follows Redis's parseExtendedStringArgumentsOrReply, in
// its order, so conflicting options fail the same way.
func parseSetOptions(args [][]byte, forGetEx bool) (setFlags, bool) {
	var f setFlags
	for j := 0; j < len(args); j++ {
		opt := args[j]
		hasNext := j+1 < len(args)
		switch {
		case !forGetEx && eqFold(opt, "nx") && !f.xx:
			f.nx = true
		case !forGetEx && eqFold(opt, "xx") && !f.nx:
			f.xx = true
		case !forGetEx && eqFold(opt, "get"):
			f.get = true
		case !forGetEx && eqFold(opt, "keepttl") && !f.persist && f.expireUnit == 0:
			f.keepTTL = true
		case forGetEx && eqFold(opt, "persist") && f.expireUnit == 0 && !f.keepTTL:
			f.persist = true
		case eqFold(opt, "ex") && !f.keepTTL && !f.persist && (f.expireUnit == 0 || f.expireUnit == 'E') && hasNext:
			f.expireUnit, f.expire = 'E', args[j+1]
			j++
		case eqFold(opt, "px") && !f.keepTTL && !f.persist && (f.expireUnit == 0 || f.expireUnit == 'P') && hasNext:
			f.expireUnit, f.expire = 'P', args[j+1]
			j++
		case eqFold(opt, "exat") && !f.keepTTL && !f.persist && (f.expireUnit == 0 || f.expireUnit == 'e') && hasNext:
			f.expireUnit, f.expire = 'e', args[j+1]
			j++
		case eqFold(opt, "pxat") && !f.keepTTL && !f.persist && (f.expireUnit == 0 || f.expireUnit == 'p') && hasNext:
			f.expireUnit, f.expire = 'p', args[j+1]
			j++
		default:
			return f, false
		}
	}
	return f, true
}

// deadline converts the parsed expire option to an absolute unix-ms
// deadline, with Redis's checks and error text.
func (c *Ctx) deadline(f setFlags, cmd string) (int64, bool) {
	ms, ok := parseInt(f.expire)
	if !ok {
		c.out = AppendError(c.out, ErrNotInteger)
		return 0, false
	}
	seconds := f.expireUnit == 'E' || f.expireUnit == 'e'
	if ms <= 0 || (seconds && ms > math.MaxInt64/1000) {
		c.out = AppendError(c.out, "ERR invalid expire time in '"+cmd+"' command")
		return 0, false
	}
	if seconds {
		ms *= 1000
	}
	if f.expireUnit == 'E' || f.expireUnit == 'P' {
		if ms > math.MaxInt64-c.Now {
			c.out = AppendError(c.out, "ERR invalid expire time in '"+cmd+"' command")
			return 0, false
		}
		ms += c.Now
	}
	return ms, true
}

func cmdSet(c *Ctx, args [][]byte) {
	f, ok := parseSetOptions(args[3:], false)
	if !ok {
		c.out = AppendError(c.out, ErrSyntax)
		return
	}
	c.set(args[1], args[2], f, "set")
}

func (c *Ctx) set(key, val []byte, f setFlags, name string) {
	var deadline int64
	if f.expireUnit != 0 {
		var ok bool
		if deadline, ok = c.deadline(f, name); !ok {
			return
		}
	}
	old, found := c.lookup(key)
	if f.get {
		switch {
		case found && old.typ != TypeString:
			c.out = AppendError(c.out, ErrWrongType)
			return
		case found:
			c.out = AppendBulk(c.out, old.payload)
		default:
			c.out = AppendNull(c.out)
		}
	}
	if (f.nx && found) || (f.xx && !found) {
		if !f.get {
			c.out = AppendNull(c.out)
		}
		return
	}
	if f.keepTTL && found {
		deadline = old.deadline
	}
	c.put(key, TypeString, deadline, val)
	if !f.get {
		c.out = AppendStatus(c.out, "OK")
	}
}

func cmdSetNX(c *Ctx, args [][]byte) {
	if _, found := c.lookup(args[1]); found {
		c.out = AppendInt(c.out, 0)
		return
	}
	c.put(args[1], TypeString, 0, args[2])
	c.out = AppendInt(c.out, 1)
}

func cmdSetEX(c *Ctx, args [][]byte) {
	c.set(args[1], args[3], setFlags{expireUnit: 'E', expire: args[2]}, "setex")
}
func cmdPSetEX(c *Ctx, args [][]byte) {
	c.set(args[1], args[3], setFlags{expireUnit: 'P', expire: args[2]}, "psetex")
}

func cmdGetSet(c *Ctx, args [][]byte) { c.set(args[1], args[2], setFlags{get: true}, "getset") }

func cmdGetDel(c *Ctx, args [][]byte) {
	if c.replyString(args[1]) {
		c.del(args[1])
	}
}

func cmdGetEx(c *Ctx, args [][]byte) {
	f, ok := parseSetOptions(args[2:], true)
	if !ok {
		c.out = AppendError(c.out, ErrSyntax)
		return
	}
	var deadline int64
	if f.expireUnit != 0 {
		if deadline, ok = c.deadline(f, "getex"); !ok {
			return
		}
	}
	r, found := c.lookup(args[1])
	switch {
	case !found:
		c.out = AppendNull(c.out)
		return
	case r.typ != TypeString:
		c.out = AppendError(c.out, ErrWrongType)
		return
	}
	c.out = AppendBulk(c.out, r.payload)
	switch {
	case f.expireUnit != 0 && deadline <= c.Now:
		c.del(args[1])
	case f.expireUnit != 0:
		c.setDeadline(args[1], r, deadline)
	case f.persist && r.deadline != 0:
		c.setDeadline(args[1], r, 0)
	}
}

func cmdMGet(c *Ctx, args [][]byte) {
	c.out = AppendArray(c.out, len(args)-1)
	for _, k := range args[1:] {
		v, found, wrong := c.lookupString(k)
		if found && !wrong {
			c.out = AppendBulk(c.out, v)
		} else {
			c.out = AppendNull(c.out)
		}
	}
}

func cmdMSet(c *Ctx, args [][]byte) {
	if len(args)%2 == 0 {
		c.out = AppendError(c.out, ErrArity("mset"))
		return
	}
	for i := 1; i < len(args); i += 2 {
		c.put(args[i], TypeString, 0, args[i+1])
	}
	c.out = AppendStatus(c.out, "OK")
}

func cmdMSetNX(c *Ctx, args [][]byte) {
	if len(args)%2 == 0 {
		c.out = AppendError(c.out, ErrArity("msetnx"))
		return
	}
	for i := 1; i < len(args); i += 2 {
		if _, found := c.lookup(args[i]); found {
			c.out = AppendInt(c.out, 0)
			return
		}
	}
	for i := 1; i < len(args); i += 2 {
		c.put(args[i], TypeString, 0, args[i+1])
	}
	c.out = AppendInt(c.out, 1)
}

func cmdIncr(c *Ctx, args [][]byte) { c.incrBy(args[1], 1) }
func cmdDecr(c *Ctx, args [][]byte) { c.incrBy(args[1], -1) }

func cmdIncrBy(c *Ctx, args [][]byte) {
	n, ok := parseInt(args[2])
	if !ok {
		c.out = AppendError(c.out, ErrNotInteger)
		return
	}
	c.incrBy(args[1], n)
}

func cmdDecrBy(c *Ctx, args [][]byte) {
	n, ok := parseInt(args[2])
	if !ok {
		c.out = AppendError(c.out, ErrNotInteger)
		return
	}
	if n == math.MinInt64 {
		c.out = AppendError(c.out, "ERR decrement would overflow")
		return
	}
	c.incrBy(args[1], -n)
}

func (c *Ctx) incrBy(key []byte, by int64) {
	r, found := c.lookup(key)
	var cur int64
	if found {
		if r.typ != TypeString {
			c.out = AppendError(c.out, ErrWrongType)
			return
		}
		var ok bool
		if cur, ok = parseInt(r.payload); !ok {
			c.out = AppendError(c.out, ErrNotInteger)
			return
		}
	}
	if (by < 0 && cur < 0 && by < math.MinInt64-cur) || (by > 0 && cur > 0 && by > math.MaxInt64-cur) {
		c.out = AppendError(c.out, ErrOverflow)
		return
	}
	cur += by
	c.put(key, TypeString, r.deadline, strconv.AppendInt(nil, cur, 10))
	c.out = AppendInt(c.out, cur)
}

func cmdIncrByFloat(c *Ctx, args [][]byte) {
	by, ok := parseFloat(args[2])
	if !ok {
		c.out = AppendError(c.out, ErrNotFloat)
		return
	}
	r, found := c.lookup(args[1])
	var cur float64
	if found {
		if r.typ != TypeString {
			c.out = AppendError(c.out, ErrWrongType)
			return
		}
		if cur, ok = parseFloat(r.payload); !ok {
			c.out = AppendError(c.out, ErrNotFloat)
			return
		}
	}
	cur += by
	if math.IsNaN(cur) || math.IsInf(cur, 0) {
		c.out = AppendError(c.out, "ERR increment would produce NaN or Infinity")
		return
	}
	v := strconv.AppendFloat(nil, cur, 'f', -1, 64)
	c.put(args[1], TypeString, r.deadline, v)
	c.out = AppendBulk(c.out, v)
}

func cmdAppend(c *Ctx, args [][]byte) {
	r, found := c.lookup(args[1])
	if found && r.typ != TypeString {
		c.out = AppendError(c.out, ErrWrongType)
		return
	}
	if len(r.payload)+len(args[2]) > MaxStringSize {
		c.out = AppendError(c.out, "ERR string exceeds maximum allowed size (proto-max-bulk-len)")
		return
	}
	v := append(append(make([]byte, 0, len(r.payload)+len(args[2])), r.payload...), args[2]...)
	c.put(args[1], TypeString, r.deadline, v)
	c.out = AppendInt(c.out, int64(len(v)))
}

func cmdStrlen(c *Ctx, args [][]byte) {
	v, _, wrong := c.lookupString(args[1])
	if wrong {
		c.out = AppendError(c.out, ErrWrongType)
		return
	}
	c.out = AppendInt(c.out, int64(len(v)))
}

func cmdGetRange(c *Ctx, args [][]byte) {
	start, ok1 := parseInt(args[2])
	end, ok2 := parseInt(args[3])
	if !ok1 || !ok2 {
		c.out = AppendError(c.out, ErrNotInteger)
		return
	}
	v, _, wrong := c.lookupString(args[1])
	if wrong {
		c.out = AppendError(c.out, ErrWrongType)
		return
	}
	n := int64(len(v))
	if start < 0 && end < 0 && start > end {
		c.out = AppendBulk(c.out, nil)
		return
	}
	if start < 0 {
		start += n
	}
	if end < 0 {
		end += n
	}
	start, end = max(start, 0), max(end, 0)
	if end >= n {
		end = n - 1
	}
	if n == 0 || start > end {
		c.out = AppendBulk(c.out, nil)
		return
	}
	c.out = AppendBulk(c.out, v[start:end+1])
}

func cmdSetRange(c *Ctx, args [][]byte) {
	off, ok := parseInt(args[2])
	if !ok {
		c.out = AppendError(c.out, ErrNotInteger)
		return
	}
	if off < 0 {
		c.out = AppendError(c.out, "ERR offset is out of range")
		return
	}
	r, found := c.lookup(args[1])
	if found && r.typ != TypeString {
		c.out = AppendError(c.out, ErrWrongType)
		return
	}
	val := args[3]
	if len(val) == 0 {
		c.out = AppendInt(c.out, int64(len(r.payload)))
		return
	}
	if off+int64(len(val)) > MaxStringSize {
		c.out = AppendError(c.out, "ERR string exceeds maximum allowed size (proto-max-bulk-len)")
		return
	}
	size := max(int64(len(r.payload)), off+int64(len(val)))
	v := make([]byte, size)
	copy(v, r.payload)
	copy(v[off:], val)
	c.put(args[1], TypeString, r.deadline, v)
	c.out = AppendInt(c.out, size)
}

// parseInt is Redis's string2ll: optional '-', no '+', no spaces, no
// leading zeros, fits in int64.
func parseInt(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	if len(b) == 1 && b[0] == '0' {
		return 0, true
	}
	neg := b[0] == '-'
	d := b
	if neg {
		d = b[1:]
	}
	if len(d) == 0 || d[0] < '1' || d[0] > '9' {
		return 0, false
	}
	var v uint64
	for _, ch := range d {
		if ch < '0' || ch > '9' {
			return 0, false
		}
		if v > (math.MaxUint64-9)/10 {
			return 0, false
		}
		v = v*10 + uint64(ch-'0')
	}
	if neg {
		if v > 1<<63 {
			return 0, false
		}
		return -int64(v), true
	}
	if v > math.MaxInt64 {
		return 0, false
	}
	return int64(v), true
}

// parseFloat accepts what Redis's strtold-based parser does, minus
// spaces, NaN and overlong input.
func parseFloat(b []byte) (float64, bool) {
	if len(b) == 0 || len(b) > 5120 || b[0] == ' ' || b[len(b)-1] == ' ' || bytes.ContainsAny(b, "nN_") {
		if !bytes.EqualFold(b, []byte("inf")) && !bytes.EqualFold(b, []byte("-inf")) && !bytes.EqualFold(b, []byte("+inf")) {
			return 0, false
		}
	}
	v, err := strconv.ParseFloat(string(b), 64)
	if err != nil || math.IsNaN(v) {
		return 0, false
	}
	return v, true
}

func eqFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		if lower(b[i]) != s[i] {
			return false
		}
	}
	return true
}

// ParseInt parses an integer argument exactly as Redis does (string2ll).
func ParseInt(b []byte) (int64, bool) { return parseInt(b) }
