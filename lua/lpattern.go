package lua

import (
	"strings"

	glua "github.com/yuin/gopher-lua"
)

// A port of Lua 5.1's pattern matcher (lstrlib.c), so that find, match,
// gmatch and gsub behave and fail exactly like Redis's, and so that the work
// is charged to the step budget: a pathological pattern cannot spin in Go
// code where the VM's instruction counter does not see it.

const (
	lEsc          = '%'
	specials      = "^$*+?.([%-"
	maxCaptures   = 32
	capUnfinished = -1
	capPosition   = -2
	// maxMatchDepth bounds Go recursion; Lua 5.1 has no such limit (it
	// relies on the C stack), so only absurd patterns are affected.
	maxMatchDepth = 20000
)

type capture struct {
	init int
	len  int
}

type matchState struct {
	L       *glua.LState
	r       *run
	src     string
	pat     string // truncated at the first NUL, as Lua sees a C string
	level   int
	depth   int
	steps   int64
	capture [maxCaptures]capture
}

func newMatchState(L *glua.LState, r *run, src, pat string) *matchState {
	ms := initMatchState(L, r, src, pat)
	return &ms
}

func initMatchState(L *glua.LState, r *run, src, pat string) matchState {
	if i := strings.IndexByte(pat, 0); i >= 0 {
		pat = pat[:i]
	}
	return matchState{L: L, r: r, src: src, pat: pat}
}

// scratchMatch is newMatchState for callers that are done with the state
// before any Lua code can run (find, match, one gmatch step; not gsub,
// whose replacement function may itself match): they share the engine's
// (~600 bytes) instead of allocating one per call.
func (e *engine) scratchMatch(L *glua.LState, src, pat string) *matchState {
	if e.ms == nil {
		e.ms = new(matchState)
	}
	*e.ms = initMatchState(L, e.run, src, pat)
	return e.ms
}

// p returns the pattern byte at i, or 0 past the end (the C terminator).
func (ms *matchState) p(i int) byte {
	if i < len(ms.pat) {
		return ms.pat[i]
	}
	return 0
}

func (ms *matchState) step() {
	ms.steps++
	if ms.steps&1023 == 0 {
		ms.r.stepL(ms.L, 1024)
	}
}

func (ms *matchState) flushSteps() {
	ms.r.stepL(ms.L, ms.steps&1023)
	ms.steps = 0
}

func (ms *matchState) classEnd(p int) int {
	c := ms.p(p)
	p++
	switch c {
	case lEsc:
		if ms.p(p) == 0 {
			luaError(ms.L, "malformed pattern (ends with '%')")
		}
		return p + 1
	case '[':
		if ms.p(p) == '^' {
			p++
		}
		for {
			if ms.p(p) == 0 {
				luaError(ms.L, "malformed pattern (missing ']')")
			}
			c := ms.p(p)
			p++
			if c == lEsc && ms.p(p) != 0 {
				p++
			}
			if ms.p(p) == ']' {
				break
			}
		}
		return p + 1
	}
	return p
}

func isalpha(c int) bool  { return (c|0x20) >= 'a' && (c|0x20) <= 'z' }
func iscntrl(c int) bool  { return c < 32 || c == 127 }
func isdigitc(c int) bool { return c >= '0' && c <= '9' }
func islower(c int) bool  { return c >= 'a' && c <= 'z' }
func isupper(c int) bool  { return c >= 'A' && c <= 'Z' }
func ispunct(c int) bool {
	return c > 32 && c < 127 && !isalpha(c) && !isdigitc(c)
}
func isspacec(c int) bool { return c == ' ' || (c >= '\t' && c <= '\r') }
func isxdigit(c int) bool { return isdigitc(c) || ((c|0x20) >= 'a' && (c|0x20) <= 'f') }

func matchClass(c, cl int) bool {
	var res bool
	lower := cl
	if isupper(cl) {
		lower = cl | 0x20
	}
	switch lower {
	case 'a':
		res = isalpha(c)
	case 'c':
		res = iscntrl(c)
	case 'd':
		res = isdigitc(c)
	case 'l':
		res = islower(c)
	case 'p':
		res = ispunct(c)
	case 's':
		res = isspacec(c)
	case 'u':
		res = isupper(c)
	case 'w':
		res = isalpha(c) || isdigitc(c)
	case 'x':
		res = isxdigit(c)
	case 'z':
		res = c == 0
	default:
		return cl == c
	}
	if islower(cl) {
		return res
	}
	return !res
}

// matchBracketClass: p points at '[', ec at the closing ']'.
func (ms *matchState) matchBracketClass(c, p, ec int) bool {
	sig := true
	if ms.p(p+1) == '^' {
		sig = false
		p++
	}
	for p++; p < ec; p++ {
		if ms.p(p) == lEsc {
			p++
			if matchClass(c, int(ms.p(p))) {
				return sig
			}
		} else if ms.p(p+1) == '-' && p+2 < ec {
			p += 2
			if int(ms.p(p-2)) <= c && c <= int(ms.p(p)) {
				return sig
			}
		} else if int(ms.p(p)) == c {
			return sig
		}
	}
	return !sig
}

func (ms *matchState) singleMatch(c, p, ep int) bool {
	switch ms.p(p) {
	case '.':
		return true
	case lEsc:
		return matchClass(c, int(ms.p(p+1)))
	case '[':
		return ms.matchBracketClass(c, p, ep-1)
	}
	return int(ms.p(p)) == c
}

