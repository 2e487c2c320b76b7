package rpcsec

import (
	"crypto/tls"
	"net"
)

// Conn is an admitted connection, as returned by the Mux listeners. It
// is a *tls.Conn whose handshake is complete; it is closed by
// Admission.Set when its peer's candidate-map entry goes away.
//
// It is deliberately not a *tls.Conn itself: net/http drops TLS
// connections whose ALPN protocol it does not know, while a Conn is
// served as HTTP/1.1 and still fills Request.TLS through
// ConnectionState.
type Conn struct {
	*tls.Conn
	raw  net.Conn
	adm  *Admission
	node string
	// digest is the Digest of the peer's certificate.
	digest string
	peer   string
}

// Node returns the UUID of the admitted peer node.
func (c *Conn) Node() string { return c.node }

// Close stops tracking the connection and closes it.
func (c *Conn) Close() error {
	c.adm.untrack(c)
	return c.Conn.Close()
}

// abort closes the socket at once, without a close_notify that a peer
// which does not read could hold up.
func (c *Conn) abort() {
	c.adm.untrack(c)
	c.raw.Close()
}
