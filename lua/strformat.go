package lua

import (
	"fmt"
	"math"
	"strings"

	glua "github.com/yuin/gopher-lua"
)

// string.format after Lua 5.1's str_format, which hands each item to C's
// sprintf. Go's fmt differs from C in places (strings are padded by runes,
// %g defaults to shortest, Inf/NaN spelling, unsigned conversions), so the
// items are rendered with C's rules here.

const fmtFlags = "-+ #0"

func (e *engine) strFormat(L *glua.LState) int {
	top := L.GetTop()
	arg := 1
	f := checkString(L, 1)
	var b strings.Builder
	r := e.run
	for i := 0; i < len(f); {
		c := f[i]
		if c != '%' {
			b.WriteByte(c)
			i++
			continue
		}
		i++
		if i < len(f) && f[i] == '%' {
			b.WriteByte('%')
			i++
			continue
		}
		arg++
		if arg > top {
			argError(L, arg, "no value")
		}
		spec, conv, next := scanFormat(L, f, i)
		i = next
		var item string
		switch conv {
		case 'c':
			item = cPad(spec, string([]byte{byte(int32(toInteger(checkNumber(L, arg))))}))
			item = item[:cStrlen(item)] // sprintf's output is a C string
		case 'd', 'i':
			item = fmt.Sprintf("%"+spec+"d", toInteger(checkNumber(L, arg)))
		case 'o', 'u', 'x', 'X':
			v := toUnsigned(checkNumber(L, arg))
			verb := map[byte]string{'o': "o", 'u': "d", 'x': "x", 'X': "X"}[conv]
			if v == 0 && conv != 'o' {
				spec = strings.ReplaceAll(spec, "#", "") // C prints no 0x for zero
			}
			item = fmt.Sprintf("%"+spec+verb, v)
		case 'e', 'E', 'f', 'g', 'G':
			item = cFloat(spec, conv, checkNumber(L, arg))
		case 'q':
			item = quoted(checkString(L, arg))
		case 's':
			s := checkString(L, arg)
			if !strings.Contains(spec, ".") && len(s) >= 100 {
				item = s // Lua keeps long strings as they are
			} else {
				item = cPad(spec, s[:cStrlen(s)])
			}
		default:
			luaError(L, "invalid option '%"+string(noNul(conv))+"' to 'format'")
		}
		r.chargeL(L, int64(len(item)))
		b.WriteString(item)
	}
	e.pushString(L, b.String())
	return 1
}

func noNul(c byte) []byte {
	if c == 0 {
		return nil
	}
	return []byte{c}
}

func cStrlen(s string) int {
	if i := strings.IndexByte(s, 0); i >= 0 {
		return i
	}
	return len(s)
}

// scanFormat is Lua's scanformat: flags, at most two width digits, an
// optional precision of at most two digits. It returns the spec (without
// '%' and conversion), the conversion byte (0 at the end) and the index
// after it.
func scanFormat(L *glua.LState, f string, i int) (string, byte, int) {
	at := func(k int) byte {
		if k < len(f) {
			return f[k]
		}
		return 0
	}
	p := i
	for at(p) != 0 && strings.IndexByte(fmtFlags, at(p)) >= 0 {
		p++
	}
	if p-i >= len(fmtFlags)+1 {
		luaError(L, "invalid format (repeated flags)")
	}
	if isDigit(at(p)) {
		p++
	}
	if isDigit(at(p)) {
		p++
	}
	if at(p) == '.' {
		p++
		if isDigit(at(p)) {
			p++
		}
		if isDigit(at(p)) {
			p++
		}
	}
	if isDigit(at(p)) {
		luaError(L, "invalid format (width or precision too long)")
	}
	end := p
	if end > len(f) {
		end = len(f)
	}
	return f[i:end], at(p), p + 1
}

// toUnsigned is C's (unsigned long) cast of a double on x86-64.
func toUnsigned(f float64) uint64 {
	if f >= 9223372036854775808.0 && f < 18446744073709551616.0 {
		return uint64(f-9223372036854775808.0) ^ (1 << 63)
	}
	return uint64(toInteger(f))
}

type cSpec struct {
	minus, plus, space, hash, zero bool
	width, prec                    int // -1 when absent
}

func parseSpec(spec string) cSpec {
	s := cSpec{width: -1, prec: -1}
	i := 0
	for ; i < len(spec) && strings.IndexByte(fmtFlags, spec[i]) >= 0; i++ {
		switch spec[i] {
		case '-':
			s.minus = true
		case '+':
			s.plus = true
		case ' ':
			s.space = true
		case '#':
			s.hash = true
		case '0':
			s.zero = true
		}
	}
	n, j := 0, i
	for ; j < len(spec) && isDigit(spec[j]); j++ {
		n = n*10 + int(spec[j]-'0')
	}
	if j > i {
		s.width = n
	}
	if j < len(spec) && spec[j] == '.' {
		n = 0
		for j++; j < len(spec) && isDigit(spec[j]); j++ {
			n = n*10 + int(spec[j]-'0')
		}
		s.prec = n
	}
	return s
}

// cPad applies %s-style precision (bytes) and width (bytes) to s.
func cPad(spec string, s string) string {
	sp := parseSpec(spec)
	if sp.prec >= 0 && len(s) > sp.prec {
		s = s[:sp.prec]
	}
	if pad := sp.width - len(s); pad > 0 {
		if sp.minus {
			return s + strings.Repeat(" ", pad)
		}
		return strings.Repeat(" ", pad) + s
	}
	return s
}

// cFloat renders %e %E %f %g %G like glibc.
func cFloat(spec string, conv byte, x float64) string {
	if math.IsInf(x, 0) || x != x {
		sp := parseSpec(spec)
		s := "inf"
		if x != x {
			s = "nan"
		}
		if conv == 'E' || conv == 'G' {
			s = strings.ToUpper(s)
		}
		switch {
		case math.Signbit(x):
			s = "-" + s
		case sp.plus:
			s = "+" + s
		case sp.space:
			s = " " + s
		}
		if pad := sp.width - len(s); pad > 0 {
			// glibc pads inf/nan with spaces even with the 0 flag.
			if sp.minus {
				return s + strings.Repeat(" ", pad)
			}
			return strings.Repeat(" ", pad) + s
		}
		return s
	}
	if (conv == 'g' || conv == 'G') && !strings.Contains(spec, ".") {
		spec += ".6" // C's default precision; Go's %g would be shortest
	}
	return fmt.Sprintf("%"+spec+string(conv), x)
}

// quoted is addquoted (%q).
func quoted(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '"', '\\', '\n':
			b.WriteByte('\\')
			b.WriteByte(c)
		case '\r':
			b.WriteString(`\r`)
		case 0:
			b.WriteString(`\000`)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}
