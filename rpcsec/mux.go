package rpcsec

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"
)

// ALPN protocol names of the two services that share a daemon port.
const (
	// ALPNRPC selects the node RPC, HTTP/1.1.
	ALPNRPC = "ganeti-rpc/1"
	// ALPNRaft selects the Raft transport.
	ALPNRaft = "ganeti-raft/1"
)

// handshakeTimeout bounds how long a client may take to complete the
// handshake before its connection is dropped.
const handshakeTimeout = 10 * time.Second

// Mux is a TLS 1.3 listener that admits clients through an Admission
// and hands each admitted connection, by its ALPN protocol, to
// RPCListener or RaftListener. Refused and protocol-less connections
// never reach either.
type Mux struct {
	ln   net.Listener
	id   *Identity
	adm  *Admission
	log  *slog.Logger
	base *tls.Config
	rpc  *subListener
	raft *subListener
	hs   handshakes

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
	err    error
}

// Listen listens on the TCP address addr. Each handshake uses the
// server certificate and CA roots that id holds at that moment, and
// admits the client only if adm.Check accepts its certificate; every
// refusal is logged at info with the peer, claimed node and reason.
// id and adm are required.
func Listen(addr string, id *Identity, adm *Admission,
	log *slog.Logger) (*Mux, error) {
	if id == nil || adm == nil {
		return nil, fmt.Errorf("%w: listen %q needs an identity and "+
			"an admission", ErrBadParameter, addr)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("rpcsec: listening on %q: %w", addr, err)
	}
	m := &Mux{ln: ln, id: id, adm: adm, log: log}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	m.base = &tls.Config{
		MinVersion:         tls.VersionTLS13,
		GetConfigForClient: m.configFor,
	}
	m.rpc = newSubListener(ln.Addr())
	m.raft = newSubListener(ln.Addr())
	m.wg.Add(1)
	go m.acceptLoop()
	return m, nil
}

// RPCListener returns the listener of admitted node RPC connections.
// Each is a *Conn; serve them with net/http.
func (m *Mux) RPCListener() net.Listener { return m.rpc }

// RaftListener returns the listener of admitted Raft connections.
// Closing it, as raft.NetworkTransport.Close does, is final; the RPC
// listener stays open.
func (m *Mux) RaftListener() net.Listener { return m.raft }

// Addr returns the address the Mux listens on.
func (m *Mux) Addr() net.Addr { return m.ln.Addr() }

// Close stops listening, aborts handshakes in progress and closes both
// protocol listeners. Connections already accepted stay open; their
// owners close them. Close waits for its goroutines to end.
func (m *Mux) Close() error {
	m.once.Do(func() {
		m.cancel()
		m.err = m.ln.Close()
		m.hs.abort()
		m.rpc.Close()
		m.raft.Close()
		m.wg.Wait()
	})
	return m.err
}

// configFor builds the configuration of one handshake from the
// identity's current material, so that Update applies to the next
// connection. It costs an allocation or two, well under a
// microsecond, against about a millisecond of handshake; in return
// a refusal is logged with its peer before the client learns of it.
func (m *Mux) configFor(hello *tls.ClientHelloInfo) (*tls.Config, error) {
	st := m.id.cur.Load()
	peer := hello.Conn.RemoteAddr().String()
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{st.server},
		// Check verifies the chain, which tells a foreign CA from an
		// expired certificate, and refuses a missing certificate
		// with a reason that is logged like every other refusal.
		ClientAuth: tls.RequestClientCert,
		NextProtos: []string{ALPNRPC, ALPNRaft},
		// VerifyConnection also runs on resumed sessions.
		VerifyConnection: func(cs tls.ConnectionState) error {
			return m.admit(peer, cs.PeerCertificates, st.roots)
		},
	}, nil
}

// admit runs Check and logs a refusal at info with peer, the node the
// certificate claims and the reason.
func (m *Mux) admit(peer string, certs []*x509.Certificate,
	roots *x509.CertPool) error {
	err := m.adm.Check(certs, roots, time.Now())
	var re *RefusedError
	if !errors.As(err, &re) {
		return err
	}
	re.Peer = peer
	m.logRefused(re)
	return err
}

func (m *Mux) logRefused(re *RefusedError) {
	args := []any{"peer", re.Peer, "node", re.Node, "reason", re.Reason}
	if re.Err != nil {
		args = append(args, "err", re.Err)
	}
	m.log.Info("refusing connection", args...)
}

func (m *Mux) acceptLoop() {
	defer m.wg.Done()
	var delay time.Duration
	for {
		raw, err := m.ln.Accept()
		if err == nil {
			delay = 0
			m.wg.Add(1)
			go m.serve(raw)
			continue
		}
		if errors.Is(err, net.ErrClosed) || m.ctx.Err() != nil {
			return
		}
		// Out of descriptors and the like: wait and keep serving.
		delay = min(max(2*delay, 5*time.Millisecond), time.Second)
		m.log.Warn("accept failed", "err", err, "retry_in", delay)
		select {
		case <-time.After(delay):
		case <-m.ctx.Done():
			return
		}
	}
}
