package lua

import (
	"strings"

	glua "github.com/yuin/gopher-lua"
)

// The string library, ported from Lua 5.1's lstrlib.c: Lua's semantics and
// error texts, "%.14g" number conversion, and every string it builds charged
// to the memory budget before it is built.

func (e *engine) openString() *glua.LTable {
	t := e.L.NewTable()
	e.register(t, map[string]glua.LGFunction{
		"byte": e.strByte, "char": e.strChar, "dump": e.strDump,
		"find": e.strFind, "format": e.strFormat, "gsub": e.strGsub,
		"len": e.strLen, "lower": e.strLower, "match": e.strMatch,
		"rep": e.strRep, "reverse": e.strReverse, "sub": e.strSub,
		"upper": e.strUpper, "gmatch": e.strGmatch,
	})
	t.RawSetString("gfind", t.RawGetString("gmatch"))
	return t
}

// posrelat: negative positions count from the end.
func posrelat(pos int64, n int) int64 {
	if pos < 0 {
		pos += int64(n) + 1
	}
	if pos >= 0 {
		return pos
	}
	return 0
}

func optInteger(L *glua.LState, n int, def int64) int64 {
	if L.Get(n) == glua.LNil {
		return def
	}
	return checkInteger(L, n)
}

func (e *engine) pushString(L *glua.LState, s string) {
	e.run.chargeL(L, int64(len(s)))
	L.Push(glua.LString(s))
}

func (e *engine) strLen(L *glua.LState) int {
	L.Push(glua.LNumber(len(checkString(L, 1))))
	return 1
}

func (e *engine) strSub(L *glua.LState) int {
	s := checkString(L, 1)
	start := posrelat(checkInteger(L, 2), len(s))
	end := posrelat(optInteger(L, 3, -1), len(s))
	if start < 1 {
		start = 1
	}
	if end > int64(len(s)) {
		end = int64(len(s))
	}
	if start <= end {
		e.pushString(L, s[start-1:end])
	} else {
		L.Push(glua.LString(""))
	}
	return 1
}

func (e *engine) strReverse(L *glua.LState) int {
	s := checkString(L, 1)
	b := make([]byte, len(s))
	for i := range s {
		b[len(s)-1-i] = s[i]
	}
	e.pushString(L, string(b))
	return 1
}

func (e *engine) strLower(L *glua.LState) int {
	s := checkString(L, 1)
	e.pushString(L, asciiMap(s, 'A', 'Z', 'a'-'A'))
	return 1
}

func (e *engine) strUpper(L *glua.LState) int {
	e.pushString(L, asciiMap(checkString(L, 1), 'a', 'z', 'A'-'a'))
	return 1
}

// asciiMap is C's toupper/tolower in the "C" locale, byte by byte.
func asciiMap(s string, lo, hi byte, delta int) string {
	b := []byte(s)
	for i, c := range b {
		if c >= lo && c <= hi {
			b[i] = byte(int(c) + delta)
		}
	}
	return string(b)
}

func (e *engine) strRep(L *glua.LState) int {
	s := checkString(L, 1)
	n := checkInt(L, 2)
	if n <= 0 || s == "" {
		L.Push(glua.LString(""))
		return 1
	}
	total := int64(len(s)) * int64(n)
	e.run.chargeL(L, total)
	e.run.stepL(L, total/256)
	L.Push(glua.LString(strings.Repeat(s, n)))
	return 1
}

func (e *engine) strByte(L *glua.LState) int {
	s := checkString(L, 1)
	posi := posrelat(optInteger(L, 2, 1), len(s))
	pose := posrelat(optInteger(L, 3, posi), len(s))
	if posi <= 0 {
		posi = 1
	}
	if pose > int64(len(s)) {
		pose = int64(len(s))
	}
	if posi > pose {
		return 0
	}
	n := int(pose - posi + 1)
	if L.GetTop()+n > luaMaxCStack {
		luaError(L, "stack overflow (string slice too long)")
	}
	for i := 0; i < n; i++ {
		L.Push(glua.LNumber(s[int(posi)+i-1]))
	}
	return n
}

func (e *engine) strChar(L *glua.LState) int {
	n := L.GetTop()
	b := make([]byte, n)
	for i := 1; i <= n; i++ {
		c := checkInt(L, i)
		if c != int(byte(c)) {
			argError(L, i, "invalid value")
		}
		b[i-1] = byte(c)
	}
	e.pushString(L, string(b))
	return 1
}

// strDump cannot produce PUC Lua bytecode; Redis refuses to load bytecode
// anyway, so a dump could never be used for anything.
func (e *engine) strDump(L *glua.LState) int {
	if _, ok := L.Get(1).(*glua.LFunction); !ok {
		typeError(L, 1, "function")
	}
	luaError(L, "unable to dump given function")
	return 0
}

// --- find / match / gmatch / gsub -----------------------------------------

func (e *engine) strFind(L *glua.LState) int  { return e.findAux(L, true) }
func (e *engine) strMatch(L *glua.LState) int { return e.findAux(L, false) }

