package lua

import (
	"strconv"
	"strings"

	glua "github.com/yuin/gopher-lua"
)

// cjson.decode after lua-cjson 2.1.0's tokenizer and recursive parser, with
// its error texts ("Expected value but found invalid token at character 1").
// The input is a C string to lua-cjson: a NUL byte ends it.

type jsonTok int

const (
	tObjBegin jsonTok = iota
	tObjEnd
	tArrBegin
	tArrEnd
	tString
	tNumber
	tBoolean
	tNull
	tColon
	tComma
	tEnd
	tWhitespace
	tError
	tUnknown
)

var jsonTokNames = [...]string{"T_OBJ_BEGIN", "T_OBJ_END", "T_ARR_BEGIN", "T_ARR_END",
	"T_STRING", "T_NUMBER", "T_BOOLEAN", "T_NULL", "T_COLON", "T_COMMA", "T_END",
	"T_WHITESPACE", "T_ERROR", "T_UNKNOWN"}

var ch2token = func() [256]jsonTok {
	var t [256]jsonTok
	for i := range t {
		t[i] = tError
	}
	t['{'], t['}'], t['['], t[']'] = tObjBegin, tObjEnd, tArrBegin, tArrEnd
	t[','], t[':'], t[0] = tComma, tColon, tEnd
	t[' '], t['\t'], t['\n'], t['\r'] = tWhitespace, tWhitespace, tWhitespace, tWhitespace
	for _, c := range "fiInNt\"+-0123456789" {
		t[c] = tUnknown
	}
	return t
}()

type jsonToken struct {
	typ   jsonTok
	index int
	str   string
	num   float64
	bool  bool
	err   string
}

type jsonParser struct {
	e     *engine
	L     *glua.LState
	cfg   *cjsonCfg
	data  string
	ptr   int
	depth int
	steps int64

	// Members of the objects and arrays being parsed (see object); the
	// backing arrays are the engine's, reused from call to call.
	keys  []string
	vals  []glua.LValue
	arena arena
}

func (p *jsonParser) at(i int) byte {
	if i < len(p.data) {
		return p.data[i]
	}
	return 0
}

func (e *engine) cjDecode(L *glua.LState) int {
	if L.GetTop() != 1 {
		argError(L, 1, "expected 1 argument")
	}
	s := checkString(L, 1)
	if len(s) >= 2 && (s[0] == 0 || s[1] == 0) {
		luaError(L, "JSON parser does not support UTF-16 or UTF-32")
	}
	if i := strings.IndexByte(s, 0); i >= 0 {
		s = s[:i]
	}
	r := e.run
	r.chargeL(L, int64(len(s)))
	p := &jsonParser{e: e, L: L, cfg: r.cjson(), data: s, keys: e.jsonKeys, vals: e.jsonVals}
	e.jsonKeys, e.jsonVals = nil, nil // taken until release
	defer p.release()
	// Estimates (quotes and brackets inside strings count too) to size the
	// arena's first chunks. Keys are mostly boxed by shape templates (see
	// buildRecord), so strings directly followed by ':' are not counted.
	p.arena.wantStrs = strings.Count(s, `"`)/2 - strings.Count(s, `":`)
	p.arena.wantTabs = strings.Count(s, "{") + strings.Count(s, "[")
	var tok jsonToken
	p.next(&tok)
	v := p.value(&tok)
	p.next(&tok)
	if tok.typ != tEnd {
		p.fail("the end", &tok)
	}
	r.stepL(L, p.steps)
	L.Push(v)
	return 1
}

func (p *jsonParser) fail(expected string, tok *jsonToken) {
	found := jsonTokNames[tok.typ]
	if tok.typ == tError {
		found = tok.err
	}
	luaError(p.L, "Expected "+expected+" but found "+found+" at character "+strconv.Itoa(tok.index+1))
}

