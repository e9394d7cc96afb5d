package lua

import "strconv"

// syntaxCheck is Lua 5.1's parser (lparser.c) without code generation: it
// accepts exactly Lua 5.1's grammar and reports its errors with its texts,
// including the limits scripts can hit (200 locals, 60 upvalues, 200 syntax
// levels). It returns "" when src is valid. Its recursion is bounded by the
// syntax-level limit, so hostile input cannot exhaust the Go stack.

const (
	maxVars     = 200 // LUAI_MAXVARS
	maxUpvalues = 60  // LUAI_MAXUPVALUES
	maxCCalls   = 200 // LUAI_MAXCCALLS
)

type expKind int

const (
	vVoid expKind = iota
	vOther
	vLocal
	vUpval
	vGlobal
	vIndexed
	vCall
	vVararg
)

type upvalDesc struct {
	k    expKind
	info int
}

type blockCnt struct {
	prev      *blockCnt
	nactvar   int
	breakable bool
}

type funcState struct {
	prev        *funcState
	actvars     []string // active locals, in register order
	pending     []string // declared, not yet active
	upvalues    []upvalDesc
	upnames     []string
	bl          *blockCnt
	linedefined int
	vararg      bool
}

type parser struct {
	*lexer
	fs      *funcState
	nCcalls int
}

func syntaxCheck(src []byte, chunkid string) (msg string) {
	return syntaxCheckLevel(src, chunkid, 0)
}

// syntaxCheckLevel starts at C-call depth base (0 for EVAL, 1 for
// loadstring inside a running script).
func syntaxCheckLevel(src []byte, chunkid string, base int) (msg string) {
	defer func() {
		if r := recover(); r != nil {
			se, ok := r.(*syntaxError)
			if !ok {
				panic(r)
			}
			msg = se.msg
		}
	}()
	p := &parser{lexer: newLexer(src, chunkid), nCcalls: base}
	p.fs = &funcState{vararg: true}
	p.next()
	p.chunk()
	p.check(tkEOS)
	return ""
}

func (p *parser) enterLevel() {
	p.nCcalls++
	if p.nCcalls > maxCCalls {
		p.lexError("chunk has too many syntax levels", 0)
	}
}

func (p *parser) leaveLevel() { p.nCcalls-- }

func (p *parser) errorExpected(t int) { p.syntaxError("'" + token2str(t) + "' expected") }

func (p *parser) errorLimit(limit int, what string) {
	var msg string
	if p.fs.linedefined == 0 {
		msg = "main function has more than " + strconv.Itoa(limit) + " " + what
	} else {
		msg = "function at line " + strconv.Itoa(p.fs.linedefined) + " has more than " +
			strconv.Itoa(limit) + " " + what
	}
	p.lexError(msg, 0)
}

func (p *parser) testNext(t int) bool {
	if p.t.tok == t {
		p.next()
		return true
	}
	return false
}

func (p *parser) check(t int) {
	if p.t.tok != t {
		p.errorExpected(t)
	}
}

func (p *parser) checkNextTok(t int) { p.check(t); p.next() }

func (p *parser) checkMatch(what, who, where int) {
	if !p.testNext(what) {
		if where == p.line {
			p.errorExpected(what)
		}
		p.syntaxError("'" + token2str(what) + "' expected (to close '" + token2str(who) +
			"' at line " + strconv.Itoa(where) + ")")
	}
}

func (p *parser) checkName() string {
	p.check(tkName)
	s := p.t.str
	p.next()
	return s
}

func blockFollow(t int) bool {
	switch t {
	case tkElse, tkElseif, tkEnd, tkUntil, tkEOS:
		return true
	}
	return false
}

// --- scopes -----------------------------------------------------------------

func (p *parser) newLocal(name string) {
	fs := p.fs
	if len(fs.actvars)+len(fs.pending)+1 > maxVars {
		p.errorLimit(maxVars, "local variables")
	}
	fs.pending = append(fs.pending, name)
}

func (p *parser) adjustLocals(n int) {
	fs := p.fs
	fs.actvars = append(fs.actvars, fs.pending[:n]...)
	fs.pending = fs.pending[n:]
}

func (p *parser) enterBlock(breakable bool) {
	p.fs.bl = &blockCnt{prev: p.fs.bl, nactvar: len(p.fs.actvars), breakable: breakable}
}

func (p *parser) leaveBlock() {
	fs := p.fs
	fs.actvars = fs.actvars[:fs.bl.nactvar]
	fs.pending = fs.pending[:0]
	fs.bl = fs.bl.prev
}

func searchVar(fs *funcState, name string) int {
	for i := len(fs.actvars) - 1; i >= 0; i-- {
		if fs.actvars[i] == name {
			return i
		}
	}
	return -1
}