// match returns the end of the match of pattern[p:] at src[s:], or -1.
func (ms *matchState) match(s, p int) int {
	ms.depth++
	if ms.depth > maxMatchDepth {
		luaError(ms.L, "pattern too complex")
	}
	defer func() { ms.depth-- }()
	for {
		ms.step()
		switch ms.p(p) {
		case '(':
			if ms.p(p+1) == ')' {
				return ms.startCapture(s, p+2, capPosition)
			}
			return ms.startCapture(s, p+1, capUnfinished)
		case ')':
			return ms.endCapture(s, p+1)
		case 0:
			return s
		case '$':
			if ms.p(p+1) == 0 {
				if s == len(ms.src) {
					return s
				}
				return -1
			}
		case lEsc:
			switch ms.p(p + 1) {
			case 'b':
				s = ms.matchBalance(s, p+2)
				if s < 0 {
					return -1
				}
				p += 4
				continue
			case 'f':
				p += 2
				if ms.p(p) != '[' {
					luaError(ms.L, "missing '[' after '%f' in pattern")
				}
				ep := ms.classEnd(p)
				prev := 0
				if s > 0 {
					prev = int(ms.src[s-1])
				}
				cur := 0
				if s < len(ms.src) {
					cur = int(ms.src[s])
				}
				if ms.matchBracketClass(prev, p, ep-1) || !ms.matchBracketClass(cur, p, ep-1) {
					return -1
				}
				p = ep
				continue
			default:
				if d := ms.p(p + 1); d >= '0' && d <= '9' {
					s = ms.matchCapture(s, int(d))
					if s < 0 {
						return -1
					}
					p += 2
					continue
				}
			}
		}
		// default: a single pattern item
		ep := ms.classEnd(p)
		m := s < len(ms.src) && ms.singleMatch(int(ms.src[s]), p, ep)
		switch ms.p(ep) {
		case '?':
			if m {
				if res := ms.match(s+1, ep+1); res >= 0 {
					return res
				}
			}
			p = ep + 1
			continue
		case '*':
			return ms.maxExpand(s, p, ep)
		case '+':
			if !m {
				return -1
			}
			return ms.maxExpand(s+1, p, ep)
		case '-':
			return ms.minExpand(s, p, ep)
		}
		if !m {
			return -1
		}
		s++
		p = ep
	}
}

func (ms *matchState) matchBalance(s, p int) int {
	if ms.p(p) == 0 || ms.p(p+1) == 0 {
		luaError(ms.L, "unbalanced pattern")
	}
	if s >= len(ms.src) || ms.src[s] != ms.p(p) {
		return -1
	}
	b, e := ms.p(p), ms.p(p+1)
	cont := 1
	for s++; s < len(ms.src); s++ {
		ms.step()
		if ms.src[s] == e {
			if cont--; cont == 0 {
				return s + 1
			}
		} else if ms.src[s] == b {
			cont++
		}
	}
	return -1
}

func (ms *matchState) maxExpand(s, p, ep int) int {
	i := 0
	for s+i < len(ms.src) && ms.singleMatch(int(ms.src[s+i]), p, ep) {
		ms.step()
		i++
	}
	for ; i >= 0; i-- {
		if res := ms.match(s+i, ep+1); res >= 0 {
			return res
		}
	}
	return -1
}

func (ms *matchState) minExpand(s, p, ep int) int {
	for {
		if res := ms.match(s, ep+1); res >= 0 {
			return res
		}
		if s < len(ms.src) && ms.singleMatch(int(ms.src[s]), p, ep) {
			s++
		} else {
			return -1
		}
	}
}

func (ms *matchState) startCapture(s, p, what int) int {
	if ms.level >= maxCaptures {
		luaError(ms.L, "too many captures")
	}
	ms.capture[ms.level] = capture{init: s, len: what}
	ms.level++
	res := ms.match(s, p)
	if res < 0 {
		ms.level--
	}
	return res
}

func (ms *matchState) endCapture(s, p int) int {
	l := -1
	for lv := ms.level - 1; lv >= 0; lv-- {
		if ms.capture[lv].len == capUnfinished {
			l = lv
			break
		}
	}
	if l < 0 {
		luaError(ms.L, "invalid pattern capture")
	}
	ms.capture[l].len = s - ms.capture[l].init
	res := ms.match(s, p)
	if res < 0 {
		ms.capture[l].len = capUnfinished
	}
	return res
}

func (ms *matchState) checkCapture(l int) int {
	l -= '1'
	if l < 0 || l >= ms.level || ms.capture[l].len == capUnfinished {
		luaError(ms.L, "invalid capture index")
	}
	return l
}

func (ms *matchState) matchCapture(s, l int) int {
	l = ms.checkCapture(l)
	n := ms.capture[l].len
	init := ms.capture[l].init
	if len(ms.src)-s >= n && ms.src[init:init+n] == ms.src[s:s+n] {
		return s + n
	}
	return -1
}

// oneCapture is push_onecapture for capture i of the match src[s:e].
func (ms *matchState) oneCapture(i, s, e int) glua.LValue {
	if i >= ms.level {
		if i == 0 {
			return glua.LString(ms.src[s:e])
		}
		luaError(ms.L, "invalid capture index")
	}
	c := ms.capture[i]
	switch c.len {
	case capUnfinished:
		luaError(ms.L, "unfinished capture")
	case capPosition:
		return glua.LNumber(c.init + 1)
	}
	return glua.LString(ms.src[c.init : c.init+c.len])
}

// pushCaptures is push_captures; whole reports whether s/e are a match
// (find passes none).
func (ms *matchState) pushCaptures(s, e int, whole bool) int {
	n := ms.level
	if n == 0 && whole {
		n = 1
	}
	if ms.L.GetTop()+n > luaMaxCStack {
		luaError(ms.L, "stack overflow (too many captures)")
	}
	for i := 0; i < n; i++ {
		ms.L.Push(ms.oneCapture(i, s, e))
	}
	return n
}
