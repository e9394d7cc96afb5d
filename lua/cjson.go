package lua

import (
	"math"
	"strconv"

	glua "github.com/yuin/gopher-lua"
)

// cjson as bundled with Redis 7.0 (lua-cjson 2.1.0): encoding rules, number
// format, escapes, sparse-array handling, nesting limits and error texts.
// Its configuration functions change per-run settings only: Redis keeps
// them process-wide, which would make one script's settings leak into the
// next and differ between nodes.

type cjsonCfg struct {
	set            bool
	sparseConvert  bool
	sparseRatio    int
	sparseSafe     int
	encodeMaxDepth int
	decodeMaxDepth int
	precision      int
	encodeInvalid  int // 0 refuse, 1 allow, 2 as null
	decodeInvalid  bool
	encodeKeepBuf  bool
}

func (r *run) cjson() *cjsonCfg {
	c := &r.cj
	if !c.set {
		*c = cjsonCfg{set: true, sparseRatio: 2, sparseSafe: 10, encodeMaxDepth: 1000,
			decodeMaxDepth: 1000, precision: 14, decodeInvalid: true, encodeKeepBuf: true}
	}
	return c
}

func (e *engine) openCjson() *glua.LTable {
	t := e.L.NewTable()
	e.register(t, e.cjsonFuncs())
	t.RawSetString("null", e.null)
	t.RawSetString("_NAME", glua.LString("cjson"))
	t.RawSetString("_VERSION", glua.LString("2.1.0"))
	return t
}

func (e *engine) cjsonFuncs() map[string]glua.LGFunction {
	return map[string]glua.LGFunction{
		"encode": e.cjEncode,
		"decode": e.cjDecode,
		"new": func(L *glua.LState) int {
			t := L.NewTable()
			e.register(t, e.cjsonFuncs())
			t.RawSetString("null", e.null)
			t.RawSetString("_NAME", glua.LString("cjson"))
			t.RawSetString("_VERSION", glua.LString("2.1.0"))
			L.Push(t)
			return 1
		},
		"encode_sparse_array": func(L *glua.LState) int {
			c := e.run.cjson()
			if L.GetTop() >= 1 && L.Get(1) != glua.LNil {
				c.sparseConvert = L.ToBool(1)
			}
			c.sparseRatio = optIntRange(L, 2, c.sparseRatio, 0, math.MaxInt32)
			c.sparseSafe = optIntRange(L, 3, c.sparseSafe, 0, math.MaxInt32)
			L.Push(glua.LBool(c.sparseConvert))
			L.Push(glua.LNumber(c.sparseRatio))
			L.Push(glua.LNumber(c.sparseSafe))
			return 3
		},
		"encode_max_depth": func(L *glua.LState) int {
			c := e.run.cjson()
			c.encodeMaxDepth = optIntRange(L, 1, c.encodeMaxDepth, 1, math.MaxInt32)
			L.Push(glua.LNumber(c.encodeMaxDepth))
			return 1
		},
		"decode_max_depth": func(L *glua.LState) int {
			c := e.run.cjson()
			c.decodeMaxDepth = optIntRange(L, 1, c.decodeMaxDepth, 1, math.MaxInt32)
			L.Push(glua.LNumber(c.decodeMaxDepth))
			return 1
		},
		"encode_number_precision": func(L *glua.LState) int {
			c := e.run.cjson()
			c.precision = optIntRange(L, 1, c.precision, 1, 14)
			L.Push(glua.LNumber(c.precision))
			return 1
		},
		"encode_keep_buffer": func(L *glua.LState) int {
			c := e.run.cjson()
			if L.GetTop() >= 1 && L.Get(1) != glua.LNil {
				c.encodeKeepBuf = L.ToBool(1)
			}
			L.Push(glua.LBool(c.encodeKeepBuf))
			return 1
		},
		"encode_invalid_numbers": func(L *glua.LState) int {
			c := e.run.cjson()
			switch v := L.Get(1).(type) {
			case glua.LBool:
				c.encodeInvalid = map[bool]int{false: 0, true: 1}[bool(v)]
			case glua.LString:
				if v == "null" {
					c.encodeInvalid = 2
				}
			}
			switch c.encodeInvalid {
			case 1:
				L.Push(glua.LTrue)
			case 2:
				L.Push(glua.LString("null"))
			default:
				L.Push(glua.LFalse)
			}
			return 1
		},
		"decode_invalid_numbers": func(L *glua.LState) int {
			c := e.run.cjson()
			if L.GetTop() >= 1 && L.Get(1) != glua.LNil {
				c.decodeInvalid = L.ToBool(1)
			}
			L.Push(glua.LBool(c.decodeInvalid))
			return 1
		},
	}
}

