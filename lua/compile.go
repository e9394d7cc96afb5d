package lua

import (
	"bytes"
	"regexp"
	"strings"

	glua "github.com/yuin/gopher-lua"
	"github.com/yuin/gopher-lua/parse"
)

// compileChunk compiles src as a chunk named chunkid (already in
// luaO_chunkid form: "user_script", `[string "..."]`). It returns either a
// proto or the error message Lua 5.1 would give, e.g.
// "user_script:1: '=' expected near 'y'".
//
// gopher-lua's parser accepts a slightly different language (goto and
// labels from Lua 5.2, some malformed numbers and escapes) and reports
// every syntax error as "syntax error". So the chunk is first checked by
// syntaxCheck, a port of Lua 5.1's lexer and parser (without code
// generation) that gives Lua's exact accept/reject decisions and texts.
func compileChunk(src []byte, chunkid string, level int) (proto *glua.FunctionProto, msg string) {
	if m := syntaxCheckLevel(src, chunkid, level); m != "" {
		return nil, m
	}
	defer func() {
		// gopher-lua's compiler panics on some inputs it cannot handle.
		if r := recover(); r != nil {
			proto, msg = nil, chunkid+":1: function or expression too complex"
		}
	}()
	// Lua stops at a NUL byte only inside the lexer's view of the buffer;
	// gopher-lua reads the whole input, which is what we want here.
	chunk, err := parse.Parse(bytes.NewReader(src), chunkid)
	if err != nil {
		return nil, gopherSyntaxError(chunkid, err.Error())
	}
	p, err := glua.Compile(chunk, chunkid)
	if err != nil {
		return nil, gopherSyntaxError(chunkid, err.Error())
	}
	// gopher-lua gives the main chunk Lua 5.0's implicit "arg" table
	// (VARARG_NEEDSARG), built on every call but unreachable; Lua 5.1's
	// main chunk has none.
	p.IsVarArg &^= glua.VarArgNeedsArg
	return p, ""
}

var gopherErrRe = regexp.MustCompile(`line:(\d+)\(column:\d+\) near '([^']*)':\s*(.*)`)

// gopherSyntaxError reformats the rare errors only gopher-lua's parser
// raises (its own limits) in Lua's "chunk:line: msg near 'tok'" shape.
func gopherSyntaxError(chunkid, s string) string {
	s = strings.TrimSpace(s)
	if m := gopherErrRe.FindStringSubmatch(s); m != nil {
		return chunkid + ":" + m[1] + ": " + strings.TrimSpace(m[3]) + " near '" + m[2] + "'"
	}
	if i := strings.Index(s, "at EOF:"); i >= 0 {
		return chunkid + ":1: " + strings.TrimSpace(s[i+len("at EOF:"):]) + " near '<eof>'"
	}
	return chunkid + ":1: " + s
}
