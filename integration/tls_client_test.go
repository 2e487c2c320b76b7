package integration

import (
	"bufio"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// The clients of the TLS tests. Each is a real TLS client aimed at a
// daemon's port on loopback; none skips verifying the server, so a
// refusal can only come from the server refusing the client.

// ALPN protocols of the daemon port, as the product names them.
const (
	alpnRPC  = "ganeti-rpc/1"
	alpnRaft = "ganeti-raft/1"
)

// probeTimeout bounds one client's conversation: a refused client must
// see an error long before it, not a hang.
const probeTimeout = 20 * time.Second

// tlsCred is what a client presents: a certificate with the key it
// signs with (nil for none), and how it speaks.
type tlsCred struct {
	cert *tls.Certificate
	// maxVersion caps the client's TLS version; zero means TLS 1.3.
	maxVersion uint16
	// plain sends HTTP without TLS.
	plain bool
	// sessions, if not nil, keeps session tickets for resumption.
	sessions tls.ClientSessionCache
}

// hostClientCert loads h's client.pem (certificate, then key) as a
// client certificate with its parsed leaf.
func hostClientCert(t testing.TB, h *Host) tls.Certificate {
	t.Helper()
	data := readLib(t, h, "client.pem")
	kp, err := tls.X509KeyPair([]byte(data), []byte(data))
	if err != nil {
		t.Fatalf("client.pem of %s: %v", h.Name, err)
	}
	return kp
}

// hostCAPool returns the cluster CA certificates h trusts.
func hostCAPool(t testing.TB, h *Host) *x509.CertPool {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(readLib(t, h, "ca.pem"))) {
		t.Fatalf("ca.pem of %s holds no certificate", h.Name)
	}
	return pool
}

// daemonClientConfig is a TLS client config for the daemon port of the
// host at ip that verifies the server against roots and asks for alpn.
func daemonClientConfig(ip string, roots *x509.CertPool, alpn string,
	cr tlsCred) *tls.Config {
	cfg := &tls.Config{
		RootCAs:    roots,
		ServerName: ip,
		MinVersion: tls.VersionTLS12,
		MaxVersion: cr.maxVersion,
		NextProtos: []string{alpn},
		// Nil disables resumption.
		ClientSessionCache: cr.sessions,
	}
	if cr.cert != nil {
		cfg.Certificates = []tls.Certificate{*cr.cert}
	}
	return cfg
}

// dialDaemonFrom opens a TCP connection to to's daemon port from the
// loopback address of from, so that logs show which host attacked.
func dialDaemonFrom(from, to *Host) (*net.TCPConn, error) {
	d := net.Dialer{Timeout: probeTimeout,
		LocalAddr: &net.TCPAddr{IP: net.ParseIP(from.IP)}}
	conn, err := d.Dial("tcp", daemonPortAddr(to))
	if err != nil {
		return nil, err
	}
	conn.SetDeadline(time.Now().Add(probeTimeout))
	return conn.(*net.TCPConn), nil
}

func daemonPortAddr(h *Host) string {
	return net.JoinHostPort(h.IP, strconv.Itoa(rpcPort))
}

// rpcConn is an open node RPC connection: the TLS layer, its socket,
// and the reader of its responses.
type rpcConn struct {
	tls *tls.Conn
	raw *net.TCPConn
	br  *bufio.Reader
}

// openRPC makes the handshake with to's daemon port as cr, from
// from's address. The error is the handshake's; in TLS 1.3 the server
// refuses a client certificate only after the client's handshake is
// done, so a refusal mostly shows up on the first request.
func openRPC(from, to *Host, roots *x509.CertPool,
	cr tlsCred) (*rpcConn, error) {
	raw, err := dialDaemonFrom(from, to)
	if err != nil {
		return nil, err
	}
	c := &rpcConn{raw: raw,
		tls: tls.Client(raw, daemonClientConfig(to.IP, roots, alpnRPC, cr))}
	c.br = bufio.NewReader(c.tls)
	if err := c.tls.Handshake(); err != nil {
		raw.Close()
		return c, fmt.Errorf("handshake: %w", err)
	}
	return c, nil
}

