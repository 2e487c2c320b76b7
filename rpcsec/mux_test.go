package rpcsec

import (
	"crypto"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

var localhost = net.IPv4(127, 0, 0, 1)

func TestMux_AdmitsCandidate(t *testing.T) {
	c := newTestCluster(t, localhost)
	for _, tt := range []struct {
		alpn string
		l    net.Listener
	}{
		{ALPNRPC, c.mux.RPCListener()},
		{ALPNRaft, c.mux.RaftListener()},
	} {
		t.Run(tt.alpn, func(t *testing.T) {
			conn := c.dialAs(t, c.mc, tt.alpn)
			sc := expectAdmitted(t, tt.l, conn)
			if sc.Node() != uuidA {
				t.Errorf("Node: got %q, want %q", sc.Node(), uuidA)
			}
			sc.Close()
			if n := trackedConns(c.adm); n != 0 {
				t.Errorf("after Close: got %d tracked, want 0", n)
			}
		})
	}
}

func TestMux_RefusesUnadmitted(t *testing.T) {
	c := newTestCluster(t, localhost)
	old := newTestNode(t, c.ca, "mc", uuidA, localhost,
		c.now.Add(-3*day))
	alien := newTestNode(t, newTestCA(t, c.now, day), "mc", uuidA,
		localhost, c.now)
	reissued, _, _ := newClientCert(t, c.ca, c.mc, c.now)
	asTLS := func(pems []byte) *tls.Certificate {
		kp, err := tls.X509KeyPair(pems, pems)
		if err != nil {
			t.Fatal(err)
		}
		return &kp
	}
	forged := selfSigned(t, c.mc.client)
	tests := []struct {
		name string
		cert *tls.Certificate
		want Reason
	}{
		{"no certificate", nil, ReasonNoCertificate},
		{"normal node", asTLS(c.normal.clientPEM), ReasonUnknownNode},
		{"self-signed copy", &forged, ReasonWrongCA},
		{"other CA", asTLS(alien.clientPEM), ReasonWrongCA},
		{"expired", asTLS(old.clientPEM), ReasonExpired},
		{"reissued", asTLS(reissued), ReasonDigestMismatch},
		{"server certificate", asTLS(c.mc.serverPEM), ReasonWrongUsage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := c.dial(t, c.config(tt.cert, ALPNRPC))
			if err != nil {
				t.Fatalf("client handshake: %v; in TLS 1.3 the "+
					"server's verdict comes after it", err)
			}
			expectClosed(t, conn)
			// Check's refusals are logged before the alert.
			c.log.mustContain(t, "refusing connection",
				"peer="+conn.LocalAddr().String(), string(tt.want))
			c.expectNothingDelivered(t, ALPNRPC)
		})
	}
}

func TestMux_RefusesTLS12(t *testing.T) {
	c := newTestCluster(t, localhost)
	cert := c.mc.tlsCert()
	cfg := c.config(&cert, ALPNRaft)
	cfg.MaxVersion = tls.VersionTLS12
	conn, err := net.Dial("tcp", c.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := tls.Client(conn, cfg).Handshake(); err == nil {
		t.Fatal("TLS 1.2 handshake: got nil error, want refused")
	}
	c.log.waitFor(t, "refusing connection",
		"peer="+conn.LocalAddr().String(), string(ReasonHandshake),
		"unsupported versions")
	c.expectNothingDelivered(t, ALPNRaft)
}

func TestMux_RefusesPlaintext(t *testing.T) {
	c := newTestCluster(t, localhost)
	conn, err := net.Dial("tcp", c.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	conn.SetReadDeadline(time.Now().Add(wait))
	got, err := io.ReadAll(conn)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() || strings.Contains(
		string(got), "HTTP/") {
		t.Fatalf("got %q, %v, want the connection closed", got, err)
	}
	c.log.waitFor(t, "refusing connection",
		"peer="+conn.LocalAddr().String(), string(ReasonHandshake))
	c.expectNothingDelivered(t, ALPNRPC)
}

// failingSigner holds a public key but not its private key, like a
// thief holding another node's certificate.
type failingSigner struct{ pub crypto.PublicKey }

func (s failingSigner) Public() crypto.PublicKey { return s.pub }

func (failingSigner) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte,
	error) {
	return nil, errors.New("no private key")
}

// A node that copies a candidate's certificate but not its key cannot
// finish the handshake: CertificateVerify proves possession of the key.
func TestMux_RefusesCertificateWithoutKey(t *testing.T) {
	c := newTestCluster(t, localhost)
	stolen := [][]byte{c.mc.client.Raw}
	tests := []struct {
		name string
		key  crypto.Signer
		want string // in the logged error
	}{
		{"own key", c.normal.clientKey, "invalid signature"},
		{"no key", failingSigner{c.mc.client.PublicKey},
			"internal error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cert := tls.Certificate{Certificate: stolen,
				PrivateKey: tt.key}
			raw, err := net.Dial("tcp", c.addr())
			if err != nil {
				t.Fatal(err)
			}
			defer raw.Close()
			conn := tls.Client(raw, c.config(&cert, ALPNRPC))
			if conn.Handshake() == nil {
				expectClosed(t, conn)
			}
			c.log.waitFor(t, "refusing connection",
				"peer="+raw.LocalAddr().String(), "node="+uuidA,
				string(ReasonHandshake), tt.want)
			c.expectNothingDelivered(t, ALPNRPC)
		})
	}
}

