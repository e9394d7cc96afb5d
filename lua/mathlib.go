package lua

import (
	"math"

	glua "github.com/yuin/gopher-lua"
)

// rand48 is Redis's rand48.c (the drand48 LCG) that backs math.random.
// Eval resets it to rand48.c's static initial state before every run, so
// the same script yields the same sequence on every node and every time.
// Redis 7.0 never resets it, so only the first EVAL on a fresh Redis shows
// this sequence; math.randomseed(n) gives Redis's sequence for n exactly.
type rand48 struct{ x uint64 }

// rand48Init is rand48.c's initial state {X0, X1, X2}.
const rand48Init = 0x1234ABCD330E

func (r *rand48) reset() { r.x = rand48Init }

const (
	rand48A    = 0x5DEECE66D
	rand48C    = 0xB
	rand48Mask = 1<<48 - 1
	lrand48Max = math.MaxInt32
)

func (r *rand48) seed(s int32) { r.x = uint64(uint32(s))<<16 | 0x330E }

func (r *rand48) next() int32 {
	r.x = (rand48A*r.x + rand48C) & rand48Mask
	return int32(r.x >> 17)
}

func (e *engine) openMath() *glua.LTable {
	t := e.L.NewTable()
	one := func(f func(float64) float64) glua.LGFunction {
		return func(L *glua.LState) int {
			L.Push(glua.LNumber(f(checkNumber(L, 1))))
			return 1
		}
	}
	two := func(f func(float64, float64) float64) glua.LGFunction {
		return func(L *glua.LState) int {
			L.Push(glua.LNumber(f(checkNumber(L, 1), checkNumber(L, 2))))
			return 1
		}
	}
	e.register(t, map[string]glua.LGFunction{
		"abs": one(math.Abs), "acos": one(math.Acos), "asin": one(math.Asin),
		"atan": one(math.Atan), "ceil": one(math.Ceil), "cos": one(math.Cos),
		"cosh": one(math.Cosh), "exp": one(math.Exp), "floor": one(math.Floor),
		"log": one(math.Log), "log10": one(math.Log10), "sin": one(math.Sin),
		"sinh": one(math.Sinh), "sqrt": one(math.Sqrt), "tan": one(math.Tan),
		"tanh":  one(math.Tanh),
		"deg":   one(func(x float64) float64 { return x / (math.Pi / 180) }),
		"rad":   one(func(x float64) float64 { return x * (math.Pi / 180) }),
		"atan2": two(math.Atan2), "fmod": two(math.Mod), "mod": two(math.Mod),
		"pow": two(math.Pow),
		"frexp": func(L *glua.LState) int {
			m, ex := math.Frexp(checkNumber(L, 1))
			L.Push(glua.LNumber(m))
			L.Push(glua.LNumber(ex))
			return 2
		},
		"ldexp": func(L *glua.LState) int {
			L.Push(glua.LNumber(math.Ldexp(checkNumber(L, 1), checkInt(L, 2))))
			return 1
		},
		"modf": func(L *glua.LState) int {
			x := checkNumber(L, 1)
			ip, fp := math.Modf(x)
			if math.IsInf(x, 0) {
				fp = 0 // C's modf; Go gives NaN
			}
			L.Push(glua.LNumber(ip))
			L.Push(glua.LNumber(fp))
			return 2
		},
		"max": func(L *glua.LState) int {
			m := checkNumber(L, 1)
			for i := 2; i <= L.GetTop(); i++ {
				if d := checkNumber(L, i); d > m {
					m = d
				}
			}
			L.Push(glua.LNumber(m))
			return 1
		},
		"min": func(L *glua.LState) int {
			m := checkNumber(L, 1)
			for i := 2; i <= L.GetTop(); i++ {
				if d := checkNumber(L, i); d < m {
					m = d
				}
			}
			L.Push(glua.LNumber(m))
			return 1
		},
		"random":     e.mathRandom,
		"randomseed": e.mathRandomseed,
	})
	t.RawSetString("pi", glua.LNumber(math.Pi))
	t.RawSetString("huge", glua.LNumber(math.Inf(1)))
	return t
}

// mathRandom is Redis's redis_math_random.
func (e *engine) mathRandom(L *glua.LState) int {
	r := float64(e.run.rand.next()%lrand48Max) / float64(lrand48Max)
	switch L.GetTop() {
	case 0:
		L.Push(glua.LNumber(r))
	case 1:
		u := checkInt(L, 1)
		if u < 1 {
			argError(L, 1, "interval is empty")
		}
		L.Push(glua.LNumber(math.Floor(r*float64(u)) + 1))
	case 2:
		l := checkInt(L, 1)
		u := checkInt(L, 2)
		if l > u {
			argError(L, 2, "interval is empty")
		}
		span := int32(u) - int32(l) + 1 // C int arithmetic
		L.Push(glua.LNumber(math.Floor(r*float64(span)) + float64(l)))
	default:
		luaError(L, "wrong number of arguments")
	}
	return 1
}

func (e *engine) mathRandomseed(L *glua.LState) int {
	e.run.rand.seed(int32(checkInt(L, 1)))
	return 0
}