func (p *parser) indexUpvalue(fs *funcState, name string, k expKind, info int) int {
	for i, u := range fs.upvalues {
		if u.k == k && u.info == info {
			return i
		}
	}
	if len(fs.upvalues)+1 > maxUpvalues {
		saved := p.fs
		p.fs = fs
		defer func() { p.fs = saved }()
		p.errorLimit(maxUpvalues, "upvalues")
	}
	fs.upvalues = append(fs.upvalues, upvalDesc{k, info})
	fs.upnames = append(fs.upnames, name)
	return len(fs.upvalues) - 1
}

func (p *parser) singleVarAux(fs *funcState, name string) (expKind, int) {
	if fs == nil {
		return vGlobal, 0
	}
	if v := searchVar(fs, name); v >= 0 {
		return vLocal, v
	}
	k, info := p.singleVarAux(fs.prev, name)
	if k == vGlobal {
		return vGlobal, 0
	}
	return vUpval, p.indexUpvalue(fs, name, k, info)
}

func (p *parser) singleVar() expKind {
	k, _ := p.singleVarAux(p.fs, p.checkName())
	return k
}

// --- statements -------------------------------------------------------------

func (p *parser) chunk() {
	p.enterLevel()
	last := false
	for !last && !blockFollow(p.t.tok) {
		last = p.statement()
		p.testNext(';')
	}
	p.leaveLevel()
}

func (p *parser) block() {
	p.enterBlock(false)
	p.chunk()
	p.leaveBlock()
}

func (p *parser) statement() bool {
	line := p.line
	switch p.t.tok {
	case tkIf:
		p.ifStat(line)
	case tkWhile:
		p.next()
		p.expr()
		p.checkNextTok(tkDo)
		p.enterBlock(true)
		p.block()
		p.leaveBlock()
		p.checkMatch(tkEnd, tkWhile, line)
	case tkDo:
		p.next()
		p.block()
		p.checkMatch(tkEnd, tkDo, line)
	case tkFor:
		p.forStat(line)
	case tkRepeat:
		p.enterBlock(true)
		p.enterBlock(false)
		p.next()
		p.chunk()
		p.checkMatch(tkUntil, tkRepeat, line)
		p.expr()
		p.leaveBlock()
		p.leaveBlock()
	case tkFunction:
		p.next()
		p.singleVar()
		needSelf := false
		for p.t.tok == '.' {
			p.next()
			p.checkName()
		}
		if p.t.tok == ':' {
			needSelf = true
			p.next()
			p.checkName()
		}
		p.body(needSelf, line)
	case tkLocal:
		p.next()
		if p.testNext(tkFunction) {
			p.newLocal(p.checkName())
			p.adjustLocals(1)
			p.body(false, p.line)
		} else {
			p.localStat()
		}
	case tkReturn:
		p.next()
		if !blockFollow(p.t.tok) && p.t.tok != ';' {
			p.exprList()
		}
		return true
	case tkBreak:
		p.next()
		bl := p.fs.bl
		for bl != nil && !bl.breakable {
			bl = bl.prev
		}
		if bl == nil {
			p.syntaxError("no loop to break")
		}
		return true
	default:
		p.exprStat()
	}
	return false
}

func (p *parser) ifStat(line int) {
	p.next()
	p.expr()
	p.checkNextTok(tkThen)
	p.block()
	for p.t.tok == tkElseif {
		p.next()
		p.expr()
		p.checkNextTok(tkThen)
		p.block()
	}
	if p.testNext(tkElse) {
		p.block()
	}
	p.checkMatch(tkEnd, tkIf, line)
}

func (p *parser) forStat(line int) {
	p.enterBlock(true)
	p.next()
	name := p.checkName()
	switch p.t.tok {
	case '=':
		for _, n := range []string{"(for index)", "(for limit)", "(for step)", name} {
			p.newLocal(n)
		}
		p.next()
		p.expr()
		p.checkNextTok(',')
		p.expr()
		if p.testNext(',') {
			p.expr()
		}
		p.forBody(1)
	case ',', tkIn:
		nvars := 1
		for _, n := range []string{"(for generator)", "(for state)", "(for control)", name} {
			p.newLocal(n)
		}
		for p.testNext(',') {
			p.newLocal(p.checkName())
			nvars++
		}
		p.checkNextTok(tkIn)
		p.exprList()
		p.forBody(nvars)
	default:
		p.syntaxError("'=' or 'in' expected")
	}
	p.checkMatch(tkEnd, tkFor, line)
	p.leaveBlock()
}

func (p *parser) forBody(nvars int) {
	p.adjustLocals(3)
	p.checkNextTok(tkDo)
	p.enterBlock(false)
	p.adjustLocals(nvars)
	p.block()
	p.leaveBlock()
}

func (p *parser) localStat() {
	n := 0
	for {
		p.newLocal(p.checkName())
		n++
		if !p.testNext(',') {
			break
		}
	}
	if p.testNext('=') {
		p.exprList()
	}
	p.adjustLocals(n)
}

func (p *parser) exprStat() {
	k := p.primaryExp()
	if k != vCall {
		p.assignment(k, 1)
	}
}

