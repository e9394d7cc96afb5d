package lua

import (
	"encoding/binary"
	"math"
	"strconv"

	glua "github.com/yuin/gopher-lua"
)

// cmsgpack (lua-cmsgpack 0.4.0 as bundled with Redis 7.0): array/map
// detection, integer and float encodings, nesting limit 16 (deeper tables
// become nil), streaming unpack_one/unpack_limit, and its error texts.

const cmsgpackMaxNesting = 16

func (e *engine) openCmsgpack() *glua.LTable {
	t := e.L.NewTable()
	e.register(t, map[string]glua.LGFunction{
		"pack":   e.mpPack,
		"unpack": func(L *glua.LState) int { return e.mpUnpackFull(L, 0, 0) },
		"unpack_one": func(L *glua.LState) int {
			off := int(int32(optInteger(L, 2, 0)))
			L.SetTop(1)
			return e.mpUnpackFull(L, 1, off)
		},
		"unpack_limit": func(L *glua.LState) int {
			limit := int(int32(checkInteger(L, 2)))
			off := int(int32(optInteger(L, 3, 0)))
			L.SetTop(1)
			return e.mpUnpackFull(L, limit, off)
		},
	})
	t.RawSetString("_NAME", glua.LString("cmsgpack"))
	t.RawSetString("_VERSION", glua.LString("lua-cmsgpack 0.4.0"))
	t.RawSetString("_COPYRIGHT", glua.LString("Copyright (C) 2012, Salvatore Sanfilippo"))
	t.RawSetString("_DESCRIPTION", glua.LString("MessagePack C implementation for Lua"))
	return t
}

type mpEncoder struct {
	e       *engine
	L       *glua.LState
	b       []byte
	charged int
}

func (e *engine) mpPack(L *glua.LState) int {
	n := L.GetTop()
	if n == 0 {
		argError(L, 0, "MessagePack pack needs input.")
	}
	enc := &mpEncoder{e: e, L: L}
	for i := 1; i <= n; i++ {
		enc.value(L.Get(i), 0)
	}
	e.run.chargeL(L, int64(len(enc.b)-enc.charged))
	L.Push(glua.LString(enc.b))
	return 1
}

// head writes an array or map header: fix form up to 15 elements, then
// 16- and 32-bit counts.
func (enc *mpEncoder) head(fix byte, n uint64, b16, b32 byte) {
	switch {
	case n <= 15:
		enc.b = append(enc.b, fix|byte(n))
	case n <= 0xffff:
		enc.b = binary.BigEndian.AppendUint16(append(enc.b, b16), uint16(n))
	default:
		enc.b = binary.BigEndian.AppendUint32(append(enc.b, b32), uint32(n))
	}
}

func (enc *mpEncoder) value(v glua.LValue, level int) {
	enc.e.run.stepL(enc.L, 1)
	if _, ok := v.(*glua.LTable); ok && level == cmsgpackMaxNesting {
		v = glua.LNil // how lua-cmsgpack survives circular references
	}
	switch v := v.(type) {
	case glua.LString:
		n := uint64(len(v))
		switch {
		case n < 32:
			enc.b = append(enc.b, 0xa0|byte(n))
		case n <= 0xff:
			enc.b = append(enc.b, 0xd9, byte(n))
		case n <= 0xffff:
			enc.b = binary.BigEndian.AppendUint16(append(enc.b, 0xda), uint16(n))
		default:
			enc.b = binary.BigEndian.AppendUint32(append(enc.b, 0xdb), uint32(n))
		}
		enc.b = append(enc.b, v...)
	case glua.LBool:
		if v {
			enc.b = append(enc.b, 0xc3)
		} else {
			enc.b = append(enc.b, 0xc2)
		}
	case glua.LNumber:
		enc.number(float64(v))
	case *glua.LTable:
		enc.table(v, level)
	default:
		enc.b = append(enc.b, 0xc0)
	}
	// Charge the output as it grows, so a table repeating one big string
	// fails before the buffer is built.
	if d := len(enc.b) - enc.charged; d > 1<<16 {
		enc.e.run.chargeL(enc.L, int64(d))
		enc.charged = len(enc.b)
	}
}