func (e *engine) findAux(L *glua.LState, find bool) int {
	s := checkString(L, 1)
	p := checkString(L, 2)
	init := posrelat(optInteger(L, 3, 1), len(s)) - 1
	if init < 0 {
		init = 0
	} else if init > int64(len(s)) {
		init = int64(len(s))
	}
	cp := p // what C sees: up to the first NUL
	if i := strings.IndexByte(cp, 0); i >= 0 {
		cp = cp[:i]
	}
	if find && (L.ToBool(4) || !strings.ContainsAny(cp, specials)) {
		e.run.stepL(L, int64(len(s)-int(init))/64)
		if i := strings.Index(s[init:], p); i >= 0 {
			L.Push(glua.LNumber(int(init) + i + 1))
			L.Push(glua.LNumber(int(init) + i + len(p)))
			return 2
		}
		L.Push(glua.LNil)
		return 1
	}
	ms := e.scratchMatch(L, s, p)
	anchor := ms.p(0) == '^'
	pstart := 0
	if anchor {
		pstart = 1
	}
	for s1 := int(init); ; s1++ {
		ms.level = 0
		if res := ms.match(s1, pstart); res >= 0 {
			ms.flushSteps()
			if find {
				L.Push(glua.LNumber(s1 + 1))
				L.Push(glua.LNumber(res))
				return ms.pushCaptures(-1, -1, false) + 2
			}
			return ms.pushCaptures(s1, res, true)
		}
		if s1 >= len(s) || anchor {
			break
		}
	}
	ms.flushSteps()
	L.Push(glua.LNil)
	return 1
}

func (e *engine) strGmatch(L *glua.LState) int {
	s := checkString(L, 1)
	p := checkString(L, 2)
	pos := 0
	L.Push(L.NewFunction(func(L *glua.LState) int {
		ms := e.scratchMatch(L, s, p)
		for src := pos; src <= len(s); src++ {
			ms.level = 0
			if end := ms.match(src, 0); end >= 0 {
				ms.flushSteps()
				pos = end
				if end == src {
					pos++ // empty match: move on at least one position
				}
				return ms.pushCaptures(src, end, true)
			}
		}
		ms.flushSteps()
		pos = len(s) + 1
		return 0
	}))
	return 1
}

func (e *engine) strGsub(L *glua.LState) int {
	src := checkString(L, 1)
	p := checkString(L, 2)
	tr := L.Get(3).Type()
	maxS := optInt(L, 4, len(src)+1)
	if tr != glua.LTNumber && tr != glua.LTString && tr != glua.LTFunction && tr != glua.LTTable {
		argError(L, 3, "string/function/table expected")
	}
	ms := newMatchState(L, e.run, src, p)
	anchor := ms.p(0) == '^'
	pstart := 0
	if anchor {
		pstart = 1
	}
	var b strings.Builder
	r := e.run
	add := func(s string) {
		r.chargeL(L, int64(len(s)))
		b.WriteString(s)
	}
	n, s := 0, 0
	for n < maxS {
		ms.level = 0
		end := ms.match(s, pstart)
		if end >= 0 {
			n++
			add(e.gsubValue(L, ms, s, end))
		}
		if end >= 0 && end > s {
			s = end
		} else if s < len(src) {
			add(src[s : s+1])
			s++
		} else {
			break
		}
		if anchor {
			break
		}
	}
	add(src[s:])
	ms.flushSteps()
	L.Push(glua.LString(b.String()))
	L.Push(glua.LNumber(n))
	return 2
}

// gsubValue is add_value/add_s for the match src[s:e].
func (e *engine) gsubValue(L *glua.LState, ms *matchState, s, end int) string {
	repl := L.Get(3)
	var v glua.LValue
	switch rv := repl.(type) {
	case glua.LString, glua.LNumber:
		news := luaToString(rv)
		var b strings.Builder
		for i := 0; i < len(news); i++ {
			c := news[i]
			if c != lEsc {
				b.WriteByte(c)
				continue
			}
			i++
			var d byte // C reads the terminating NUL after a final '%'
			if i < len(news) {
				d = news[i]
			}
			switch {
			case d < '0' || d > '9':
				b.WriteByte(d)
			case d == '0':
				b.WriteString(ms.src[s:end])
			default:
				cv := ms.oneCapture(int(d-'1'), s, end)
				if !stringLike(cv) {
					luaError(L, "invalid replacement value (a "+cv.Type().String()+")")
				}
				b.WriteString(luaToString(cv))
			}
		}
		return b.String()
	case *glua.LFunction:
		top := L.GetTop()
		L.Push(rv)
		n := ms.pushCaptures(s, end, true)
		L.Call(n, 1)
		v = L.Get(-1)
		L.SetTop(top)
	case *glua.LTable:
		v = L.GetTable(rv, ms.oneCapture(0, s, end))
	}
	if v == glua.LNil || v == glua.LFalse {
		return ms.src[s:end]
	}
	if !stringLike(v) {
		luaError(L, "invalid replacement value (a "+v.Type().String()+")")
	}
	return luaToString(v)
}