// ping sends GET /v1/ping on c and wants 200.
func (c *rpcConn) ping(to *Host) error {
	c.raw.SetDeadline(time.Now().Add(probeTimeout))
	req, _ := http.NewRequest("GET", "https://"+daemonPortAddr(to)+
		"/v1/ping", nil)
	if err := req.Write(c.tls); err != nil {
		return fmt.Errorf("writing request: %w", err)
	}
	resp, err := http.ReadResponse(c.br, req)
	if err != nil {
		return fmt.Errorf("reading response: %w", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %s, want 200", resp.Status)
	}
	return nil
}

func (c *rpcConn) Close() { c.raw.Close() }

// tlsAttempt is one client's try: the local address it used, which the
// server logs as the peer, and its error (nil: admitted).
type tlsAttempt struct {
	peer string
	err  error
}

// tryRPC makes one node RPC call (GET /v1/ping on a new connection)
// from `from` to `to` as cr.
func tryRPC(from, to *Host, roots *x509.CertPool, cr tlsCred) tlsAttempt {
	if cr.plain {
		return tryPlain(from, to)
	}
	c, err := openRPC(from, to, roots, cr)
	if c == nil {
		return tlsAttempt{err: err}
	}
	defer c.Close()
	a := tlsAttempt{peer: c.raw.LocalAddr().String(), err: err}
	if err == nil {
		a.err = c.ping(to)
	}
	return a
}

// tryPlain sends a node RPC request without TLS; the server must answer
// nothing.
func tryPlain(from, to *Host) tlsAttempt {
	raw, err := dialDaemonFrom(from, to)
	if err != nil {
		return tlsAttempt{err: err}
	}
	defer raw.Close()
	a := tlsAttempt{peer: raw.LocalAddr().String()}
	io.WriteString(raw, "GET /v1/ping HTTP/1.1\r\nHost: "+to.IP+
		"\r\n\r\n")
	got, err := io.ReadAll(raw)
	switch {
	case isNetTimeout(err):
		a.err = nil // an open connection that waits: not refused
	case strings.Contains(string(got), "HTTP/"):
		a.err = nil
	default:
		a.err = fmt.Errorf("closed after %d bytes: %v", len(got), err)
	}
	return a
}

func isNetTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// raftClient speaks hashicorp/raft's own network transport over TLS
// with one credential, as a Raft peer would. It only dials.
type raftClient struct {
	trans *raft.NetworkTransport
	s     *raftStream
}

// raftStream is the raft.StreamLayer of a raftClient. It remembers the
// socket of every connection it made.
type raftStream struct {
	from  *Host
	cfg   func(to string) *tls.Config
	done  chan struct{}
	once  sync.Once
	mu    sync.Mutex
	conns []*net.TCPConn
}

func (s *raftStream) Dial(addr raft.ServerAddress,
	timeout time.Duration) (net.Conn, error) {
	host, _, err := net.SplitHostPort(string(addr))
	if err != nil {
		return nil, err
	}
	d := net.Dialer{Timeout: timeout,
		LocalAddr: &net.TCPAddr{IP: net.ParseIP(s.from.IP)}}
	nc, err := d.Dial("tcp", string(addr))
	if err != nil {
		return nil, err
	}
	raw := nc.(*net.TCPConn)
	s.mu.Lock()
	s.conns = append(s.conns, raw)
	s.mu.Unlock()
	return tls.Client(raw, s.cfg(host)), nil
}

// last returns the socket of the latest connection.
func (s *raftStream) last() *net.TCPConn {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.conns) == 0 {
		return nil
	}
	return s.conns[len(s.conns)-1]
}

// Accept blocks until Close: the client serves no one.
func (s *raftStream) Accept() (net.Conn, error) {
	<-s.done
	return nil, net.ErrClosed
}

func (s *raftStream) Close() error {
	s.once.Do(func() { close(s.done) })
	return nil
}

func (s *raftStream) Addr() net.Addr {
	return &net.TCPAddr{IP: net.ParseIP(s.from.IP)}
}

