package lua

import (
	"strconv"
	"strings"

	glua "github.com/yuin/gopher-lua"
)

// The table library after Lua 5.1's ltablib.c. sort is Lua's own quicksort
// (auxsort), not Go's: with a comparator that has ties, or an inconsistent
// one, the resulting order is part of what a script observes.

func (e *engine) openTable() *glua.LTable {
	t := e.L.NewTable()
	e.register(t, map[string]glua.LGFunction{
		"concat": e.tConcat, "foreach": e.tForeach, "foreachi": e.tForeachi,
		"getn": e.tGetn, "insert": e.tInsert, "maxn": e.tMaxn,
		"remove": e.tRemove, "setn": e.tSetn, "sort": e.tSort,
	})
	return t
}

func (e *engine) tGetn(L *glua.LState) int {
	L.Push(glua.LNumber(checkTable(L, 1).Len()))
	return 1
}

func (e *engine) tSetn(L *glua.LState) int {
	checkTable(L, 1)
	luaError(L, "'setn' is obsolete")
	return 0
}

func (e *engine) tMaxn(L *glua.LState) int {
	t := checkTable(L, 1)
	max := 0.0
	for _, k := range e.tableOrder(t) {
		if n, ok := k.(glua.LNumber); ok && float64(n) > max {
			max = float64(n)
		}
	}
	L.Push(glua.LNumber(max))
	return 1
}

func (e *engine) tForeachi(L *glua.LState) int {
	t := checkTable(L, 1)
	if _, ok := L.Get(2).(*glua.LFunction); !ok {
		typeError(L, 2, "function")
	}
	f := L.Get(2)
	n := t.Len()
	for i := 1; i <= n; i++ {
		L.Push(f)
		L.Push(glua.LNumber(i))
		L.Push(t.RawGetInt(i))
		L.Call(2, 1)
		if L.Get(-1) != glua.LNil {
			return 1
		}
		L.Pop(1)
	}
	return 0
}

func (e *engine) tForeach(L *glua.LState) int {
	t := checkTable(L, 1)
	if _, ok := L.Get(2).(*glua.LFunction); !ok {
		typeError(L, 2, "function")
	}
	f := L.Get(2)
	for _, k := range e.tableOrder(t) {
		v := t.RawGet(k)
		if v == glua.LNil {
			continue
		}
		L.Push(f)
		L.Push(k)
		L.Push(v)
		L.Call(2, 1)
		if L.Get(-1) != glua.LNil {
			return 1
		}
		L.Pop(1)
	}
	return 0
}

func (e *engine) setInt(L *glua.LState, t *glua.LTable, i int, v glua.LValue) {
	e.checkWritable(L, t)
	if v != glua.LNil {
		e.chargeSet(L, t, glua.LNumber(i))
	}
	t.RawSetInt(i, v)
}

func (e *engine) tInsert(L *glua.LState) int {
	t := checkTable(L, 1)
	last := t.Len() + 1
	var pos int
	switch L.GetTop() {
	case 2:
		pos = last
	case 3:
		pos = checkInt(L, 2)
		if pos > last {
			last = pos
		}
		for i := last; i > pos; i-- {
			e.setInt(L, t, i, t.RawGetInt(i-1))
		}
	default:
		luaError(L, "wrong number of arguments to 'insert'")
	}
	e.setInt(L, t, pos, L.Get(-1))
	return 0
}

func (e *engine) tRemove(L *glua.LState) int {
	t := checkTable(L, 1)
	last := t.Len()
	pos := optInt(L, 2, last)
	if !(1 <= pos && pos <= last) {
		return 0
	}
	v := t.RawGetInt(pos)
	for ; pos < last; pos++ {
		e.setInt(L, t, pos, t.RawGetInt(pos+1))
	}
	e.setInt(L, t, last, glua.LNil)
	L.Push(v)
	return 1
}

func (e *engine) tConcat(L *glua.LState) int {
	sep := optString(L, 2, "")
	t := checkTable(L, 1)
	i := optInt(L, 3, 1)
	var last int
	if L.Get(4) == glua.LNil {
		last = t.Len()
	} else {
		last = checkInt(L, 4)
	}
	// Size the result first, so the budget refuses it before we build it.
	var total int64
	for k := i; k <= last; k++ {
		v := t.RawGetInt(k)
		if !stringLike(v) {
			luaError(L, "invalid value ("+v.Type().String()+") at index "+strconv.Itoa(k)+" in table for 'concat'")
		}
		total += int64(len(luaToString(v)))
		if k < last {
			total += int64(len(sep))
		}
	}
	e.run.chargeL(L, total)
	var b strings.Builder
	b.Grow(int(total))
	for k := i; k <= last; k++ {
		b.WriteString(luaToString(t.RawGetInt(k)))
		if k < last {
			b.WriteString(sep)
		}
	}
	L.Push(glua.LString(b.String()))
	return 1
}