func optIntRange(L *glua.LState, n, def, lo, hi int) int {
	if L.Get(n) == glua.LNil {
		return def
	}
	v := checkInt(L, n)
	if v < lo || v > hi {
		argError(L, n, "expected integer between "+strconv.Itoa(lo)+" and "+strconv.Itoa(hi))
	}
	return v
}

// --- encode -------------------------------------------------------------------

type jsonEncoder struct {
	e       *engine
	L       *glua.LState
	cfg     *cjsonCfg
	b       []byte
	charged int
	keys    []glua.LValue // the key orders of the tables being written
}

// maxKeptEncBuf bounds the output buffer an engine keeps between calls.
const maxKeptEncBuf = 64 << 10

func (e *engine) cjEncode(L *glua.LState) int {
	if L.GetTop() != 1 {
		argError(L, 1, "expected 1 argument")
	}
	// The output is copied into a Lua string, so the buffer can be the
	// engine's, reused from call to call (encoding never runs Lua code,
	// so it cannot re-enter).
	b := e.encBuf
	if b == nil {
		b = make([]byte, 0, 256)
	}
	e.encBuf = nil // taken; an error leaves it to the garbage collector
	enc := &jsonEncoder{e: e, L: L, cfg: e.run.cjson(), b: b[:0], keys: e.encKeys[:0]}
	e.encKeys = nil
	enc.value(L.Get(1), 0)
	e.run.chargeL(L, int64(len(enc.b)-enc.charged))
	L.Push(glua.LString(enc.b))
	if cap(enc.b) <= maxKeptEncBuf {
		e.encBuf = enc.b[:0]
	}
	if cap(enc.keys) <= maxKeptStack {
		e.encKeys = enc.keys[:0] // empty: table clears what it pops
	}
	return 1
}

func (enc *jsonEncoder) fail(v glua.LValue, reason string) {
	luaError(enc.L, "Cannot serialise "+v.Type().String()+": "+reason)
}

// account charges the output built so far every 64 KiB, so a huge
// document fails before it is complete.
func (enc *jsonEncoder) account() {
	if d := len(enc.b) - enc.charged; d > 1<<16 {
		enc.e.run.chargeL(enc.L, int64(d))
		enc.e.run.stepL(enc.L, int64(d)/64)
		enc.charged = len(enc.b)
	}
}

func (enc *jsonEncoder) value(v glua.LValue, depth int) {
	switch v := v.(type) {
	case glua.LString:
		enc.b = appendJSONString(enc.b, string(v))
	case glua.LNumber:
		enc.number(v)
	case glua.LBool:
		if v {
			enc.b = append(enc.b, "true"...)
		} else {
			enc.b = append(enc.b, "false"...)
		}
	case *glua.LNilType:
		enc.b = append(enc.b, "null"...)
	case *glua.LTable:
		depth++
		if depth > enc.cfg.encodeMaxDepth {
			luaError(enc.L, "Cannot serialise, excessive nesting ("+strconv.Itoa(depth)+")")
		}
		enc.e.run.stepL(enc.L, 1)
		enc.table(v, depth)
	case *glua.LUserData:
		if v == enc.e.null {
			enc.b = append(enc.b, "null"...)
			return
		}
		enc.fail(v, "type not supported")
	default:
		enc.fail(v, "type not supported")
	}
	enc.account()
}

