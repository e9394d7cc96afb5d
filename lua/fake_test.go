package lua

import (
	"strconv"
	"strings"
	"sync"
)

// fakeStore is a tiny in-memory Redis (GET SET INCR DEL EXISTS PING
// RPUSH/LRANGE for a list) returning RESP2 bytes, for unit tests.
type fakeStore struct {
	mu    sync.Mutex
	data  map[string]string
	lists map[string][]string
	calls [][]string
}

func newFakeStore() *fakeStore {
	return &fakeStore{data: map[string]string{}, lists: map[string][]string{}}
}

func bulk(s string) []byte { return []byte("$" + strconv.Itoa(len(s)) + "\r\n" + s + "\r\n") }

func (f *fakeStore) call(args [][]byte) []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	sargs := make([]string, len(args))
	for i, a := range args {
		sargs[i] = string(a)
	}
	f.calls = append(f.calls, sargs)
	return f.exec(sargs)
}

// callNoLog is call without recording, for benchmarks.
func (f *fakeStore) callNoLog(args [][]byte) []byte {
	sargs := make([]string, len(args))
	for i, a := range args {
		sargs[i] = string(a)
	}
	return f.exec(sargs)
}

func (f *fakeStore) exec(sargs []string) []byte {
	switch strings.ToLower(sargs[0]) {
	case "ping":
		return []byte("+PONG\r\n")
	case "get":
		if _, ok := f.lists[sargs[1]]; ok {
			return []byte("-WRONGTYPE Operation against a key holding the wrong kind of value\r\n")
		}
		v, ok := f.data[sargs[1]]
		if !ok {
			return []byte("$-1\r\n")
		}
		return bulk(v)
	case "set":
		f.data[sargs[1]] = sargs[2]
		return []byte("+OK\r\n")
	case "incr":
		if _, ok := f.lists[sargs[1]]; ok {
			return []byte("-WRONGTYPE Operation against a key holding the wrong kind of value\r\n")
		}
		n, err := strconv.ParseInt(f.data[sargs[1]], 10, 64)
		if _, ok := f.data[sargs[1]]; ok && err != nil {
			return []byte("-ERR value is not an integer or out of range\r\n")
		}
		n++
		f.data[sargs[1]] = strconv.FormatInt(n, 10)
		return []byte(":" + strconv.FormatInt(n, 10) + "\r\n")
	case "del":
		n := 0
		for _, k := range sargs[1:] {
			if _, ok := f.data[k]; ok {
				delete(f.data, k)
				n++
			}
			if _, ok := f.lists[k]; ok {
				delete(f.lists, k)
				n++
			}
		}
		return []byte(":" + strconv.Itoa(n) + "\r\n")
	case "rpush":
		f.lists[sargs[1]] = append(f.lists[sargs[1]], sargs[2:]...)
		return []byte(":" + strconv.Itoa(len(f.lists[sargs[1]])) + "\r\n")
	case "lrange":
		l := f.lists[sargs[1]]
		out := "*" + strconv.Itoa(len(l)) + "\r\n"
		for _, v := range l {
			out += string(bulk(v))
		}
		return []byte(out)
	}
	return []byte("-ERR unknown command '" + sargs[0] + "', with args beginning with: \r\n")
}
