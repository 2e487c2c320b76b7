package rpcsec

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// t0 is the fixed clock of the unit tests.
var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

const day = 24 * time.Hour

// testNode is one node's certificates and keys.
type testNode struct {
	name      string
	uuid      string
	ip        net.IP
	serverPEM []byte // certificate and key, as in server.pem
	clientPEM []byte // certificate and key, as in client.pem
	client    *x509.Certificate
	clientKey crypto.Signer
}

func newTestCA(t testing.TB, now time.Time, validity time.Duration) *CA {
	t.Helper()
	ca, _, err := NewCA("test", now, validity)
	if err != nil {
		t.Fatalf("NewCA: %v", err)
	}
	return ca
}

// newTestNode issues server and client certificates for a node, valid
// from now-1h to now+1d.
func newTestNode(t testing.TB, ca *CA, name, uuid string, ip net.IP,
	now time.Time) *testNode {
	t.Helper()
	n := &testNode{name: name, uuid: uuid, ip: ip}
	key, csr := newCSR(t, name)
	cert, err := ca.SignServer(csr, name, ip, now, day)
	if err != nil {
		t.Fatalf("SignServer: %v", err)
	}
	n.serverPEM = append(cert, key...)
	n.clientPEM, n.client, n.clientKey = newClientCert(t, ca, n, now)
	return n
}

// newClientCert issues another client certificate for n.
func newClientCert(t testing.TB, ca *CA, n *testNode,
	now time.Time) ([]byte, *x509.Certificate, crypto.Signer) {
	t.Helper()
	key, csr := newCSR(t, n.name)
	cert, err := ca.SignClient(csr, n.name, n.uuid, now, day)
	if err != nil {
		t.Fatalf("SignClient: %v", err)
	}
	signer, err := parseKey(key)
	if err != nil {
		t.Fatalf("parseKey: %v", err)
	}
	return append(cert, key...), mustCert(t, cert), signer
}

func newCSR(t testing.TB, name string) (keyPEM, csrPEM []byte) {
	t.Helper()
	keyPEM, csrPEM, err := NewKeyAndCSR(name)
	if err != nil {
		t.Fatalf("NewKeyAndCSR: %v", err)
	}
	return keyPEM, csrPEM
}

func (n *testNode) identity(t testing.TB, caPEM ...[]byte) *Identity {
	t.Helper()
	id, err := NewIdentity(n.serverPEM, n.clientPEM, bytes.Join(caPEM, nil))
	if err != nil {
		t.Fatalf("NewIdentity(%s): %v", n.name, err)
	}
	return id
}

// tlsCert returns n's client certificate for a crypto/tls config.
func (n *testNode) tlsCert() tls.Certificate {
	return tls.Certificate{
		Certificate: [][]byte{n.client.Raw},
		PrivateKey:  n.clientKey,
	}
}

func mustCert(t testing.TB, certPEM []byte) *x509.Certificate {
	t.Helper()
	c, err := firstCert(certPEM)
	if err != nil {
		t.Fatalf("parsing certificate: %v", err)
	}
	return c
}

// selfSigned returns a self-signed client certificate that copies the
// subject, URI SANs, serial and dates of victim: a forgery.
func selfSigned(t testing.TB, victim *x509.Certificate) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: victim.SerialNumber,
		Subject:      victim.Subject,
		URIs:         victim.URIs,
		NotBefore:    victim.NotBefore,
		NotAfter:     victim.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl,
		key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key,
		Leaf: leaf}
}

// caSigned issues a certificate from ca for a fresh key with the given
// URIs and usage, bypassing SignClient's checks. It returns the
// certificate and key as in client.pem.
func caSigned(t testing.TB, ca *CA, uris []*url.URL,
	usage x509.ExtKeyUsage) (*x509.Certificate, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: "odd"},
		URIs:        uris,
		ExtKeyUsage: []x509.ExtKeyUsage{usage},
	}
	der, err := sign(tmpl, ca.Cert, key.Public(), ca.Key, t0, day)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	keyPEM, _ := encodeKey(key)
	return c, append(encodeCert(der), keyPEM...)
}

// caSignedAt issues a client certificate from ca for a fresh key with
// the given URIs, valid from notBefore to notAfter, bypassing
// SignClient's dating.
func caSignedAt(t testing.TB, ca *CA, uris []*url.URL, notBefore,
	notAfter time.Time) (*x509.Certificate, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := newSerial()
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "backdated"},
		URIs:         uris,
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert,
		key.Public(), ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	keyPEM, _ := encodeKey(key)
	return c, append(encodeCert(der), keyPEM...)
}

// x509Opts verifies client certificates against id's roots at now.
func x509Opts(id *Identity, now time.Time) x509.VerifyOptions {
	return x509.VerifyOptions{
		Roots:       id.Roots(),
		CurrentTime: now,
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
}

// logBuffer collects log output for assertions.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *logBuffer) mustContain(t testing.TB, subs ...string) {
	t.Helper()
	s := b.String()
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			t.Errorf("log lacks %q; log:\n%s", sub, s)
		}
	}
}

// waitFor polls, for at most wait, until the log holds every one of
// subs on one line: some refusals are logged after the client has
// seen the connection fail.
func (b *logBuffer) waitFor(t testing.TB, subs ...string) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !b.hasLine(subs) {
		if time.Now().After(deadline) {
			t.Fatalf("no log line with %q within %v; log:\n%s",
				subs, wait, b.String())
		}
		time.Sleep(5 * time.Millisecond) // poll interval
	}
}

func (b *logBuffer) hasLine(subs []string) bool {
	for line := range strings.Lines(b.String()) {
		if containsAll(line, subs) {
			return true
		}
	}
	return false
}

func containsAll(s string, subs []string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

func newLog() (*slog.Logger, *logBuffer) {
	b := &logBuffer{}
	h := slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelInfo})
	return slog.New(h), b
}
