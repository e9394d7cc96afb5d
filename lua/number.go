package lua

import (
	"math"
	"strconv"
	"strings"

	glua "github.com/yuin/gopher-lua"
)

// Number <-> string conversions with C semantics. gopher-lua prints numbers
// with Go's shortest representation ("0.3333333333333333"); Lua 5.1 uses
// "%.14g" ("0.33333333333333"), and the difference shows up in tostring,
// `..`, string.format("%s") and everything built on them.

// fmtNumber is Lua's LUAI_NUMFFORMAT "%.14g".
func fmtNumber(f float64) string {
	return fmtG(f, 14)
}

// fmtDouble17 is Redis's "%.17g" (redis.call arguments, {double=...}).
func fmtDouble17(f float64) string {
	return fmtG(f, 17)
}

func fmtG(f float64, prec int) string {
	switch {
	case math.IsInf(f, 1):
		return "inf"
	case math.IsInf(f, -1):
		return "-inf"
	case f != f:
		if math.Signbit(f) {
			return "-nan"
		}
		return "nan"
	}
	if f == math.Trunc(f) && math.Abs(f) < pow10[prec] {
		// Fast path for integers, which %.<prec>g prints in full below
		// 10^prec.
		if f == 0 && math.Signbit(f) {
			return "-0"
		}
		return strconv.FormatInt(int64(f), 10)
	}
	return strconv.FormatFloat(f, 'g', prec, 64)
}

var pow10 = func() [18]float64 {
	var t [18]float64
	t[0] = 1
	for i := 1; i < len(t); i++ {
		t[i] = t[i-1] * 10
	}
	return t
}()

// luaToString converts a string or number like lua_tostring; other values
// give "".
func luaToString(v glua.LValue) string {
	switch v := v.(type) {
	case glua.LString:
		return string(v)
	case glua.LNumber:
		return fmtNumber(float64(v))
	}
	return ""
}

func isSpace(c byte) bool {
	return c == ' ' || (c >= '\t' && c <= '\r')
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c|0x20 >= 'a' && c|0x20 <= 'f')
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// cNumberStart does what C's number parsers (strtod, strtoul) do first:
// skip leading white space and take one sign. It returns the index after
// the sign, and whether the sign was '-'.
func cNumberStart(s string) (int, bool) {
	i := 0
	for i < len(s) && isSpace(s[i]) {
		i++
	}
	neg := false
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		neg = s[i] == '-'
		i++
	}
	return i, neg
}

// strtod parses the longest prefix of s accepted by glibc's strtod in the C
// locale and returns its value and length (0 when nothing was parsed).
// Parsing stops at a NUL byte, as C strings do: no part of a match accepts
// one. (So strtod need not look for one, which in cjson.decode would scan
// the rest of the document for every number.)
func strtod(s string) (float64, int) {
	i, neg := cNumberStart(s)
	rest := s[i:]
	sign := func(f float64) float64 {
		if neg {
			return -f
		}
		return f
	}
	switch {
	case hasPrefixFold(rest, "infinity"):
		return sign(math.Inf(1)), i + 8
	case hasPrefixFold(rest, "inf"):
		return sign(math.Inf(1)), i + 3
	case hasPrefixFold(rest, "nan"):
		n := 3
		if n < len(rest) && rest[n] == '(' {
			j := n + 1
			for j < len(rest) && (isDigit(rest[j]) || rest[j]|0x20 >= 'a' && rest[j]|0x20 <= 'z' || rest[j] == '_') {
				j++
			}
			if j < len(rest) && rest[j] == ')' {
				n = j + 1
			}
		}
		return math.Copysign(math.NaN(), sign(1)), i + n
	}
	if len(rest) >= 2 && rest[0] == '0' && rest[1]|0x20 == 'x' {
		if v, n, ok := parseHexFloat(rest[2:]); ok {
			return sign(v), i + 2 + n
		}
		return sign(0), i + 1 // just the "0"
	}
	j, digits := 0, 0
	for j < len(rest) && isDigit(rest[j]) {
		j, digits = j+1, digits+1
	}
	if j < len(rest) && rest[j] == '.' {
		j++
		for j < len(rest) && isDigit(rest[j]) {
			j, digits = j+1, digits+1
		}
	}
	if digits == 0 {
		return 0, 0
	}
	if j < len(rest) && rest[j]|0x20 == 'e' {
		k := j + 1
		if k < len(rest) && (rest[k] == '+' || rest[k] == '-') {
			k++
		}
		if k < len(rest) && isDigit(rest[k]) {
			for k < len(rest) && isDigit(rest[k]) {
				k++
			}
			j = k
		}
	}
	f, err := strconv.ParseFloat(rest[:j], 64)
	if err != nil && !isRangeErr(err) {
		return 0, 0
	}
	return sign(f), i + j
}