// newRaftClient returns a Raft transport that dials from from's
// address, presenting cr and trusting roots. It is closed when the
// test ends.
func newRaftClient(t testing.TB, from *Host, roots *x509.CertPool,
	cr tlsCred) *raftClient {
	t.Helper()
	s := &raftStream{from: from, done: make(chan struct{}),
		cfg: func(host string) *tls.Config {
			return daemonClientConfig(host, roots, alpnRaft, cr)
		}}
	trans := raft.NewNetworkTransport(s, 1, probeTimeout, io.Discard)
	t.Cleanup(func() { trans.Close() })
	return &raftClient{trans: trans, s: s}
}

// appendEntries sends to's Raft an AppendEntries of term 0, which any
// member answers with its current term and otherwise ignores: a Raft
// message with no effect. It returns the term the member answered.
func (r *raftClient) appendEntries(to *Host) (uint64, error) {
	req := &raft.AppendEntriesRequest{
		RPCHeader: raft.RPCHeader{
			ProtocolVersion: raft.ProtocolVersionMax},
	}
	var resp raft.AppendEntriesResponse
	err := r.trans.AppendEntries(raft.ServerID(to.Name),
		raft.ServerAddress(daemonPortAddr(to)), req, &resp)
	return resp.Term, err
}

// tryRaft sends one Raft message from `from` to `to` as cr on a new
// connection.
func tryRaft(t testing.TB, from, to *Host, roots *x509.CertPool,
	cr tlsCred) tlsAttempt {
	t.Helper()
	if cr.plain {
		return tryPlain(from, to)
	}
	rc := newRaftClient(t, from, roots, cr)
	term, err := rc.appendEntries(to)
	a := tlsAttempt{err: err}
	if raw := rc.s.last(); raw != nil {
		a.peer = raw.LocalAddr().String()
	}
	if err == nil && term == 0 {
		a.err = errors.New("admitted, but the answer has term 0")
	}
	return a
}

// wantRefused fails the test unless a was refused actively: an error,
// and not a timeout.
func wantRefused(t testing.TB, what string, a tlsAttempt) {
	t.Helper()
	switch {
	case a.err == nil:
		t.Errorf("%s: admitted, want refused", what)
	case isNetTimeout(a.err):
		t.Errorf("%s: timed out (%v), want an active refusal",
			what, a.err)
	case a.peer == "":
		t.Errorf("%s: no connection made: %v", what, a.err)
	}
}

