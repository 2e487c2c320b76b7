package rpcsec

import (
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"time"
)

// serve runs the handshake of one accepted connection and routes it.
// It runs in its own goroutine so a slow client cannot hold up Accept.
func (m *Mux) serve(raw net.Conn) {
	defer m.wg.Done()
	peer := raw.RemoteAddr().String()

	if !m.hs.add(raw) {
		raw.Close() // the Mux is closing
		return
	}
	// A deadline, not HandshakeContext, bounds the handshake: that
	// would start a goroutine per handshake to watch the context.
	raw.SetDeadline(time.Now().Add(handshakeTimeout))
	tc := tls.Server(raw, m.base)
	err := tc.Handshake()
	m.hs.done(raw)
	raw.SetDeadline(time.Time{})
	if err != nil {
		m.logRefusal(peer, tc, err)
		raw.Close()
		return
	}

	cs := tc.ConnectionState()
	l := m.route(cs.NegotiatedProtocol)
	if l == nil {
		m.log.Info("closing connection without known protocol",
			"peer", peer, "alpn", cs.NegotiatedProtocol)
		raw.Close()
		return
	}

	// Check passed, so the certificate names a node.
	leaf := cs.PeerCertificates[0]
	node, _ := NodeUUID(leaf)
	c := &Conn{Conn: tc, raw: raw, adm: m.adm, node: node,
		digest: Digest(leaf.Raw), peer: peer}
	// The map may have changed since the handshake's check.
	if !m.adm.track(c) {
		m.log.Info("closing revoked connection", "peer", peer,
			"node", node, "reason", "revoked during handshake")
		raw.Close()
		return
	}
	if m.log.Enabled(m.ctx, slog.LevelDebug) {
		m.log.Debug("admitted connection", "peer", peer, "node", node,
			"alpn", cs.NegotiatedProtocol)
	}
	l.deliver(c)
}

// logRefusal logs a failed handshake with peer. Check's refusals were
// logged by admit; TLS itself failing first (no TLS 1.3, not TLS at
// all, a certificate without its private key) is logged here at info
// as ReasonHandshake, with the node the certificate claims. A client
// that leaves without a word and a handshake cut short by Close are
// no refusals; they are logged at debug.
func (m *Mux) logRefusal(peer string, tc *tls.Conn, err error) {
	var re *RefusedError
	switch {
	case errors.As(err, &re):
	case errors.Is(err, io.EOF) || m.ctx.Err() != nil:
		m.log.Debug("handshake abandoned", "peer", peer, "err", err)
	default:
		m.logRefused(&RefusedError{Peer: peer, Node: claimedNode(tc),
			Reason: ReasonHandshake, Err: err})
	}
}

// claimedNode returns the node UUID that the client's certificate, as
// far as the failed handshake received it, names, or "".
func claimedNode(tc *tls.Conn) string {
	certs := tc.ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return ""
	}
	return claimed(certs[0])
}

func (m *Mux) route(proto string) *subListener {
	switch proto {
	case ALPNRPC:
		return m.rpc
	case ALPNRaft:
		return m.raft
	}
	return nil
}
