package rpcsec

import (
	"net"
	"sync"
)

// handshakes is the set of sockets whose handshake is in progress, so
// that Mux.Close can abort them. The zero value is empty and open.
type handshakes struct {
	mu     sync.Mutex
	closed bool
	conns  map[net.Conn]struct{}
}

// add records c. It reports false, and records nothing, once abort
// has run.
func (h *handshakes) add(c net.Conn) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return false
	}
	if h.conns == nil {
		h.conns = map[net.Conn]struct{}{}
	}
	h.conns[c] = struct{}{}
	return true
}

// done forgets c.
func (h *handshakes) done(c net.Conn) {
	h.mu.Lock()
	delete(h.conns, c)
	h.mu.Unlock()
}

// abort closes every recorded socket and refuses later ones.
func (h *handshakes) abort() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for c := range h.conns {
		c.Close()
	}
	clear(h.conns)
}