// peerClosed reports, without waiting, whether the other side has
// already closed or reset conn: the socket has an end of file or an
// error pending. More bytes pending, or none, mean it is open.
func peerClosed(conn *net.TCPConn) (bool, string) {
	// A passed deadline would fail the read before it looks.
	conn.SetReadDeadline(time.Time{})
	rc, err := conn.SyscallConn()
	if err != nil {
		return false, err.Error()
	}
	var n int
	var rerr error
	err = rc.Read(func(fd uintptr) bool {
		buf := make([]byte, 1)
		n, _, rerr = syscall.Recvfrom(int(fd), buf,
			syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return true
	})
	switch {
	case err != nil:
		return false, err.Error()
	case errors.Is(rerr, syscall.EAGAIN):
		return false, "open, nothing pending"
	case rerr != nil:
		return true, rerr.Error()
	case n == 0:
		return true, "end of file"
	}
	return false, "open, data pending"
}

// forged certificates.

// newP256Key makes an ECDSA P-256 key, the type the product uses.
func newP256Key(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func randomCertSerial(t testing.TB) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// clientTemplate is a client certificate naming node uuid, valid from
// notBefore to notAfter.
func clientTemplate(t testing.TB, name, uuid string, notBefore,
	notAfter time.Time) *x509.Certificate {
	t.Helper()
	u, err := url.Parse("urn:uuid:" + uuid)
	if err != nil {
		t.Fatal(err)
	}
	return &x509.Certificate{
		SerialNumber: randomCertSerial(t),
		Subject:      pkix.Name{CommonName: name},
		URIs:         []*url.URL{u},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
}

// issueCert signs tmpl for a fresh key with parent's key (tmpl itself
// when parent is nil: self-signed) and returns it as a client
// certificate.
func issueCert(t testing.TB, tmpl, parent *x509.Certificate,
	parentKey crypto.Signer) tls.Certificate {
	t.Helper()
	key := newP256Key(t)
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent,
		key.Public(), parentKey)
	if err != nil {
		t.Fatalf("signing %s: %v", tmpl.Subject.CommonName, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key,
		Leaf: leaf}
}

// selfSignedCopy is a self-signed certificate with victim's subject,
// URI SAN, serial and dates.
func selfSignedCopy(t testing.TB, victim *x509.Certificate) tls.Certificate {
	t.Helper()
	tmpl := clientTemplate(t, "", "", victim.NotBefore, victim.NotAfter)
	tmpl.Subject, tmpl.URIs = victim.Subject, victim.URIs
	tmpl.SerialNumber = victim.SerialNumber
	return issueCert(t, tmpl, nil, nil)
}

// foreignCA returns a fresh CA, unrelated to the cluster, and its key.
func foreignCA(t testing.TB) (*x509.Certificate, crypto.Signer) {
	t.Helper()
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          randomCertSerial(t),
		Subject:               pkix.Name{CommonName: "ganeti-node CA " + clusterName},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	kp := issueCert(t, tmpl, nil, nil)
	return kp.Leaf, kp.PrivateKey.(crypto.Signer)
}

// stolenClusterCA reads the cluster CA and its private key from a
// master candidate, as an attacker who took over one would.
func stolenClusterCA(t testing.TB,
	mc *Host) (*x509.Certificate, crypto.Signer) {
	t.Helper()
	cert, _ := pem.Decode([]byte(readLib(t, mc, "ca.pem")))
	keyBlock, _ := pem.Decode([]byte(readLib(t, mc, "ca-key.pem")))
	if cert == nil || keyBlock == nil {
		t.Fatalf("ca.pem or ca-key.pem of %s is not PEM", mc.Name)
	}
	ca, err := x509.ParseCertificate(cert.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	key, err := x509.ParsePKCS8PrivateKey(keyBlock.Bytes)
	if err != nil {
		t.Fatalf("ca-key.pem of %s: %v", mc.Name, err)
	}
	return ca, key.(crypto.Signer)
}

// daemonLogLines returns the lines of h's daemon log that hold every
// one of subs.
func daemonLogLines(h *Host, subs ...string) []string {
	data, err := os.ReadFile(h.path("daemon.log"))
	if err != nil {
		return nil
	}
	var out []string
	for line := range strings.Lines(string(data)) {
		if lineHasAll(line, subs) {
			out = append(out, strings.TrimSpace(line))
		}
	}
	return out
}

func lineHasAll(s string, subs []string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

// refusalFields are the key=value pairs of the daemon's log line for a
// refused peer: slog's text form, values quoted when they need it.
func refusalFields(peer, node, reason string) []string {
	return []string{`msg="refusing connection"`, " peer=" + peer + " ",
		" node=" + slogValue(node), " reason=" + slogValue(reason)}
}

func slogValue(s string) string {
	if s == "" || strings.ContainsAny(s, " =\"") {
		return strconv.Quote(s)
	}
	return s
}

// waitDaemonLog polls h's daemon log, boundedly, until more than
// `before` lines hold every one of subs, and returns the last. Refusals
// by TLS itself are logged just after the client sees them.
func waitDaemonLog(t testing.TB, h *Host, what string, before int,
	subs ...string) string {
	t.Helper()
	var lines []string
	WaitFor(t, what+" in the daemon log of "+h.Name, convergeWithin,
		func() (bool, string) {
			lines = daemonLogLines(h, subs...)
			return len(lines) > before, fmt.Sprintf(
				"%d lines with %q", len(lines), subs)
		})
	return lines[len(lines)-1]
}

// curlPing runs curl against to's /v1/ping from from's address with
// extra arguments and returns its exit code and output.
func curlPing(from, to *Host, extra ...string) (int, string) {
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	args := append([]string{"--silent", "--show-error", "--no-alpn",
		"--max-time", "15", "--interface", from.IP,
		"--cacert", to.LibPath("ca.pem")}, extra...)
	args = append(args, "https://"+daemonPortAddr(to)+"/v1/ping")
	cmd := exec.CommandContext(ctx, "curl", args...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), string(out)
	}
	if err != nil {
		return -1, err.Error()
	}
	return 0, string(out)
}