func (enc *mpEncoder) number(f float64) {
	if !math.IsInf(f, 0) && float64(toInteger(f)) == f {
		enc.integer(toInteger(f))
		return
	}
	if f32 := float32(f); float64(f32) == f {
		enc.b = binary.BigEndian.AppendUint32(append(enc.b, 0xca), math.Float32bits(f32))
		return
	}
	enc.b = binary.BigEndian.AppendUint64(append(enc.b, 0xcb), math.Float64bits(f))
}

func (enc *mpEncoder) integer(n int64) {
	b := enc.b
	switch {
	case n >= 0 && n <= 127:
		b = append(b, byte(n))
	case n >= 0 && n <= 0xff:
		b = append(b, 0xcc, byte(n))
	case n >= 0 && n <= 0xffff:
		b = binary.BigEndian.AppendUint16(append(b, 0xcd), uint16(n))
	case n >= 0 && n <= 0xffffffff:
		b = binary.BigEndian.AppendUint32(append(b, 0xce), uint32(n))
	case n >= 0:
		b = binary.BigEndian.AppendUint64(append(b, 0xcf), uint64(n))
	case n >= -32:
		b = append(b, byte(int8(n)))
	case n >= -128:
		b = append(b, 0xd0, byte(n))
	case n >= -32768:
		b = binary.BigEndian.AppendUint16(append(b, 0xd1), uint16(n))
	case n >= -2147483648:
		b = binary.BigEndian.AppendUint32(append(b, 0xd2), uint32(n))
	default:
		b = binary.BigEndian.AppendUint64(append(b, 0xd3), uint64(n))
	}
	enc.b = b
}

func (enc *mpEncoder) table(t *glua.LTable, level int) {
	keys := enc.e.tableOrder(t)
	count, max := 0, 0
	isArray := true
	for _, k := range keys {
		n, ok := k.(glua.LNumber)
		// IS_INT_EQUIVALENT: the key must survive a cast to C int.
		if !ok || n <= 0 || float64(int32(toInteger(float64(n)))) != float64(n) {
			isArray = false
			break
		}
		max = maxInt(max, int(n))
		count++
	}
	if isArray && max == count {
		n := t.Len()
		enc.head(0x90, uint64(n), 0xdc, 0xdd)
		for i := 1; i <= n; i++ {
			enc.value(enc.L.GetTable(t, glua.LNumber(i)), level+1)
		}
		return
	}
	enc.head(0x80, uint64(len(keys)), 0xde, 0xdf)
	for _, k := range keys {
		enc.value(k, level+1)
		enc.value(t.RawGet(k), level+1)
	}
}

func maxInt(a, b int) int {
	if a > b {
		return a
	}
	return b
}

// --- unpack -------------------------------------------------------------------

type mpDecoder struct {
	e     *engine
	L     *glua.LState
	s     string
	p     int
	err   int // 0 none, 1 EOF, 2 bad format
	stack int // Lua stack slots in use, for lua_checkstack's limit
}

func (e *engine) mpUnpackFull(L *glua.LState, limit, offset int) int {
	s := checkString(L, 1)
	if offset < 0 || limit < 0 {
		luaError(L, "Invalid request to unpack with offset of "+strconv.Itoa(offset)+" and limit of "+strconv.Itoa(len(s))+".")
	} else if offset > len(s) {
		luaError(L, "Start offset "+strconv.Itoa(offset)+" greater than input length "+strconv.Itoa(len(s))+".")
	}
	all := limit == 0 && offset == 0
	if all {
		limit = math.MaxInt32
	}
	d := &mpDecoder{e: e, L: L, s: s, p: offset, stack: L.GetTop()}
	cnt := 0
	for ; d.p < len(s) && cnt < limit; cnt++ {
		L.Push(d.value())
		d.stack++
		switch d.err {
		case 1:
			luaError(L, "Missing bytes in input.")
		case 2:
			luaError(L, "Bad data format in input.")
		}
	}
	e.run.chargeL(L, int64(len(s)))
	if !all {
		next := d.p
		if next == len(s) {
			next = -1
		}
		L.Insert(glua.LNumber(next), 2)
		cnt++
	}
	return cnt
}

func (d *mpDecoder) need(n int) bool {
	if len(d.s)-d.p < n {
		d.err = 1
		return false
	}
	return true
}

