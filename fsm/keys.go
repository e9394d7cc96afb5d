package fsm

import (
	"bytes"
	"encoding/binary"
	"math"
	"strconv"
)

func cmdDel(c *Ctx, args [][]byte) {
	var n int64
	for _, k := range args[1:] {
		if c.del(k) {
			n++
		}
	}
	c.out = AppendInt(c.out, n)
}

func cmdExists(c *Ctx, args [][]byte) {
	var n int64
	for _, k := range args[1:] {
		if _, ok := c.lookup(k); ok {
			n++
		}
	}
	c.out = AppendInt(c.out, n)
}

func cmdType(c *Ctx, args [][]byte) {
	r, ok := c.lookup(args[1])
	if !ok {
		c.out = AppendStatus(c.out, "none")
		return
	}
	c.out = AppendStatus(c.out, typeNames[r.typ])
}

func cmdRename(c *Ctx, args [][]byte)   { c.rename(args[1], args[2], false) }
func cmdRenameNX(c *Ctx, args [][]byte) { c.rename(args[1], args[2], true) }

func (c *Ctx) rename(src, dst []byte, nx bool) {
	r, ok := c.lookup(src)
	if !ok {
		c.out = AppendError(c.out, ErrNoSuchKey)
		return
	}
	if bytes.Equal(src, dst) {
		if nx {
			c.out = AppendInt(c.out, 0)
		} else {
			c.out = AppendStatus(c.out, "OK")
		}
		return
	}
	if _, exists := c.lookup(dst); exists && nx {
		c.out = AppendInt(c.out, 0)
		return
	}
	payload := append([]byte(nil), r.payload...)
	c.del(dst)
	c.del(src)
	c.put(dst, r.typ, r.deadline, payload)
	if nx {
		c.out = AppendInt(c.out, 1)
	} else {
		c.out = AppendStatus(c.out, "OK")
	}
}

func cmdKeys(c *Ctx, args [][]byte) {
	var keys [][]byte
	c.eachKey(args[1], func(k []byte, _ record) bool {
		keys = append(keys, k)
		return true
	})
	c.out = AppendArray(c.out, len(keys))
	for _, k := range keys {
		c.out = AppendBulk(c.out, k)
	}
}

// cmdScan walks the scan index (keys ordered by hash) from the cursor. The
// cursor is the hash to resume at, so it stays valid on any node and across
// inserts and deletes.
func cmdScan(c *Ctx, args [][]byte) {
	cursor, ok := parseCursor(args[1])
	if !ok {
		c.out = AppendError(c.out, "ERR invalid cursor")
		return
	}
	count := int64(10)
	var pattern, typ []byte
	for i := 2; i < len(args); i += 2 {
		if i+1 >= len(args) {
			c.out = AppendError(c.out, ErrSyntax)
			return
		}
		switch {
		case eqFold(args[i], "count"):
			n, ok := parseInt(args[i+1])
			if !ok {
				c.out = AppendError(c.out, ErrNotInteger)
				return
			}
			if n < 1 {
				c.out = AppendError(c.out, ErrSyntax)
				return
			}
			count = n
		case eqFold(args[i], "match"):
			pattern = args[i+1]
		case eqFold(args[i], "type"):
			typ = args[i+1]
		default:
			c.out = AppendError(c.out, ErrSyntax)
			return
		}
	}
	var keys [][]byte
	next := uint64(0)
	cur := c.v.cursor(c.scanBucket())
	start := binary.BigEndian.AppendUint64(nil, cursor)
	visited := int64(0)
	for k, _ := cur.Seek(start); k != nil; k, _ = cur.Next() {
		if visited >= count {
			next = binary.BigEndian.Uint64(k[:8])
			break
		}
		visited++
		key := k[8:]
		r, ok := c.lookup(key)
		if !ok {
			continue
		}
		if pattern != nil && !Match(pattern, key, false) {
			continue
		}
		if typ != nil && !eqFold(typ, typeNames[r.typ]) {
			continue
		}
		keys = append(keys, key)
	}
	c.out = AppendArray(c.out, 2)
	c.out = AppendBulkString(c.out, strconv.FormatUint(next, 10))
	c.out = AppendArray(c.out, len(keys))
	for _, k := range keys {
		c.out = AppendBulk(c.out, k)
	}
}

// expireFlags are EXPIRE's NX XX GT LT options.
type expireFlags struct{ nx, xx, gt, lt bool }

func (c *Ctx) parseExpireFlags(args [][]byte) (expireFlags, bool) {
	var f expireFlags
	for _, opt := range args {
		switch {
		case eqFold(opt, "nx"):
			f.nx = true
		case eqFold(opt, "xx"):
			f.xx = true
		case eqFold(opt, "gt"):
			f.gt = true
		case eqFold(opt, "lt"):
			f.lt = true
		default:
			c.out = AppendError(c.out, "ERR Unsupported option "+string(opt))
			return f, false
		}
	}
	if f.nx && (f.xx || f.gt || f.lt) {
		c.out = AppendError(c.out, "ERR NX and XX, GT or LT options at the same time are not compatible")
		return f, false
	}
	if f.gt && f.lt {
		c.out = AppendError(c.out, "ERR GT and LT options at the same time are not compatible")
		return f, false
	}
	return f, true
}

