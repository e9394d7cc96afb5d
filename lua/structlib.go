package lua

import (
	"math"
	"strconv"
	"strings"

	glua "github.com/yuin/gopher-lua"
)

// The struct library (Roberto Ierusalimschy's struct.c, as in Redis), with
// the sizes and alignment of x86-64 Linux: short 2, int 4, long and size_t 8,
// native little-endian, maximum alignment 8.

const (
	structMaxIntSize = 32
	structMaxAlign   = 8
)

type structHeader struct {
	little bool
	align  int
}

type structFmt struct {
	L   *glua.LState
	s   string // the format, up to its first NUL
	pos int
}

func (f *structFmt) peek() byte {
	if f.pos < len(f.s) {
		return f.s[f.pos]
	}
	return 0
}

func (f *structFmt) getnum(df int) int {
	if !isDigit(f.peek()) {
		return df
	}
	a := 0
	for isDigit(f.peek()) {
		d := int(f.peek() - '0')
		if a > (math.MaxInt32/10) || a*10 > (math.MaxInt32-d) {
			luaError(f.L, "integral size overflow")
		}
		a = a*10 + d
		f.pos++
	}
	return a
}

func (f *structFmt) optsize(opt byte) int {
	switch opt {
	case 'B', 'b':
		return 1
	case 'H', 'h':
		return 2
	case 'L', 'l', 'T', 'd':
		return 8
	case 'f':
		return 4
	case 'x':
		return 1
	case 'c':
		return f.getnum(1)
	case 'i', 'I':
		sz := f.getnum(4)
		if sz > structMaxIntSize {
			luaError(f.L, "integral size "+strconv.Itoa(sz)+" is larger than limit of "+strconv.Itoa(structMaxIntSize))
		}
		return sz
	}
	return 0
}

func gettoalign(n int, h *structHeader, opt byte, size int) int {
	if size == 0 || opt == 'c' {
		return 0
	}
	if size > h.align {
		size = h.align
	}
	return (size - (n & (size - 1))) & (size - 1)
}

func (f *structFmt) controloptions(opt byte, h *structHeader) {
	switch opt {
	case ' ':
	case '>':
		h.little = false
	case '<':
		h.little = true
	case '!':
		a := f.getnum(structMaxAlign)
		if a <= 0 || a&(a-1) != 0 {
			luaError(f.L, "alignment "+strconv.Itoa(a)+" is not a power of 2")
		}
		h.align = a
	default:
		argError(f.L, 1, "invalid format option '"+string([]byte{opt})+"'")
	}
}

func newStructFmt(L *glua.LState) (*structFmt, *structHeader) {
	s := checkString(L, 1)
	if i := strings.IndexByte(s, 0); i >= 0 {
		s = s[:i]
	}
	return &structFmt{L: L, s: s}, &structHeader{little: true, align: 1}
}

func (e *engine) openStruct() *glua.LTable {
	t := e.L.NewTable()
	e.register(t, map[string]glua.LGFunction{
		"pack": e.structPack, "unpack": e.structUnpack, "size": e.structSize,
	})
	return t
}

func putUint(b []byte, v uint64, size int, little bool) []byte {
	buf := make([]byte, size)
	for i := 0; i < size; i++ {
		j := size - 1 - i
		if little {
			j = i
		}
		buf[j] = byte(v)
		v >>= 8
	}
	return append(b, buf...)
}

