package lua

import (
	"strconv"
	"strings"
)

// A port of Lua 5.1's lexer (llex.c), used by syntaxCheck. It keeps Lua's
// line counting and "near" texts so compile errors read exactly like
// Redis's.

const (
	tkAnd = 257 + iota
	tkBreak
	tkDo
	tkElse
	tkElseif
	tkEnd
	tkFalse
	tkFor
	tkFunction
	tkIf
	tkIn
	tkLocal
	tkNil
	tkNot
	tkOr
	tkRepeat
	tkReturn
	tkThen
	tkTrue
	tkUntil
	tkWhile
	tkConcat
	tkDots
	tkEq
	tkGe
	tkLe
	tkNe
	tkNumber
	tkName
	tkString
	tkEOS
)

var luaTokens = []string{"and", "break", "do", "else", "elseif", "end", "false", "for",
	"function", "if", "in", "local", "nil", "not", "or", "repeat", "return", "then",
	"true", "until", "while", "..", "...", "==", ">=", "<=", "~=", "<number>", "<name>",
	"<string>", "<eof>"}

var reserved = func() map[string]int {
	m := make(map[string]int)
	for i, s := range luaTokens[:tkWhile-tkAnd+1] {
		m[s] = tkAnd + i
	}
	return m
}()

// syntaxError is raised (panicked) by the checker and recovered in
// syntaxCheck.
type syntaxError struct{ msg string }

type token struct {
	tok int
	str string // names and strings
}

type lexer struct {
	src      []byte
	pos      int
	current  int // -1 at the end (EOZ)
	line     int
	lastline int
	chunkid  string
	buf      []byte // Lua's luaZ_buffer: text of the last token lexed
	t, ahead token
}

const eoz = -1

func newLexer(src []byte, chunkid string) *lexer {
	lx := &lexer{src: src, line: 1, lastline: 1, chunkid: chunkid}
	lx.ahead.tok = tkEOS
	lx.nextChar()
	return lx
}

func (lx *lexer) nextChar() {
	if lx.pos < len(lx.src) {
		lx.current = int(lx.src[lx.pos])
		lx.pos++
	} else {
		lx.current = eoz
		lx.pos = len(lx.src) + 1
	}
}

func (lx *lexer) save(c int)   { lx.buf = append(lx.buf, byte(c)) }
func (lx *lexer) saveAndNext() { lx.save(lx.current); lx.nextChar() }
func (lx *lexer) isNewline() bool {
	return lx.current == '\n' || lx.current == '\r'
}

func token2str(t int) string {
	if t < 257 {
		if t < 32 || t == 127 {
			return "char(" + strconv.Itoa(t) + ")"
		}
		return string([]byte{byte(t)})
	}
	return luaTokens[t-257]
}

func (lx *lexer) txtToken(t int) string {
	switch t {
	case tkName, tkString, tkNumber:
		return string(lx.buf)
	}
	return token2str(t)
}

// lexError is luaX_lexerror; tok 0 means no "near" part.
func (lx *lexer) lexError(msg string, tok int) {
	msg = lx.chunkid + ":" + strconv.Itoa(lx.line) + ": " + msg
	if tok != 0 {
		msg += " near '" + lx.txtToken(tok) + "'"
	}
	panic(&syntaxError{msg})
}

func (lx *lexer) syntaxError(msg string) { lx.lexError(msg, lx.t.tok) }

func (lx *lexer) next() {
	lx.lastline = lx.line
	if lx.ahead.tok != tkEOS {
		lx.t = lx.ahead
		lx.ahead.tok = tkEOS
	} else {
		lx.t = lx.llex()
	}
}

func (lx *lexer) lookahead() { lx.ahead = lx.llex() }

func (lx *lexer) incLine() {
	old := lx.current
	lx.nextChar()
	if lx.isNewline() && lx.current != old {
		lx.nextChar()
	}
	lx.line++
}

func (lx *lexer) checkNext(set string) bool {
	if lx.current == eoz || !strings.ContainsRune(set, rune(lx.current)) {
		return false
	}
	lx.saveAndNext()
	return true
}

func isAlnum(c int) bool { return isalpha(c) || isdigitc(c) }

func (lx *lexer) readNumeral() token {
	for {
		lx.saveAndNext()
		if !(isdigitc(lx.current) || lx.current == '.') {
			break
		}
	}
	if lx.checkNext("Ee") {
		lx.checkNext("+-")
	}
	for isAlnum(lx.current) || lx.current == '_' {
		lx.saveAndNext()
	}
	if _, ok := str2number(string(lx.buf)); !ok {
		lx.lexError("malformed number", tkNumber)
	}
	return token{tok: tkNumber}
}

