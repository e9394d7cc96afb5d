package fsm

// Match reports whether str matches the glob pattern exactly as Redis's
// stringmatchlen does (util.c): '*', '?', '[...]' with ranges and '^'
// negation, and '\' escapes. It is shared by KEYS, SCAN MATCH and pub/sub
// patterns so that all three agree with Redis and with each other.
func Match(pattern, str []byte, nocase bool) bool {
	skipLonger := false
	return matchImpl(pattern, str, nocase, &skipLonger, 0)
}

func lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

func matchImpl(p, s []byte, nocase bool, skipLonger *bool, nesting int) bool {
	// Protection against abusive patterns, as in Redis 7.
	if nesting > 1000 {
		return false
	}
	for len(p) > 0 && len(s) > 0 {
		switch p[0] {
		case '*':
			for len(p) > 1 && p[1] == '*' {
				p = p[1:]
			}
			if len(p) == 1 {
				return true // match everything that is left
			}
			for len(s) > 0 {
				if matchImpl(p[1:], s, nocase, skipLonger, nesting+1) {
					return true
				}
				if *skipLonger {
					return false
				}
				s = s[1:]
			}
			*skipLonger = true
			return false
		case '?':
			s = s[1:]
		case '[':
			p = p[1:]
			not := len(p) > 0 && p[0] == '^'
			if not {
				p = p[1:]
			}
			match := false
			for {
				if len(p) == 0 {
					break
				}
				if p[0] == '\\' && len(p) >= 2 {
					p = p[1:]
					if p[0] == s[0] {
						match = true
					}
				} else if p[0] == ']' {
					break
				} else if len(p) >= 3 && p[1] == '-' {
					start, end := p[0], p[2]
					c := s[0]
					if start > end {
						start, end = end, start
					}
					if nocase {
						start, end, c = lower(start), lower(end), lower(c)
					}
					p = p[2:]
					if c >= start && c <= end {
						match = true
					}
				} else if nocase {
					if lower(p[0]) == lower(s[0]) {
						match = true
					}
				} else if p[0] == s[0] {
					match = true
				}
				p = p[1:]
			}
			// Redis leaves the pattern on the closing ']' (or past the end
			// of an unterminated class) and steps over it below.
			if len(p) == 0 {
				p = p[:0]
				if not {
					match = !match
				}
				if !match {
					return false
				}
				s = s[1:]
				continue
			}
			if not {
				match = !match
			}
			if !match {
				return false
			}
			s = s[1:]
		case '\\':
			if len(p) >= 2 {
				p = p[1:]
			}
			fallthrough
		default:
			if nocase {
				if lower(p[0]) != lower(s[0]) {
					return false
				}
			} else if p[0] != s[0] {
				return false
			}
			s = s[1:]
		}
		p = p[1:]
		if len(s) == 0 {
			for len(p) > 0 && p[0] == '*' {
				p = p[1:]
			}
			break
		}
	}
	return len(p) == 0 && len(s) == 0
}

// literalPrefix is the part of a pattern before its first special
// character: every matching key starts with it.
func literalPrefix(p []byte) []byte {
	for i, c := range p {
		switch c {
		case '*', '?', '[', '\\':
			return p[:i]
		}
	}
	return p
}
