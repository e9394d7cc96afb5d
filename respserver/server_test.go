package respserver

import (
	"net"
	"testing"
)

// addrConn is a net.Conn that only reports a remote address: enough for
// the accept-time checks, which look at nothing else.
type addrConn struct {
	net.Conn
	remote net.Addr
}

func (c addrConn) RemoteAddr() net.Addr { return c.remote }

func TestProtectedModeRefusesRemoteClientsWithoutPassword(t *testing.T) {
	remote := addrConn{remote: &net.TCPAddr{IP: net.ParseIP("192.0.2.7"), Port: 5000}}
	local := addrConn{remote: &net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 5000}}
	cases := []struct {
		name      string
		cfg       Config
		conn      net.Conn
		wantRefus bool
	}{
		{"remote, protected, no password", Config{ProtectedMode: true}, remote, true},
		{"loopback, protected, no password", Config{ProtectedMode: true}, local, false},
		{"remote, protected, password set", Config{ProtectedMode: true, RequirePass: "x"}, remote, false},
		{"remote, protected mode off", Config{}, remote, false},
	}
	for _, c := range cases {
		s := New(c.cfg, nil)
		got := s.refuse(c.conn)
		if (got != "") != c.wantRefus {
			t.Errorf("%s: refuse = %q", c.name, got)
		}
		if c.wantRefus && got[:7] != "-DENIED" {
			t.Errorf("%s: %q is not a -DENIED error", c.name, got)
		}
	}
}