func (enc *jsonEncoder) number(v glua.LNumber) {
	f := float64(v)
	if math.IsInf(f, 0) || f != f {
		switch enc.cfg.encodeInvalid {
		case 0:
			enc.fail(v, "must not be NaN or Inf")
		case 2:
			enc.b = append(enc.b, "null"...)
			return
		}
		if f != f {
			enc.b = append(enc.b, "nan"...)
			return
		}
	}
	enc.b = append(enc.b, fmtG(f, enc.cfg.precision)...)
}

// table writes an array when the keys are exactly positive integers (and
// not excessively sparse), an object otherwise.
func (enc *jsonEncoder) table(t *glua.LTable, depth int) {
	// keys live on enc.keys above the enclosing tables' keys, and are
	// popped (and cleared, to hold no values between calls) on return;
	// nested tables may move enc.keys, not keys.
	var keys []glua.LValue
	haveKeys := false
	base := len(enc.keys)
	defer func() {
		clear(enc.keys[base:])
		enc.keys = enc.keys[:base]
	}()
	order := func() {
		enc.keys = enc.e.appendTableOrder(enc.keys, t)
		keys, haveKeys = enc.keys[base:], true
	}
	max, items, isArray := 0, 0, true
	if len(tableKeys0(t)) == 0 {
		// Only an array part: keys 1..Len() with possible holes.
		max = t.Len()
		for i := 1; i <= max; i++ {
			if t.RawGetInt(i) != glua.LNil {
				items++
			}
		}
	} else {
		order()
		for _, k := range keys {
			n, ok := k.(glua.LNumber)
			if !ok || n == 0 || float64(n) != math.Floor(float64(n)) || n < 1 {
				isArray = false
				break
			}
			if int(n) > max {
				max = int(n)
			}
			items++
		}
	}
	c := enc.cfg
	if isArray && c.sparseRatio > 0 && max > items*c.sparseRatio && max > c.sparseSafe {
		if !c.sparseConvert {
			enc.fail(t, "excessively sparse array")
		}
		isArray = false
	}
	if isArray && max > 0 {
		enc.b = append(enc.b, '[')
		for i := 1; i <= max; i++ {
			if i > 1 {
				enc.b = append(enc.b, ',')
			}
			enc.value(t.RawGetInt(i), depth)
		}
		enc.b = append(enc.b, ']')
		return
	}
	if !haveKeys {
		order()
	}
	enc.b = append(enc.b, '{')
	for i, k := range keys {
		if i > 0 {
			enc.b = append(enc.b, ',')
		}
		switch kv := k.(type) {
		case glua.LNumber:
			enc.b = append(enc.b, '"')
			enc.number(kv)
			enc.b = append(enc.b, '"', ':')
		case glua.LString:
			enc.b = appendJSONString(enc.b, string(kv))
			enc.b = append(enc.b, ':')
		default:
			enc.fail(k, "table key must be a number or string")
		}
		enc.value(t.RawGet(k), depth)
	}
	enc.b = append(enc.b, '}')
}

func tableKeys0(t *glua.LTable) []glua.LValue {
	if !layoutOK {
		var ks []glua.LValue
		t.ForEach(func(k, _ glua.LValue) {
			if _, ok := k.(glua.LNumber); !ok {
				ks = append(ks, k)
			}
		})
		return ks
	}
	return tableKeys(t)
}

// jsonEscapes is lua-cjson's char2escape: control characters as \u00XX
// (except \b \t \n \f \r), '"', '\\', '/' and DEL escaped, bytes >= 0x80
// passed through untouched.
var jsonEscapes = func() [256]string {
	var t [256]string
	const hexd = "0123456789abcdef"
	for c := 0; c < 0x20; c++ {
		t[c] = `\u00` + string(hexd[c>>4]) + string(hexd[c&15])
	}
	t['\b'], t['\t'], t['\n'], t['\f'], t['\r'] = `\b`, `\t`, `\n`, `\f`, `\r`
	t['"'], t['\\'], t['/'] = `\"`, `\\`, `\/`
	t[0x7f] = `\u007f`
	return t
}()

func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		if esc := jsonEscapes[s[i]]; esc != "" {
			b = append(b, s[start:i]...)
			b = append(b, esc...)
			start = i + 1
		}
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