func cmdExpire(c *Ctx, args [][]byte)    { c.expire(args, c.Now, 1000) }
func cmdPExpire(c *Ctx, args [][]byte)   { c.expire(args, c.Now, 1) }
func cmdExpireAt(c *Ctx, args [][]byte)  { c.expire(args, 0, 1000) }
func cmdPExpireAt(c *Ctx, args [][]byte) { c.expire(args, 0, 1) }

// expire follows Redis's expireGenericCommand step by step.
func (c *Ctx) expire(args [][]byte, base, unit int64) {
	name := string(bytes.ToLower(args[0]))
	f, ok := c.parseExpireFlags(args[3:])
	if !ok {
		return
	}
	when, ok := parseInt(args[2])
	if !ok {
		c.out = AppendError(c.out, ErrNotInteger)
		return
	}
	invalid := "ERR invalid expire time in '" + name + "' command"
	if unit == 1000 {
		if when > math.MaxInt64/1000 || when < math.MinInt64/1000 {
			c.out = AppendError(c.out, invalid)
			return
		}
		when *= 1000
	}
	if when > math.MaxInt64-base {
		c.out = AppendError(c.out, invalid)
		return
	}
	when += base
	r, found := c.lookup(args[1])
	if !found {
		c.out = AppendInt(c.out, 0)
		return
	}
	cur := r.deadline // 0: no expiry (Redis's -1)
	if (f.nx && cur != 0) || (f.xx && cur == 0) ||
		(f.gt && (cur == 0 || when <= cur)) || (f.lt && cur != 0 && when >= cur) {
		c.out = AppendInt(c.out, 0)
		return
	}
	if when <= c.Now {
		c.del(args[1])
	} else {
		c.setDeadline(args[1], r, when)
	}
	c.out = AppendInt(c.out, 1)
}

func cmdTTL(c *Ctx, args [][]byte)         { c.ttl(args[1], false, false) }
func cmdPTTL(c *Ctx, args [][]byte)        { c.ttl(args[1], true, false) }
func cmdExpireTime(c *Ctx, args [][]byte)  { c.ttl(args[1], false, true) }
func cmdPExpireTime(c *Ctx, args [][]byte) { c.ttl(args[1], true, true) }

func (c *Ctx) ttl(key []byte, ms, abs bool) {
	r, found := c.lookup(key)
	switch {
	case !found:
		c.out = AppendInt(c.out, -2)
	case r.deadline == 0:
		c.out = AppendInt(c.out, -1)
	default:
		t := r.deadline
		if !abs {
			t = max(t-c.Now, 0)
		}
		if !ms {
			t = (t + 500) / 1000
		}
		c.out = AppendInt(c.out, t)
	}
}

func cmdPersist(c *Ctx, args [][]byte) {
	r, found := c.lookup(args[1])
	if !found || r.deadline == 0 {
		c.out = AppendInt(c.out, 0)
		return
	}
	c.setDeadline(args[1], r, 0)
	c.out = AppendInt(c.out, 1)
}

func cmdDBSize(c *Ctx, _ [][]byte) { c.out = AppendInt(c.out, c.count(c.DB)) }

func flushArgsOK(args [][]byte) bool {
	return len(args) == 1 || (len(args) == 2 && (eqFold(args[1], "async") || eqFold(args[1], "sync")))
}

func cmdFlushDB(c *Ctx, args [][]byte) {
	if !flushArgsOK(args) {
		c.out = AppendError(c.out, ErrSyntax)
		return
	}
	c.flush(c.DB)
	c.out = AppendStatus(c.out, "OK")
}

func cmdFlushAll(c *Ctx, args [][]byte) {
	if !flushArgsOK(args) {
		c.out = AppendError(c.out, ErrSyntax)
		return
	}
	for db := 0; db < Databases; db++ {
		c.flush(db)
	}
	c.out = AppendStatus(c.out, "OK")
}

// cmdSweep deletes the named keys whose deadline has passed as of this
// entry's time; a key renewed since the sweeper looked is left alone.
func cmdSweep(c *Ctx, args [][]byte) {
	var n int64
	for _, k := range args[1:] {
		v := c.v.get(c.dbBucket(), c.lookupKey(k))
		if v == nil {
			continue
		}
		if r, ok := decodeRecord(v); ok && r.deadline != 0 && r.deadline <= c.Now {
			c.remove(k, r)
			n++
		}
	}
	c.out = AppendInt(c.out, n)
}

// parseCursor accepts what Redis's strtoul-based parser does: an empty
// string is 0, a sign is allowed (and "-1" wraps around), spaces are not.
func parseCursor(b []byte) (uint64, bool) {
	neg := false
	if len(b) > 0 && (b[0] == '+' || b[0] == '-') {
		neg = b[0] == '-'
		b = b[1:]
		if len(b) == 0 {
			return 0, false
		}
	}
	if len(b) == 0 {
		return 0, true
	}
	v, err := strconv.ParseUint(string(b), 10, 64)
	if err != nil {
		return 0, false
	}
	if neg {
		v = -v
	}
	return v, true
}
