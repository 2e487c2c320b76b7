package rpcsec

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"testing"
	"time"
)

// wait bounds every wait of the handshake tests.
const wait = 10 * time.Second

const uuidS = "5e5e5e5e-0000-4000-8000-000000000005"

// testCluster is a listening node ("srv") plus the certificates of a
// master candidate ("mc", in the map) and a normal node ("normal").
type testCluster struct {
	now    time.Time
	ca     *CA
	srv    *testNode
	mc     *testNode
	normal *testNode
	adm    *Admission
	mux    *Mux
	log    *logBuffer
}

// newTestCluster starts srv's Mux on 127.0.0.1 with a certificate for
// serverIP, and admits mc and srv itself.
func newTestCluster(t testing.TB, serverIP net.IP) *testCluster {
	t.Helper()
	now := time.Now()
	ip := net.IPv4(127, 0, 0, 1)
	c := &testCluster{now: now, ca: newTestCA(t, now.Add(-7*day), 30*day)}
	c.srv = newTestNode(t, c.ca, "srv", uuidS, serverIP, now)
	c.mc = newTestNode(t, c.ca, "mc", uuidA, ip, now)
	c.normal = newTestNode(t, c.ca, "normal", uuidB, ip, now)
	lg, buf := newLog()
	c.log = buf
	c.adm = NewAdmission(lg)
	c.adm.Set(c.candidates())
	mux, err := Listen("127.0.0.1:0", c.srv.identity(t, c.ca.CertPEM),
		c.adm, lg)
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	t.Cleanup(func() { mux.Close() })
	c.mux = mux
	return c
}

func (c *testCluster) candidates() map[string]string {
	return map[string]string{
		uuidA: Digest(c.mc.client.Raw),
		uuidS: Digest(c.srv.client.Raw),
	}
}

func (c *testCluster) addr() string { return c.mux.Addr().String() }

// config is a crypto/tls client config that trusts the cluster CA and
// presents cert, if any.
func (c *testCluster) config(cert *tls.Certificate,
	alpn string) *tls.Config {
	roots := x509.NewCertPool()
	roots.AddCert(c.ca.Cert)
	cfg := &tls.Config{
		RootCAs:    roots,
		ServerName: "127.0.0.1",
		NextProtos: []string{alpn},
	}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return cfg
}

// dial runs a client handshake; its error is the caller's to judge.
func (c *testCluster) dial(t testing.TB, cfg *tls.Config) (*tls.Conn,
	error) {
	t.Helper()
	d := &tls.Dialer{Config: cfg}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	nc, err := d.DialContext(ctx, "tcp", c.addr())
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { nc.Close() })
	return nc.(*tls.Conn), nil
}

// dialAs connects with node's identity through Dial.
func (c *testCluster) dialAs(t testing.TB, n *testNode,
	alpn string) *tls.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	conn, err := Dial(ctx, c.addr(), n.identity(t, c.ca.CertPEM), alpn)
	if err != nil {
		t.Fatalf("Dial as %s: %v", n.name, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// accept waits for the next connection on l.
func accept(t testing.TB, l net.Listener) *Conn {
	t.Helper()
	got := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			close(got)
			return
		}
		got <- c
	}()
	select {
	case c, ok := <-got:
		if !ok {
			t.Fatal("Accept: listener closed")
		}
		t.Cleanup(func() { c.Close() })
		return c.(*Conn)
	case <-time.After(wait):
		t.Fatalf("waited %v for an admitted connection", wait)
	}
	return nil
}

// expectAdmitted accepts client's connection on l and passes a message
// from server to client.
func expectAdmitted(t testing.TB, l net.Listener, client net.Conn) *Conn {
	t.Helper()
	sc := accept(t, l)
	if got, want := sc.RemoteAddr().String(),
		client.LocalAddr().String(); got != want {
		t.Fatalf("accepted %s, want the client at %s", got, want)
	}
	exchange(t, sc, client)
	return sc
}

// exchange writes from server and reads it at client.
func exchange(t testing.TB, server, client net.Conn) {
	t.Helper()
	if _, err := server.Write([]byte("ok")); err != nil {
		t.Fatalf("server write: %v", err)
	}
	client.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 2)
	if _, err := client.Read(buf); err != nil || string(buf) != "ok" {
		t.Fatalf("client read: got %q, %v, want \"ok\"", buf, err)
	}
}

// expectClosed reads from conn and wants an error other than the
// deadline: the other side closed or refused.
func expectClosed(t testing.TB, conn net.Conn) {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(wait))
	n, err := conn.Read(make([]byte, 64))
	var ne net.Error
	if err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("read: got %d bytes, %v, want the peer to close", n, err)
	}
}

// expectNothingDelivered shows that no refused connection is queued on
// the listener for alpn: the next one accepted is a fresh admitted one.
func (c *testCluster) expectNothingDelivered(t testing.TB, alpn string) {
	t.Helper()
	l := c.mux.RPCListener()
	if alpn == ALPNRaft {
		l = c.mux.RaftListener()
	}
	expectAdmitted(t, l, c.dialAs(t, c.mc, alpn))
}