// --- sort ---------------------------------------------------------------

type sorter struct {
	e    *engine
	L    *glua.LState
	t    *glua.LTable
	comp glua.LValue // nil or the comparison function
}

func (e *engine) tSort(L *glua.LState) int {
	t := checkTable(L, 1)
	n := t.Len()
	if L.Get(2) != glua.LNil {
		if _, ok := L.Get(2).(*glua.LFunction); !ok {
			typeError(L, 2, "function")
		}
	}
	s := &sorter{e: e, L: L, t: t, comp: L.Get(2)}
	s.auxsort(1, n)
	return 0
}

func (s *sorter) get(i int) glua.LValue { return s.t.RawGetInt(i) }

func (s *sorter) set(i int, v glua.LValue) {
	s.e.checkWritable(s.L, s.t)
	s.t.RawSetInt(i, v)
}

func (s *sorter) less(a, b glua.LValue) bool {
	s.e.run.stepL(s.L, 1)
	if s.comp != glua.LNil {
		s.L.Push(s.comp)
		s.L.Push(a)
		s.L.Push(b)
		s.L.Call(2, 1)
		res := glua.LVAsBool(s.L.Get(-1))
		s.L.Pop(1)
		return res
	}
	return luaLessThan(s.L, a, b)
}

// luaLessThan is lua_lessthan: numbers, strings (byte order, as strcoll in
// the C locale), else the __lt metamethod, else Lua's error, raised from C
// (no position).
func luaLessThan(L *glua.LState, a, b glua.LValue) bool {
	if x, ok := a.(glua.LNumber); ok {
		if y, ok := b.(glua.LNumber); ok {
			return x < y
		}
	}
	if x, ok := a.(glua.LString); ok {
		if y, ok := b.(glua.LString); ok {
			return x < y
		}
	}
	if a.Type() == b.Type() {
		mt1 := L.GetMetaField(a, "__lt")
		if mt1 != glua.LNil && L.GetMetaField(b, "__lt") == mt1 {
			L.Push(mt1)
			L.Push(a)
			L.Push(b)
			L.Call(2, 1)
			res := glua.LVAsBool(L.Get(-1))
			L.Pop(1)
			return res
		}
	}
	t1, t2 := a.Type().String(), b.Type().String()
	if t1[2] == t2[2] {
		rawError(L, "attempt to compare two "+t1+" values")
	}
	rawError(L, "attempt to compare "+t1+" with "+t2)
	return false
}

func (s *sorter) auxsort(l, u int) {
	for l < u {
		// sort a[l], a[(l+u)/2] and a[u]
		al, au := s.get(l), s.get(u)
		if s.less(au, al) {
			s.set(l, au)
			s.set(u, al)
		}
		if u-l == 1 {
			break
		}
		i := (l + u) / 2
		ai, al := s.get(i), s.get(l)
		if s.less(ai, al) {
			s.set(i, al)
			s.set(l, ai)
		} else {
			au := s.get(u)
			if s.less(au, ai) {
				s.set(i, au)
				s.set(u, ai)
			}
		}
		if u-l == 2 {
			break
		}
		p := s.get(i)
		s.set(i, s.get(u-1))
		s.set(u-1, p)
		i, j := l, u-1
		for {
			var ai, aj glua.LValue
			for {
				i++
				ai = s.get(i)
				if !s.less(ai, p) {
					break
				}
				if i > u {
					luaError(s.L, "invalid order function for sorting")
				}
			}
			for {
				j--
				aj = s.get(j)
				if !s.less(p, aj) {
					break
				}
				if j < l {
					luaError(s.L, "invalid order function for sorting")
				}
			}
			if j < i {
				break
			}
			s.set(i, aj)
			s.set(j, ai)
		}
		x, y := s.get(u-1), s.get(i)
		s.set(u-1, y)
		s.set(i, x)
		if i-l < u-i {
			j, i, l = l, i-1, i+1
		} else {
			j, i, u = i+1, u, i-1
		}
		s.auxsort(j, i)
	}
}