func (d *mpDecoder) u(off, n int) uint64 {
	var v uint64
	for i := 0; i < n; i++ {
		v = v<<8 | uint64(d.s[d.p+off+i])
	}
	return v
}

func (d *mpDecoder) value() glua.LValue {
	if !d.need(1) {
		return glua.LNil
	}
	d.e.run.stepL(d.L, 1)
	if d.stack+1 > luaMaxCStack {
		luaError(d.L, "stack overflow (too many return values at once; use unpack_one or unpack_limit instead.)")
	}
	c := d.s[d.p]
	fixed := func(n int, v glua.LValue) glua.LValue {
		if !d.need(n) {
			return glua.LNil
		}
		d.p += n
		return v
	}
	switch c {
	case 0xcc, 0xcd, 0xce, 0xcf:
		n := 1 << (c - 0xcc)
		if !d.need(1 + n) {
			return glua.LNil
		}
		return fixed(1+n, glua.LNumber(float64(d.u(1, n))))
	case 0xd0, 0xd1, 0xd2, 0xd3:
		n := 1 << (c - 0xd0)
		if !d.need(1 + n) {
			return glua.LNil
		}
		v := d.u(1, n)
		shift := 64 - 8*n
		return fixed(1+n, glua.LNumber(float64(int64(v<<shift)>>shift)))
	case 0xc0:
		return fixed(1, glua.LNil)
	case 0xc3:
		return fixed(1, glua.LTrue)
	case 0xc2:
		return fixed(1, glua.LFalse)
	case 0xca:
		if !d.need(5) {
			return glua.LNil
		}
		return fixed(5, glua.LNumber(math.Float32frombits(uint32(d.u(1, 4)))))
	case 0xcb:
		if !d.need(9) {
			return glua.LNil
		}
		return fixed(9, glua.LNumber(math.Float64frombits(d.u(1, 8))))
	case 0xd9, 0xda, 0xdb:
		h := 1 << (c - 0xd9)
		if !d.need(1 + h) {
			return glua.LNil
		}
		return d.str(1+h, int(d.u(1, h)))
	case 0xdc, 0xdd, 0xde, 0xdf:
		h := 2
		if c == 0xdd || c == 0xdf {
			h = 4
		}
		if !d.need(1 + h) {
			return glua.LNil
		}
		n := int(d.u(1, h))
		d.p += 1 + h
		if c <= 0xdd {
			return d.array(n)
		}
		return d.hash(n)
	}
	switch {
	case c&0x80 == 0:
		return fixed(1, glua.LNumber(c))
	case c&0xe0 == 0xe0:
		return fixed(1, glua.LNumber(int8(c)))
	case c&0xe0 == 0xa0:
		return d.str(1, int(c&0x1f))
	case c&0xf0 == 0x90:
		d.p++
		return d.array(int(c & 0xf))
	case c&0xf0 == 0x80:
		d.p++
		return d.hash(int(c & 0xf))
	}
	d.err = 2
	return glua.LNil
}

func (d *mpDecoder) str(hdr, n int) glua.LValue {
	if !d.need(hdr + n) {
		return glua.LNil
	}
	s := d.s[d.p+hdr : d.p+hdr+n]
	d.p += hdr + n
	return glua.LString(s)
}

func (d *mpDecoder) array(n int) glua.LValue {
	t := d.L.CreateTable(min(n, 1024), 0)
	d.stack += 2 // the table and the index being set
	for i := 1; i <= n; i++ {
		v := d.value()
		if d.err != 0 {
			break
		}
		d.e.run.chargeL(d.L, slotCost)
		t.RawSetInt(i, v)
	}
	d.stack -= 2
	return t
}

func (d *mpDecoder) hash(n int) glua.LValue {
	t := d.L.CreateTable(0, min(n, 1024))
	d.stack += 2
	for i := 0; i < n; i++ {
		k := d.value()
		if d.err != 0 {
			break
		}
		v := d.value()
		if d.err != 0 {
			break
		}
		if k == glua.LNil {
			rawError(d.L, "table index is nil")
		}
		d.e.run.chargeL(d.L, hashCost)
		if v == glua.LNil && arrayIndex(k) == 0 {
			d.e.run.recordNilKey(t, k) // lua_settable creates the key's node
		} else {
			t.RawSet(k, v)
		}
	}
	d.stack -= 2
	return t
}