func TestMux_ClosesConnectionWithoutProtocol(t *testing.T) {
	c := newTestCluster(t, localhost)
	cert := c.mc.tlsCert()
	for _, alpn := range []string{"", "h2"} {
		t.Run("alpn="+alpn, func(t *testing.T) {
			cfg := c.config(&cert, alpn)
			if alpn == "" {
				cfg.NextProtos = nil
			}
			conn, err := c.dial(t, cfg)
			if err == nil {
				expectClosed(t, conn)
			}
			c.expectNothingDelivered(t, ALPNRPC)
		})
	}
}

func TestMux_ResumedSessionRechecked(t *testing.T) {
	c := newTestCluster(t, localhost)
	cert := c.mc.tlsCert()
	cfg := c.config(&cert, ALPNRaft)
	cfg.ClientSessionCache = tls.NewLRUClientSessionCache(8)
	l := c.mux.RaftListener()

	// The first read also takes in the session ticket.
	first, err := c.dial(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	expectAdmitted(t, l, first)
	resumed, err := c.dial(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !resumed.ConnectionState().DidResume {
		t.Fatal("second connection did not resume; test proves nothing")
	}
	expectAdmitted(t, l, resumed)

	c.adm.Set(map[string]string{uuidS: Digest(c.srv.client.Raw)})
	// The server resumes, then refuses on the restored certificate.
	conn, err := c.dial(t, cfg)
	if err != nil {
		t.Fatalf("client handshake: %v", err)
	}
	if !conn.ConnectionState().DidResume {
		t.Error("third connection did not resume")
	}
	expectClosed(t, conn)
	c.log.mustContain(t, "peer="+conn.LocalAddr().String(),
		string(ReasonUnknownNode))
}

func TestAdmission_SetClosesRevoked(t *testing.T) {
	tests := []struct {
		name string
		m    func(c *testCluster) map[string]string
		want Reason
	}{
		{"removed", func(c *testCluster) map[string]string {
			m := c.candidates()
			delete(m, uuidA)
			return m
		}, ReasonUnknownNode},
		{"digest changed", func(c *testCluster) map[string]string {
			m := c.candidates()
			m[uuidA] = Digest([]byte("renewed"))
			return m
		}, ReasonDigestMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newTestCluster(t, localhost)
			l := c.mux.RaftListener()
			revoked := c.dialAs(t, c.mc, ALPNRaft)
			expectAdmitted(t, l, revoked)
			kept := c.dialAs(t, c.srv, ALPNRaft)
			keptServer := expectAdmitted(t, l, kept)

			c.adm.Set(tt.m(c))

			expectClosed(t, revoked)
			exchange(t, keptServer, kept)
			c.log.mustContain(t, "closing revoked connection",
				"node="+uuidA, string(tt.want))
			if n := trackedConns(c.adm); n != 1 {
				t.Errorf("tracked: got %d, want 1", n)
			}
		})
	}
}

func TestIdentity_UpdateAppliesToNewHandshakes(t *testing.T) {
	c := newTestCluster(t, localhost)
	rotated := newTestCA(t, c.now, day)
	srv := newTestNode(t, rotated, "srv", uuidS, localhost, c.now)
	mc := newTestNode(t, rotated, "mc", uuidA, localhost, c.now)
	cert := c.mc.tlsCert()
	cfg := c.config(&cert, ALPNRPC)
	cfg.RootCAs.AddCert(rotated.Cert)

	// The Mux holds the identity it was given; reach it to update.
	if err := c.mux.id.Update(srv.serverPEM, srv.clientPEM,
		rotated.CertPEM); err != nil {
		t.Fatal(err)
	}
	c.adm.Set(map[string]string{uuidA: Digest(mc.client.Raw)})

	conn, err := c.dial(t, cfg)
	if err == nil {
		got := conn.ConnectionState().PeerCertificates[0]
		if got.Issuer.String() != rotated.Cert.Subject.String() {
			t.Errorf("server certificate from %s, want the rotated CA",
				got.Issuer)
		}
		expectClosed(t, conn)
	}
	c.log.mustContain(t, string(ReasonWrongCA))

	fresh := mc.identity(t, rotated.CertPEM)
	conn2, err := Dial(t.Context(), c.addr(), fresh, ALPNRPC)
	if err != nil {
		t.Fatalf("Dial with rotated identity: %v", err)
	}
	defer conn2.Close()
	expectAdmitted(t, c.mux.RPCListener(), conn2)
}

func trackedConns(a *Admission) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.conns)
}

// Close ends handshakes that are waiting on a client, and returns.
func TestMux_CloseAbortsHandshakes(t *testing.T) {
	c := newTestCluster(t, localhost)
	conn, err := net.Dial("tcp", c.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// The handshake has begun once the client's hello is read; a
	// client that sends nothing is held there.
	waitTracked(t, &c.mux.hs, 1)

	closed := make(chan error, 1)
	go func() { closed <- c.mux.Close() }()
	select {
	case <-closed:
	case <-time.After(wait):
		t.Fatalf("Close still waiting after %v", wait)
	}
	expectClosed(t, conn)
	if c.mux.hs.add(conn) {
		t.Error("a handshake started after Close was recorded")
	}
}

// waitTracked polls, for at most wait, until h holds n sockets.
func waitTracked(t testing.TB, h *handshakes, n int) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		h.mu.Lock()
		got := len(h.conns)
		h.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("handshakes in progress: got %d, want %d", got, n)
		}
		time.Sleep(5 * time.Millisecond) // poll interval
	}
}
