package rpcsec

import (
	"context"
	"crypto/tls"
	"net"
)

// serve runs the handshake of one accepted connection and routes it.
// It runs in its own goroutine so a slow client cannot hold up Accept.
func (m *Mux) serve(raw net.Conn) {
	defer m.wg.Done()
	peer := raw.RemoteAddr().String()

	tc := tls.Server(raw, m.base)
	ctx, cancel := context.WithTimeout(m.ctx, handshakeTimeout)
	err := tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		// Refusals were logged by admit; this is everything else.
		m.log.Debug("handshake failed", "peer", peer, "err", err)
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
	m.log.Debug("admitted connection", "peer", peer, "node", node,
		"alpn", cs.NegotiatedProtocol)
	l.deliver(c)
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
