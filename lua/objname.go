package lua

import (
	glua "github.com/yuin/gopher-lua"
)

// PUC Lua names the variable involved in a runtime error ("attempt to call
// local 'x' (a nil value)", "bad argument #1 to 'rep'") by symbolically
// executing the function's bytecode up to the failing instruction
// (getobjname/symbexec in ldebug.c). gopher-lua compiles to the same Lua 5.1
// instruction set (plus MOVEN, GETTABLEKS, SETTABLEKS), so the same analysis
// on its bytecode yields the same names in all the usual cases.

// setsA[op] is Lua's testAMode: the instruction writes register A.
var setsA = func() [glua.OP_NOP + 1]bool {
	var t [glua.OP_NOP + 1]bool
	for _, op := range []int{
		glua.OP_MOVE, glua.OP_MOVEN, glua.OP_LOADK, glua.OP_LOADBOOL, glua.OP_LOADNIL,
		glua.OP_GETUPVAL, glua.OP_GETGLOBAL, glua.OP_GETTABLE, glua.OP_GETTABLEKS,
		glua.OP_NEWTABLE, glua.OP_SELF, glua.OP_ADD, glua.OP_SUB, glua.OP_MUL,
		glua.OP_DIV, glua.OP_MOD, glua.OP_POW, glua.OP_UNM, glua.OP_NOT, glua.OP_LEN,
		glua.OP_CONCAT, glua.OP_TEST, glua.OP_TESTSET, glua.OP_CALL, glua.OP_TAILCALL,
		glua.OP_FORLOOP, glua.OP_FORPREP, glua.OP_CLOSURE, glua.OP_VARARG,
	} {
		t[op] = true
	}
	return t
}()

// symbexec returns the index of the last instruction before lastpc that
// wrote reg, following forward jumps that do not pass lastpc, or -1.
func symbexec(p *glua.FunctionProto, lastpc, reg int) int {
	last := -1
	code := p.Code
	for pc := 0; pc < lastpc && pc < len(code); pc++ {
		i := code[pc]
		op := int(i >> opShift)
		if op > glua.OP_NOP {
			return -1
		}
		a := opA(i)
		if setsA[op] && a == reg {
			last = pc
		}
		switch op {
		case glua.OP_LOADNIL:
			if a <= reg && reg <= opB(i) {
				last = pc
			}
		case glua.OP_SELF:
			if reg == a+1 {
				last = pc
			}
		case glua.OP_TFORLOOP:
			if reg >= a+2 {
				last = pc
			}
		case glua.OP_CALL, glua.OP_TAILCALL:
			if reg >= a {
				last = pc
			}
		case glua.OP_JMP, glua.OP_FORLOOP, glua.OP_FORPREP:
			if dest := pc + 1 + opSBx(i); pc < dest && dest <= lastpc {
				pc += opSBx(i)
			}
		case glua.OP_SETLIST:
			if opC(i) == 0 {
				pc++ // the next word is the block number, not an instruction
			}
		case glua.OP_CLOSURE:
			if bx := opBx(i); bx < len(p.FunctionPrototypes) {
				pc += int(p.FunctionPrototypes[bx].NumUpvalues)
			}
		}
	}
	return last
}

// getobjname is ldebug.c's getobjname for register reg of a Lua function at
// instruction pc: kind is "local", "global", "field", "upvalue", "method" or "".
func getobjname(fn *glua.LFunction, pc, reg int) (kind, name string) {
	if fn == nil || fn.IsG || fn.Proto == nil {
		return "", ""
	}
	p := fn.Proto
	for depth := 0; depth < 16; depth++ {
		if n, ok := localName(p, reg+1, pc); ok {
			return "local", n
		}
		at := symbexec(p, pc, reg)
		if at < 0 {
			return "", ""
		}
		i := p.Code[at]
		switch int(i >> opShift) {
		case glua.OP_GETGLOBAL:
			if s, ok := constString(p, opBx(i)); ok {
				return "global", s
			}
			return "", ""
		case glua.OP_MOVE, glua.OP_MOVEN:
			if b := opB(i); b < opA(i) {
				reg = b // name of the source register
				continue
			}
			return "", ""
		case glua.OP_GETTABLE, glua.OP_GETTABLEKS:
			return "field", kname(p, opC(i))
		case glua.OP_GETUPVAL:
			if b := opB(i); b < len(p.DbgUpvalues) {
				return "upvalue", p.DbgUpvalues[b]
			}
			return "upvalue", "?"
		case glua.OP_SELF:
			return "method", kname(p, opC(i))
		}
		return "", ""
	}
	return "", ""
}

func constString(p *glua.FunctionProto, k int) (string, bool) {
	if k >= 0 && k < len(p.Constants) {
		if s, ok := p.Constants[k].(glua.LString); ok {
			return string(s), true
		}
	}
	return "", false
}

func kname(p *glua.FunctionProto, c int) string {
	if c&bitRK != 0 {
		if s, ok := constString(p, c&^bitRK); ok {
			return s
		}
	}
	return "?"
}

// varinfo is ldebug.c's varinfo for register reg of Lua frame f:
// ` local 'x'` or "".
func varinfo(f frame, reg int) string {
	if f == nil {
		return ""
	}
	fn := frameFn(f)
	kind, name := getobjname(fn, framePc(f)-1, reg)
	if kind == "" {
		return ""
	}
	return " " + kind + " '" + name + "'"
}

// calledName is getfuncname: the name (and kind) by which the Go function
// running in frame gf was called from its Lua caller, as used by
// luaL_argerror ("bad argument #1 to 'rep'").
func calledName(gf frame) (kind, name string) {
	if gf == nil {
		return "", ""
	}
	caller := frameParent(gf)
	if caller == nil {
		return "", ""
	}
	fn := frameFn(caller)
	if fn == nil || fn.IsG || fn.Proto == nil {
		return "", ""
	}
	pc := framePc(caller) - 1
	if pc < 0 || pc >= len(fn.Proto.Code) {
		return "", ""
	}
	i := fn.Proto.Code[pc]
	switch int(i >> opShift) {
	case glua.OP_CALL, glua.OP_TAILCALL, glua.OP_TFORLOOP:
		return getobjname(fn, pc, opA(i))
	}
	return "", ""
}

// localName is luaF_getlocalname: the name of the n-th active local at pc.
// (gopher-lua's LFunction.LocalName tests startpc < pc, one instruction
// later than Lua, which loses the name on a local's first use.)
func localName(p *glua.FunctionProto, n, pc int) (string, bool) {
	for _, l := range p.DbgLocals {
		if l.StartPc > pc {
			break
		}
		if pc < l.EndPc {
			n--
			if n == 0 {
				return l.Name, true
			}
		}
	}
	return "", false
}