func (p *parser) assignment(k expKind, nvars int) {
	if k < vLocal || k > vIndexed {
		p.syntaxError("syntax error")
	}
	if p.testNext(',') {
		k2 := p.primaryExp()
		if nvars > maxCCalls-p.nCcalls {
			p.errorLimit(maxCCalls-p.nCcalls, "variables in assignment")
		}
		p.assignment(k2, nvars+1)
		return
	}
	p.checkNextTok('=')
	p.exprList()
}

func (p *parser) body(needSelf bool, line int) {
	fs := &funcState{prev: p.fs, linedefined: line}
	p.fs = fs
	p.checkNextTok('(')
	if needSelf {
		p.newLocal("self")
		p.adjustLocals(1)
	}
	n := 0
	if p.t.tok != ')' {
		for {
			switch p.t.tok {
			case tkName:
				p.newLocal(p.checkName())
				n++
			case tkDots:
				p.next()
				p.newLocal("arg") // LUA_COMPAT_VARARG
				n++
				fs.vararg = true
			default:
				p.syntaxError("<name> or '...' expected")
			}
			if fs.vararg || !p.testNext(',') {
				break
			}
		}
	}
	p.adjustLocals(n)
	p.checkNextTok(')')
	p.chunk()
	p.checkMatch(tkEnd, tkFunction, line)
	p.fs = fs.prev
}

// --- expressions ------------------------------------------------------------

func (p *parser) exprList() {
	p.expr()
	for p.testNext(',') {
		p.expr()
	}
}

func (p *parser) expr() expKind { return p.subExpr(0) }

var binPriority = map[int][2]int{
	'+': {6, 6}, '-': {6, 6}, '*': {7, 7}, '/': {7, 7}, '%': {7, 7},
	'^': {10, 9}, tkConcat: {5, 4},
	tkNe: {3, 3}, tkEq: {3, 3}, '<': {3, 3}, tkLe: {3, 3}, '>': {3, 3}, tkGe: {3, 3},
	tkAnd: {2, 2}, tkOr: {1, 1},
}

const unaryPriority = 8

// subExpr returns the kind of a lone operand (vOther once an operator
// applies), which is all exprStat and assignment need.
func (p *parser) subExpr(limit int) expKind {
	p.enterLevel()
	var k expKind
	if t := p.t.tok; t == tkNot || t == '-' || t == '#' {
		p.next()
		p.subExpr(unaryPriority)
		k = vOther
	} else {
		k = p.simpleExp()
	}
	for {
		pr, ok := binPriority[p.t.tok]
		if !ok || pr[0] <= limit {
			break
		}
		p.next()
		p.subExpr(pr[1])
		k = vOther
	}
	p.leaveLevel()
	return k
}

func (p *parser) simpleExp() expKind {
	switch p.t.tok {
	case tkNumber, tkString, tkNil, tkTrue, tkFalse:
		p.next()
		return vOther
	case tkDots:
		if !p.fs.vararg {
			p.syntaxError("cannot use '...' outside a vararg function")
		}
		p.next()
		return vVararg
	case '{':
		p.constructor()
		return vOther
	case tkFunction:
		p.next()
		p.body(false, p.line)
		return vOther
	}
	return p.primaryExp()
}

func (p *parser) primaryExp() expKind {
	var k expKind
	switch p.t.tok {
	case '(':
		line := p.line
		p.next()
		p.expr()
		p.checkMatch(')', '(', line)
		k = vOther
	case tkName:
		k = p.singleVar()
	default:
		p.syntaxError("unexpected symbol")
	}
	for {
		switch p.t.tok {
		case '.':
			p.next()
			p.checkName()
			k = vIndexed
		case '[':
			p.next()
			p.expr()
			p.checkNextTok(']')
			k = vIndexed
		case ':':
			p.next()
			p.checkName()
			p.funcArgs()
			k = vCall
		case '(', tkString, '{':
			p.funcArgs()
			k = vCall
		default:
			return k
		}
	}
}

func (p *parser) funcArgs() {
	line := p.line
	switch p.t.tok {
	case '(':
		if line != p.lastline {
			p.syntaxError("ambiguous syntax (function call x new statement)")
		}
		p.next()
		if p.t.tok != ')' {
			p.exprList()
		}
		p.checkMatch(')', '(', line)
	case '{':
		p.constructor()
	case tkString:
		p.next()
	default:
		p.syntaxError("function arguments expected")
	}
}

func (p *parser) constructor() {
	line := p.line
	p.checkNextTok('{')
	for p.t.tok != '}' {
		switch p.t.tok {
		case tkName:
			p.lookahead()
			if p.ahead.tok != '=' {
				p.expr()
			} else {
				p.next()
				p.checkNextTok('=')
				p.expr()
			}
		case '[':
			p.next()
			p.expr()
			p.checkNextTok(']')
			p.checkNextTok('=')
			p.expr()
		default:
			p.expr()
		}
		if !p.testNext(',') && !p.testNext(';') {
			break
		}
	}
	p.checkMatch('}', '{', line)
}