func (p *jsonParser) next(tok *jsonToken) {
	p.steps++
	for {
		tok.typ = ch2token[p.at(p.ptr)]
		if tok.typ != tWhitespace {
			break
		}
		p.ptr++
	}
	tok.index = p.ptr
	switch tok.typ {
	case tError:
		tok.err = "invalid token"
		return
	case tEnd:
		return
	case tUnknown:
	default:
		p.ptr++
		return
	}
	ch := p.at(p.ptr)
	rest := p.data[min(p.ptr, len(p.data)):]
	switch {
	case ch == '"':
		p.stringToken(tok)
	case ch == '-' || (ch >= '0' && ch <= '9'):
		if !p.cfg.decodeInvalid && p.invalidNumber() {
			p.tokenError(tok, "invalid number")
			return
		}
		p.numberToken(tok)
	case strings.HasPrefix(rest, "true"):
		tok.typ, tok.bool = tBoolean, true
		p.ptr += 4
	case strings.HasPrefix(rest, "false"):
		tok.typ, tok.bool = tBoolean, false
		p.ptr += 5
	case strings.HasPrefix(rest, "null"):
		tok.typ = tNull
		p.ptr += 4
	case p.cfg.decodeInvalid && p.invalidNumber():
		p.numberToken(tok)
	default:
		p.tokenError(tok, "invalid token")
	}
}

func (p *jsonParser) tokenError(tok *jsonToken, msg string) {
	tok.typ = tError
	tok.index = p.ptr
	tok.err = msg
}

// invalidNumber is json_is_invalid_number: numbers JSON forbids (hex,
// leading zeros, leading '+', inf, nan) but strtod would accept.
func (p *jsonParser) invalidNumber() bool {
	i := p.ptr
	if p.at(i) == '+' {
		return true
	}
	if p.at(i) == '-' {
		i++
	}
	if p.at(i) == '0' {
		c := p.at(i + 1)
		return c|0x20 == 'x' || (c >= '0' && c <= '9')
	}
	if p.at(i) <= '9' {
		return false
	}
	rest := p.data[min(i, len(p.data)):]
	return hasPrefixFold(rest, "inf") || hasPrefixFold(rest, "nan")
}

func (p *jsonParser) numberToken(tok *jsonToken) {
	v, n := strtod(p.data[p.ptr:])
	if n == 0 {
		p.tokenError(tok, "invalid number")
		return
	}
	tok.typ, tok.num = tNumber, v
	p.ptr += n
}

var escape2char = func() [256]byte {
	var t [256]byte
	t['"'], t['\\'], t['/'] = '"', '\\', '/'
	t['b'], t['t'], t['n'], t['f'], t['r'] = '\b', '\t', '\n', '\f', '\r'
	t['u'] = 'u'
	return t
}()

func (p *jsonParser) stringToken(tok *jsonToken) {
	p.ptr++ // opening quote
	// Fast path: no escapes before the closing quote, so the token is a
	// slice of the input (strings are immutable; nothing is copied).
	for i := p.ptr; i < len(p.data); i++ {
		c := p.data[i]
		if c == '"' {
			tok.typ, tok.str = tString, p.data[p.ptr:i]
			p.ptr = i + 1
			return
		}
		if c == '\\' {
			break
		}
	}
	var b strings.Builder
	for {
		ch := p.at(p.ptr)
		if ch == '"' {
			break
		}
		if ch == 0 {
			p.tokenError(tok, "unexpected end of string")
			return
		}
		if ch == '\\' {
			esc := escape2char[p.at(p.ptr+1)]
			if esc == 'u' {
				if !p.unicodeEscape(&b) {
					p.tokenError(tok, "invalid unicode escape code")
					return
				}
				continue
			}
			if esc == 0 {
				p.tokenError(tok, "invalid escape code")
				return
			}
			p.ptr++
			ch = esc
		}
		b.WriteByte(ch)
		p.ptr++
	}
	p.ptr++ // closing quote
	tok.typ, tok.str = tString, b.String()
}

func (p *jsonParser) hex4(i int) int {
	v := 0
	for k := 0; k < 4; k++ {
		d := digitVal(p.at(i + k))
		if d > 15 {
			return -1
		}
		v = v<<4 | d
	}
	return v
}

