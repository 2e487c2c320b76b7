package rpcsec

import (
	"net"
	"sync"
)

// subListener is one protocol's share of a Mux: Accept returns the
// admitted connections that negotiated its ALPN protocol.
type subListener struct {
	addr  net.Addr
	conns chan *Conn
	done  chan struct{}
	once  sync.Once
}

func newSubListener(addr net.Addr) *subListener {
	return &subListener{
		addr:  addr,
		conns: make(chan *Conn),
		done:  make(chan struct{}),
	}
}

// Accept waits for the next connection. After Close it returns
// net.ErrClosed.
func (l *subListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close stops Accept; connections not yet accepted are closed. The
// other protocol's listener and the port stay open.
func (l *subListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

// Addr returns the Mux's listening address.
func (l *subListener) Addr() net.Addr { return l.addr }

// deliver hands c to Accept, or closes it once l is closed.
func (l *subListener) deliver(c *Conn) {
	select {
	case l.conns <- c:
	case <-l.done:
		c.abort()
	}
}