func (e *engine) structPack(L *glua.LState) int {
	f, h := newStructFmt(L)
	arg := 2
	var b []byte
	for f.pos < len(f.s) {
		opt := f.s[f.pos]
		f.pos++
		size := f.optsize(opt)
		toalign := gettoalign(len(b), h, opt, size)
		b = append(b, make([]byte, toalign)...)
		switch opt {
		case 'b', 'B', 'h', 'H', 'l', 'L', 'T', 'i', 'I':
			n := checkNumber(L, arg)
			arg++
			var v uint64
			if n < 0 {
				v = uint64(toInteger(n))
			} else {
				v = toUnsigned(n)
			}
			b = putUint(b, v, size, h.little)
		case 'x':
			b = append(b, 0)
		case 'f':
			b = putUint(b, uint64(math.Float32bits(float32(checkNumber(L, arg)))), 4, h.little)
			arg++
		case 'd':
			b = putUint(b, math.Float64bits(checkNumber(L, arg)), 8, h.little)
			arg++
		case 'c', 's':
			s := checkString(L, arg)
			arg++
			if size == 0 {
				size = len(s)
			}
			if len(s) < size {
				argError(L, arg, "string too short") // struct.c reports arg+1
			}
			b = append(b, s[:size]...)
			if opt == 's' {
				b = append(b, 0)
			}
		default:
			f.controloptions(opt, h)
		}
		e.run.chargeL(L, int64(size+toalign))
	}
	L.Push(glua.LString(b))
	return 1
}

func getUint(d string, little bool) uint64 {
	var v uint64
	for i := 0; i < len(d); i++ {
		j := i
		if little {
			j = len(d) - 1 - i
		}
		v = v<<8 | uint64(d[j])
	}
	return v
}

func (e *engine) structUnpack(L *glua.LState) int {
	f, h := newStructFmt(L)
	data := checkString(L, 2)
	pos := optInteger(L, 3, 1)
	if pos <= 0 {
		argError(L, 3, "offset must be 1 or greater")
	}
	p := int(pos - 1)
	n := 0
	for f.pos < len(f.s) {
		opt := f.s[f.pos]
		f.pos++
		size := f.optsize(opt)
		p += gettoalign(p, h, opt, size)
		if !(size <= len(data) && p <= len(data)-size) {
			argError(L, 2, "data string too short")
		}
		if L.GetTop()+2 > luaMaxCStack {
			luaError(L, "stack overflow (too many results)")
		}
		switch opt {
		case 'b', 'B', 'h', 'H', 'l', 'L', 'T', 'i', 'I':
			v := getUint(data[p:p+size], h.little)
			if opt >= 'a' && opt <= 'z' && size > 0 && size < 8 {
				if mask := ^uint64(0) << (size*8 - 1); v&mask != 0 {
					v |= mask // sign extension
				}
			}
			if opt >= 'a' && opt <= 'z' {
				L.Push(glua.LNumber(float64(int64(v))))
			} else {
				L.Push(glua.LNumber(float64(v)))
			}
			n++
		case 'x':
		case 'f':
			L.Push(glua.LNumber(math.Float32frombits(uint32(getUint(data[p:p+4], h.little)))))
			n++
		case 'd':
			L.Push(glua.LNumber(math.Float64frombits(getUint(data[p:p+8], h.little))))
			n++
		case 'c':
			if size == 0 {
				if n == 0 || !numberLike(L.Get(-1)) {
					luaError(L, "format 'c0' needs a previous size")
				}
				size = int(luaToNumber(L.Get(-1)))
				L.Pop(1)
				n--
				if !(size <= len(data) && p <= len(data)-size) {
					argError(L, 2, "data string too short")
				}
			}
			L.Push(glua.LString(data[p : p+size]))
			n++
		case 's':
			i := strings.IndexByte(data[p:], 0)
			if i < 0 {
				luaError(L, "unfinished string in data")
			}
			size = i + 1
			L.Push(glua.LString(data[p : p+i]))
			n++
		default:
			f.controloptions(opt, h)
		}
		p += size
	}
	L.Push(glua.LNumber(p + 1))
	return n + 1
}

func (e *engine) structSize(L *glua.LState) int {
	f, h := newStructFmt(L)
	p := 0
	for f.pos < len(f.s) {
		opt := f.s[f.pos]
		f.pos++
		size := f.optsize(opt)
		p += gettoalign(p, h, opt, size)
		if opt == 's' {
			argError(L, 1, "option 's' has no fixed size")
		} else if opt == 'c' && size == 0 {
			argError(L, 1, "option 'c0' has no fixed size")
		}
		if !isAlnum(int(opt)) {
			f.controloptions(opt, h)
		}
		p += size
	}
	L.Push(glua.LNumber(p))
	return 1
}