func (p *jsonParser) unicodeEscape(b *strings.Builder) bool {
	cp := p.hex4(p.ptr + 2)
	if cp < 0 {
		return false
	}
	escLen := 6
	if cp&0xF800 == 0xD800 {
		if cp&0x400 != 0 {
			return false
		}
		if p.at(p.ptr+6) != '\\' || p.at(p.ptr+7) != 'u' {
			return false
		}
		low := p.hex4(p.ptr + 8)
		if low < 0 || low&0xFC00 != 0xDC00 {
			return false
		}
		cp = ((cp&0x3FF)<<10 | low&0x3FF) + 0x10000
		escLen = 12
	}
	// codepoint_to_utf8, which also encodes lone values like U+D800 as-is.
	switch {
	case cp <= 0x7F:
		b.WriteByte(byte(cp))
	case cp <= 0x7FF:
		b.WriteByte(byte(cp>>6) | 0xC0)
		b.WriteByte(byte(cp&0x3F) | 0x80)
	case cp <= 0xFFFF:
		b.WriteByte(byte(cp>>12) | 0xE0)
		b.WriteByte(byte(cp>>6&0x3F) | 0x80)
		b.WriteByte(byte(cp&0x3F) | 0x80)
	default:
		b.WriteByte(byte(cp>>18) | 0xF0)
		b.WriteByte(byte(cp>>12&0x3F) | 0x80)
		b.WriteByte(byte(cp>>6&0x3F) | 0x80)
		b.WriteByte(byte(cp&0x3F) | 0x80)
	}
	p.ptr += escLen
	return true
}

func (p *jsonParser) descend() {
	p.depth++
	if p.depth > p.cfg.decodeMaxDepth {
		luaError(p.L, "Found too many nested data structures ("+strconv.Itoa(p.depth)+") at character "+strconv.Itoa(p.ptr))
	}
	p.e.run.chargeL(p.L, tableCost)
}

func (p *jsonParser) value(tok *jsonToken) glua.LValue {
	switch tok.typ {
	case tString:
		return p.arena.str(tok.str)
	case tNumber:
		return p.arena.num(tok.num)
	case tBoolean:
		return glua.LBool(tok.bool)
	case tNull:
		return p.e.null
	case tObjBegin:
		return p.object()
	case tArrBegin:
		return p.array()
	}
	p.fail("value", tok)
	return nil
}

// object and array collect their members on the parser's stacks first, so
// that each table is built in one go at its final size (see buildRecord).
// Nested values push above the enclosing ones and are popped before the
// enclosing table is built.
func (p *jsonParser) object() glua.LValue {
	p.descend()
	kbase, vbase := len(p.keys), len(p.vals)
	var tok jsonToken
	p.next(&tok)
	if tok.typ != tObjEnd {
		for {
			if tok.typ != tString {
				p.fail("object key string", &tok)
			}
			key := tok.str
			p.next(&tok)
			if tok.typ != tColon {
				p.fail("colon", &tok)
			}
			p.next(&tok)
			v := p.value(&tok)
			p.keys = append(p.keys, key)
			p.vals = append(p.vals, v)
			p.e.run.chargeL(p.L, hashCost)
			p.next(&tok)
			if tok.typ == tObjEnd {
				break
			}
			if tok.typ != tComma {
				p.fail("comma or object end", &tok)
			}
			p.next(&tok)
		}
	}
	p.depth--
	t := p.e.buildRecord(p.L, &p.arena, p.keys[kbase:], p.vals[vbase:])
	p.pop(kbase, vbase)
	return t
}

func (p *jsonParser) array() glua.LValue {
	p.descend()
	base := len(p.vals)
	var tok jsonToken
	p.next(&tok)
	if tok.typ != tArrEnd {
		for {
			v := p.value(&tok)
			p.vals = append(p.vals, v)
			p.e.run.chargeL(p.L, slotCost)
			p.next(&tok)
			if tok.typ == tArrEnd {
				break
			}
			if tok.typ != tComma {
				p.fail("comma or array end", &tok)
			}
			p.next(&tok)
		}
	}
	p.depth--
	t := buildArray(p.L, &p.arena, p.vals[base:])
	p.pop(len(p.keys), base)
	return t
}

// pop truncates the stacks to nkeys keys and nvals values.
func (p *jsonParser) pop(nkeys, nvals int) {
	clear(p.vals[nvals:]) // the stacks outlive the run: hold no values
	p.vals = p.vals[:nvals]
	p.keys = p.keys[:nkeys]
}

// maxKeptStack bounds the stacks an engine keeps between cjson calls (the
// decoder's and the encoder's).
const maxKeptStack = 4096

// release hands the (empty) stacks back to the engine. After an error they
// still hold the members of the tables being built: drop those first.
func (p *jsonParser) release() {
	clear(p.keys)
	clear(p.vals)
	if cap(p.vals) <= maxKeptStack && cap(p.keys) <= maxKeptStack {
		p.e.jsonKeys, p.e.jsonVals = p.keys[:0], p.vals[:0]
	} else {
		p.e.jsonKeys, p.e.jsonVals = nil, nil
	}
}
