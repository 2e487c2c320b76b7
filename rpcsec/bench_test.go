package rpcsec

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"syscall"
	"testing"
	"time"
)

// The benchmarks compare a Mux with a stock crypto/tls mutual-TLS
// listener. Both serve the same server certificate, trust the same
// CA, offer the same ALPN protocols and are dialled by the same
// client, so the difference is what admission adds: the candidate-map
// check, connection tracking and the hand-off to the protocol
// listener. Chain verification happens in both, once.
//
// The machine may be busy with other work, which moves wall-clock
// figures by more than the difference looked for. Besides ns/op they
// report cpu-ns/op, the process CPU time (client and server) per
// operation, and BenchmarkHandshake_Overhead alternates the two
// servers in one loop so that both see the same load.

// benchServers is one test cluster served both ways, and the client
// config of its admitted master candidate.
type benchServers struct {
	admission string
	plain     string
	client    *tls.Config
}

// newBenchServers starts both servers; fn serves each connection they
// accept after its handshake.
func newBenchServers(b *testing.B, fn func(net.Conn)) benchServers {
	b.Helper()
	c := newTestCluster(b, localhost)
	go serveAll(c.mux.RPCListener(), fn)

	st := c.mux.id.cur.Load()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{st.server},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    st.roots,
		NextProtos:   []string{ALPNRPC, ALPNRaft},
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
	s := benchServers{admission: c.addr(), plain: ln.Addr().String(),
		client: c.config(&cert, ALPNRPC)}
	// Warm both up alike, or the one measured first pays for the
	// process's cold start.
	for range 50 {
		warm(b, s.admission, s.client)
		warm(b, s.plain, s.client)
	}
	return s
}

// warm makes one connection to addr and exchanges a byte: a greeting
// server sends one, an echo server returns the one written.
func warm(b *testing.B, addr string, cfg *tls.Config) {
	conn, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte{1}); err != nil {
		b.Fatal(err)
	}
	if _, err := io.ReadFull(conn, make([]byte, 1)); err != nil {
		b.Fatal(err)
	}
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

// handshake connects to addr and waits until the server, having
// admitted the client, writes its greeting.
func handshake(b *testing.B, addr string, cfg *tls.Config) {
	conn, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.ReadFull(conn, make([]byte, 1)); err != nil {
		b.Fatal(err)
	}
}

// cpuTime returns the CPU time the process has used so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportRates adds cpu-ns/op, from CPU time used since start, and
// the operations per second under unit.
func reportRates(b *testing.B, start time.Duration, unit string) {
	n := float64(b.N)
	b.ReportMetric(float64(cpuTime(b)-start)/n, "cpu-ns/op")
	b.ReportMetric(n/b.Elapsed().Seconds(), unit)
}

// BenchmarkHandshake measures a full handshake, with no session
// resumption, up to the first byte from the server.
func BenchmarkHandshake(b *testing.B) {
	s := newBenchServers(b, greet)
	for _, srv := range []struct{ name, addr string }{
		{"server=admission", s.admission},
		{"server=plain", s.plain},
	} {
		b.Run(srv.name, func(b *testing.B) {
			b.ReportAllocs()
			start := cpuTime(b)
			for b.Loop() {
				handshake(b, srv.addr, s.client)
			}
			reportRates(b, start, "handshakes/s")
		})
	}
}

// BenchmarkHandshake_Overhead alternates handshakes with the two
// servers, changing which goes first every iteration, and reports
// the time of each and the overhead of admission in percent.
func BenchmarkHandshake_Overhead(b *testing.B) {
	s := newBenchServers(b, greet)
	var adm, plain time.Duration
	timed := func(addr string) time.Duration {
		t := time.Now()
		handshake(b, addr, s.client)
		return time.Since(t)
	}
	odd := false
	for b.Loop() {
		if odd = !odd; odd {
			adm += timed(s.admission)
			plain += timed(s.plain)
		} else {
			plain += timed(s.plain)
			adm += timed(s.admission)
		}
	}
	n := float64(b.N)
	b.ReportMetric(float64(adm)/n, "admission-ns/hs")
	b.ReportMetric(float64(plain)/n, "plain-ns/hs")
	b.ReportMetric(100*float64(adm-plain)/float64(plain), "overhead-%")
}

// BenchmarkRoundTrip measures a 64-byte echo on an open connection.
func BenchmarkRoundTrip(b *testing.B) {
	s := newBenchServers(b, echo)
	for _, srv := range []struct{ name, addr string }{
		{"server=admission", s.admission},
		{"server=plain", s.plain},
	} {
		b.Run(srv.name, func(b *testing.B) {
			benchRoundTrip(b, srv.addr, s.client)
		})
	}
}

func benchRoundTrip(b *testing.B, addr string, cfg *tls.Config) {
	conn, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	msg, buf := make([]byte, 64), make([]byte, 64)
	b.SetBytes(int64(len(msg)))
	start := cpuTime(b)
	for b.Loop() {
		if _, err := conn.Write(msg); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(conn, buf); err != nil {
			b.Fatal(err)
		}
	}
	reportRates(b, start, "round-trips/s")
}

// BenchmarkAdmission_Check measures Check for an admitted candidate,
// its candidate-map part alone, and the chain verification alone,
// which a stock mutual-TLS server performs too.
func BenchmarkAdmission_Check(b *testing.B) {
	c := newTestCluster(b, localhost)
	roots := c.mux.id.Roots()
	leaf := c.mc.client
	b.Run("step=check", func(b *testing.B) {
		certs := []*x509.Certificate{leaf}
		for b.Loop() {
			if err := c.adm.Check(certs, roots, c.now); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("step=map", func(b *testing.B) {
		for b.Loop() {
			if err := c.adm.checkMap(leaf); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("step=verify-chain", func(b *testing.B) {
		opts := x509.VerifyOptions{Roots: roots, CurrentTime: c.now,
			KeyUsages: []x509.ExtKeyUsage{
				x509.ExtKeyUsageClientAuth}}
		for b.Loop() {
			if _, err := leaf.Verify(opts); err != nil {
				b.Fatal(err)
			}
		}
	})
}
