package lua

import (
	"math"
	"math/bits"

	glua "github.com/yuin/gopher-lua"
)

// The bit library (LuaBitOp 1.0 as bundled with Redis).

// bitArg is LuaBitOp's barg: the number plus 2^52+2^51, whose low 32 bits
// are the integer rounded to nearest-even and wrapped to 32 bits.
func bitArg(L *glua.LState, n int) uint32 {
	var f float64
	switch v := L.Get(n).(type) {
	case glua.LNumber:
		f = float64(v)
	case glua.LString:
		x, ok := str2number(string(v))
		if !ok {
			typeError(L, n, "number")
		}
		f = x
	default:
		typeError(L, n, "number")
	}
	return uint32(math.Float64bits(f + 6755399441055744.0))
}

func bitRet(L *glua.LState, b uint32) int {
	L.Push(glua.LNumber(int32(b)))
	return 1
}

func (e *engine) openBit() *glua.LTable {
	t := e.L.NewTable()
	fold := func(op func(a, b uint32) uint32) glua.LGFunction {
		return func(L *glua.LState) int {
			b := bitArg(L, 1)
			for i := L.GetTop(); i > 1; i-- {
				b = op(b, bitArg(L, i))
			}
			return bitRet(L, b)
		}
	}
	shift := func(op func(b, n uint32) uint32) glua.LGFunction {
		return func(L *glua.LState) int {
			b := bitArg(L, 1)
			n := bitArg(L, 2) & 31
			return bitRet(L, op(b, n))
		}
	}
	e.register(t, map[string]glua.LGFunction{
		"tobit":  func(L *glua.LState) int { return bitRet(L, bitArg(L, 1)) },
		"bnot":   func(L *glua.LState) int { return bitRet(L, ^bitArg(L, 1)) },
		"band":   fold(func(a, b uint32) uint32 { return a & b }),
		"bor":    fold(func(a, b uint32) uint32 { return a | b }),
		"bxor":   fold(func(a, b uint32) uint32 { return a ^ b }),
		"lshift": shift(func(b, n uint32) uint32 { return b << n }),
		"rshift": shift(func(b, n uint32) uint32 { return b >> n }),
		"arshift": shift(func(b, n uint32) uint32 {
			return uint32(int32(b) >> n)
		}),
		"rol": shift(func(b, n uint32) uint32 { return bits.RotateLeft32(b, int(n)) }),
		"ror": shift(func(b, n uint32) uint32 { return bits.RotateLeft32(b, -int(n)) }),
		"bswap": func(L *glua.LState) int {
			b := bitArg(L, 1)
			return bitRet(L, b>>24|(b>>8)&0xff00|(b&0xff00)<<8|b<<24)
		},
		"tohex": func(L *glua.LState) int {
			b := bitArg(L, 1)
			n := int32(8)
			if L.GetTop() >= 2 {
				n = int32(bitArg(L, 2))
			}
			digits := "0123456789abcdef"
			if n < 0 {
				n = -n
				digits = "0123456789ABCDEF"
			}
			if n > 8 || n < 0 { // n < 0: -MinInt32 (C would crash)
				n = 8
			}
			buf := make([]byte, n)
			for i := n - 1; i >= 0; i-- {
				buf[i] = digits[b&15]
				b >>= 4
			}
			L.Push(glua.LString(buf))
			return 1
		},
	})
	return t
}