func isRangeErr(err error) bool {
	ne, ok := err.(*strconv.NumError)
	return ok && ne.Err == strconv.ErrRange
}

func parseHexFloat(s string) (float64, int, bool) {
	j, digits := 0, 0
	for j < len(s) && isHex(s[j]) {
		j, digits = j+1, digits+1
	}
	mant := s[:j]
	if j < len(s) && s[j] == '.' {
		j++
		for j < len(s) && isHex(s[j]) {
			j, digits = j+1, digits+1
		}
		mant = s[:j]
	}
	if digits == 0 {
		return 0, 0, false
	}
	exp := "p0"
	if j < len(s) && s[j]|0x20 == 'p' {
		k := j + 1
		if k < len(s) && (s[k] == '+' || s[k] == '-') {
			k++
		}
		if k < len(s) && isDigit(s[k]) {
			for k < len(s) && isDigit(s[k]) {
				k++
			}
			exp = s[j:k]
			j = k
		}
	}
	if strings.HasSuffix(mant, ".") {
		mant += "0"
	}
	if strings.HasPrefix(mant, ".") {
		mant = "0" + mant
	}
	f, err := strconv.ParseFloat("0x"+mant+exp, 64)
	if err != nil && !isRangeErr(err) {
		return 0, 0, false
	}
	return f, j, true
}

func hasPrefixFold(s, p string) bool {
	return len(s) >= len(p) && strings.EqualFold(s[:len(p)], p)
}

// str2number is luaO_str2d: the whole string (up to a NUL) must be a
// number, surrounded by optional whitespace.
func str2number(s string) (float64, bool) {
	if i := strings.IndexByte(s, 0); i >= 0 {
		s = s[:i]
	}
	f, n := strtod(s)
	if n == 0 {
		return 0, false
	}
	for n < len(s) && isSpace(s[n]) {
		n++
	}
	return f, n == len(s)
}

// checkNumber is luaL_checknumber.
func checkNumber(L *glua.LState, n int) float64 {
	switch v := L.Get(n).(type) {
	case glua.LNumber:
		return float64(v)
	case glua.LString:
		if f, ok := str2number(string(v)); ok {
			return f
		}
	}
	typeError(L, n, "number")
	return 0
}

func optNumber(L *glua.LState, n int, def float64) float64 {
	if L.Get(n) == glua.LNil {
		return def
	}
	return checkNumber(L, n)
}

// checkInteger is luaL_checkinteger (truncating cast, as on x86-64).
func checkInteger(L *glua.LState, n int) int64 {
	return toInteger(checkNumber(L, n))
}

// checkInt is luaL_checkint: the integer cast again to a C int.
func checkInt(L *glua.LState, n int) int {
	return int(int32(checkInteger(L, n)))
}

func optInt(L *glua.LState, n int, def int) int {
	if L.Get(n) == glua.LNil {
		return def
	}
	return checkInt(L, n)
}

// checkString is luaL_checklstring: strings, and numbers converted with %.14g.
func checkString(L *glua.LState, n int) string {
	switch v := L.Get(n).(type) {
	case glua.LString:
		return string(v)
	case glua.LNumber:
		return fmtNumber(float64(v))
	}
	typeError(L, n, "string")
	return ""
}

func optString(L *glua.LState, n int, def string) string {
	if L.Get(n) == glua.LNil {
		return def
	}
	return checkString(L, n)
}

func checkTable(L *glua.LState, n int) *glua.LTable {
	if t, ok := L.Get(n).(*glua.LTable); ok {
		return t
	}
	typeError(L, n, "table")
	return nil
}

func checkAny(L *glua.LState, n int) {
	if n > L.GetTop() {
		argError(L, n, "value expected")
	}
}
