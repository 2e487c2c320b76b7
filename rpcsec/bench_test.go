package rpcsec

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"testing"
)

// benchEnv is a server that runs fn on each connection it admits, and
// the client config of an admitted master candidate.
type benchEnv struct {
	addr   string
	client *tls.Config
}

// admissionEnv serves through a Mux with the candidate-map check.
func admissionEnv(b *testing.B, fn func(net.Conn)) benchEnv {
	c := newTestCluster(b, localhost)
	go serveAll(c.mux.RPCListener(), fn)
	cert := c.mc.tlsCert()
	return benchEnv{c.addr(), c.config(&cert, ALPNRPC)}
}

// plainEnv serves through a stock Go mutual-TLS listener with the
// same keys and no map check.
func plainEnv(b *testing.B, fn func(net.Conn)) benchEnv {
	c := newTestCluster(b, localhost)
	srv, err := tls.X509KeyPair(c.srv.serverPEM, c.srv.serverPEM)
	if err != nil {
		b.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(c.ca.Cert)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{srv},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
		NextProtos:   []string{ALPNRPC},
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	go serveAll(ln, func(conn net.Conn) {
		if conn.(*tls.Conn).Handshake() == nil {
			fn(conn)
		}
	})
	cert := c.mc.tlsCert()
	return benchEnv{ln.Addr().String(), c.config(&cert, ALPNRPC)}
}

func serveAll(l net.Listener, fn func(net.Conn)) {
	for {
		conn, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer conn.Close()
			fn(conn)
		}()
	}
}

// greet completes the server's side: the client's read of the byte
// proves the server accepted it.
func greet(conn net.Conn) { conn.Write([]byte{1}) }

func echo(conn net.Conn) { io.Copy(conn, conn) }

func benchHandshake(b *testing.B, env benchEnv) {
	buf := make([]byte, 1)
	for b.Loop() {
		conn, err := tls.Dial("tcp", env.addr, env.client)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(conn, buf); err != nil {
			b.Fatal(err)
		}
		conn.Close()
	}
}

func benchRoundTrip(b *testing.B, env benchEnv) {
	conn, err := tls.Dial("tcp", env.addr, env.client)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	msg, buf := make([]byte, 64), make([]byte, 64)
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		if _, err := conn.Write(msg); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(conn, buf); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkHandshake_Admission(b *testing.B) {
	benchHandshake(b, admissionEnv(b, greet))
}

func BenchmarkHandshake_PlainMTLS(b *testing.B) {
	benchHandshake(b, plainEnv(b, greet))
}

func BenchmarkRoundTrip(b *testing.B) {
	b.Run("Admission", func(b *testing.B) {
		benchRoundTrip(b, admissionEnv(b, echo))
	})
	b.Run("PlainMTLS", func(b *testing.B) {
		benchRoundTrip(b, plainEnv(b, echo))
	})
}