func (lx *lexer) skipSep() int {
	count := 0
	s := lx.current
	lx.saveAndNext()
	for lx.current == '=' {
		lx.saveAndNext()
		count++
	}
	if lx.current == s {
		return count
	}
	return -count - 1
}

func (lx *lexer) readLongString(isString bool, sep int) {
	lx.saveAndNext() // second '['
	if lx.isNewline() {
		lx.incLine()
	}
	for {
		switch lx.current {
		case eoz:
			if isString {
				lx.lexError("unfinished long string", tkEOS)
			}
			lx.lexError("unfinished long comment", tkEOS)
		case '[':
			if lx.skipSep() == sep {
				lx.saveAndNext()
				if sep == 0 {
					lx.lexError("nesting of [[...]] is deprecated", '[')
				}
			}
		case ']':
			if lx.skipSep() == sep {
				lx.saveAndNext()
				return
			}
		case '\n', '\r':
			lx.save('\n')
			lx.incLine()
			if !isString {
				lx.buf = lx.buf[:0]
			}
		default:
			if isString {
				lx.saveAndNext()
			} else {
				lx.nextChar()
			}
		}
	}
}

func (lx *lexer) readString(del int) {
	lx.saveAndNext()
	for lx.current != del {
		switch lx.current {
		case eoz:
			lx.lexError("unfinished string", tkEOS)
		case '\n', '\r':
			lx.lexError("unfinished string", tkString)
		case '\\':
			lx.nextChar()
			c := -1
			switch lx.current {
			case 'a':
				c = '\a'
			case 'b':
				c = '\b'
			case 'f':
				c = '\f'
			case 'n':
				c = '\n'
			case 'r':
				c = '\r'
			case 't':
				c = '\t'
			case 'v':
				c = '\v'
			case '\n', '\r':
				lx.save('\n')
				lx.incLine()
				continue
			case eoz:
				continue
			default:
				if !isdigitc(lx.current) {
					lx.saveAndNext()
				} else {
					v := 0
					for i := 0; i < 3 && isdigitc(lx.current); i++ {
						v = 10*v + lx.current - '0'
						lx.nextChar()
					}
					if v > 255 {
						lx.lexError("escape sequence too large", tkString)
					}
					lx.save(v)
				}
				continue
			}
			lx.save(c)
			lx.nextChar()
		default:
			lx.saveAndNext()
		}
	}
	lx.saveAndNext()
}

func (lx *lexer) llex() token {
	lx.buf = lx.buf[:0]
	for {
		switch c := lx.current; c {
		case '\n', '\r':
			lx.incLine()
			continue
		case '-':
			lx.nextChar()
			if lx.current != '-' {
				return token{tok: '-'}
			}
			lx.nextChar()
			if lx.current == '[' {
				sep := lx.skipSep()
				lx.buf = lx.buf[:0]
				if sep >= 0 {
					lx.readLongString(false, sep)
					lx.buf = lx.buf[:0]
					continue
				}
			}
			for !lx.isNewline() && lx.current != eoz {
				lx.nextChar()
			}
			continue
		case '[':
			sep := lx.skipSep()
			if sep >= 0 {
				lx.readLongString(true, sep)
				return token{tok: tkString}
			} else if sep == -1 {
				return token{tok: '['}
			}
			lx.lexError("invalid long string delimiter", tkString)
		case '=', '<', '>', '~':
			lx.nextChar()
			if lx.current != '=' {
				return token{tok: c}
			}
			lx.nextChar()
			return token{tok: map[int]int{'=': tkEq, '<': tkLe, '>': tkGe, '~': tkNe}[c]}
		case '"', '\'':
			lx.readString(c)
			return token{tok: tkString}
		case '.':
			lx.saveAndNext()
			if lx.checkNext(".") {
				if lx.checkNext(".") {
					return token{tok: tkDots}
				}
				return token{tok: tkConcat}
			} else if !isdigitc(lx.current) {
				return token{tok: '.'}
			}
			return lx.readNumeral()
		case eoz:
			return token{tok: tkEOS}
		default:
			switch {
			case isspacec(c):
				lx.nextChar()
				continue
			case isdigitc(c):
				return lx.readNumeral()
			case isalpha(c) || c == '_':
				for isAlnum(lx.current) || lx.current == '_' {
					lx.saveAndNext()
				}
				if r, ok := reserved[string(lx.buf)]; ok {
					return token{tok: r}
				}
				return token{tok: tkName, str: string(lx.buf)}
			}
			lx.nextChar()
			return token{tok: c}
		}
	}
}
