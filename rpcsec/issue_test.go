package rpcsec

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"
)

const (
	uuidA = "aaaaaaaa-0000-4000-8000-00000000000a"
	uuidB = "bbbbbbbb-0000-4000-8000-00000000000b"
	uuidC = "cccccccc-0000-4000-8000-00000000000c"
)

func TestDigest_Format(t *testing.T) {
	got := Digest([]byte("abc"))
	want := "sha256:ba7816bf8f01cfea414140de5dae2223" +
		"b00361a396177a9cb410ff61f20015ad"
	if got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

func TestDigestPEM_FirstCertificate(t *testing.T) {
	ca := newTestCA(t, t0, 365*day)
	n := newTestNode(t, ca, "n1", uuidA, net.IPv4(127, 0, 0, 1), t0)
	// client.pem order is certificate then key; a key first must be
	// skipped.
	key := n.clientPEM[strings.Index(string(n.clientPEM), "-----BEGIN P"):]
	got, err := DigestPEM(slices.Concat(key, n.clientPEM))
	if err != nil {
		t.Fatalf("DigestPEM: %v", err)
	}
	if want := Digest(n.client.Raw); got != want {
		t.Errorf("got %s, want %s", got, want)
	}
	if _, err := DigestPEM(key); !errors.Is(err, ErrNoCertificate) {
		t.Errorf("key only: got %v, want ErrNoCertificate", err)
	}
}

func TestNewCA_Certificate(t *testing.T) {
	ca, keyPEM, err := NewCA("prod", t0, 10*365*day)
	if err != nil {
		t.Fatalf("NewCA: %v", err)
	}
	c := ca.Cert
	if got, want := c.Subject.CommonName, "ganeti-node CA prod"; got != want {
		t.Errorf("CN: got %q, want %q", got, want)
	}
	if !c.IsCA || c.CheckSignatureFrom(c) != nil {
		t.Errorf("got IsCA %v, want a self-signed CA", c.IsCA)
	}
	if pub, ok := c.PublicKey.(*ecdsa.PublicKey); !ok ||
		pub.Curve != elliptic.P256() {
		t.Errorf("key: got %T, want ECDSA P-256", c.PublicKey)
	}
	if !c.NotBefore.Equal(t0.Add(-time.Hour)) ||
		!c.NotAfter.Equal(t0.Add(10*365*day)) {
		t.Errorf("validity: got %v..%v", c.NotBefore, c.NotAfter)
	}
	if n := c.SerialNumber.BitLen(); n > 128 || n < 64 {
		t.Errorf("serial: got %d bits, want about 128", n)
	}
	if b, _ := pem.Decode(keyPEM); b == nil || b.Type != "PRIVATE KEY" {
		t.Errorf("key PEM: got %q, want a PRIVATE KEY block", keyPEM)
	}
	if _, err := LoadCA(ca.CertPEM, keyPEM); err != nil {
		t.Errorf("LoadCA of NewCA output: %v", err)
	}
}

func TestLoadCA_Errors(t *testing.T) {
	ca := newTestCA(t, t0, day)
	_, otherKey, _ := NewCA("other", t0, day)
	n := newTestNode(t, ca, "n1", uuidA, net.IPv4(127, 0, 0, 1), t0)
	tests := []struct {
		name    string
		cert    []byte
		key     []byte
		wantErr error
	}{
		{"cert only", ca.CertPEM, nil, nil},
		{"foreign key", ca.CertPEM, otherKey, ErrKeyMismatch},
		{"not a CA", n.clientPEM, nil, ErrNotCA},
		{"no cert", otherKey, nil, ErrNoCertificate},
		{"no key block", ca.CertPEM, ca.CertPEM, ErrNoKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := LoadCA(tt.cert, tt.key)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("got %v, want %v", err, tt.wantErr)
			}
			if err == nil && got.Key != nil {
				t.Errorf("got a key, want nil for a trust-only CA")
			}
		})
	}
}

func TestCA_SignServerIgnoresCSRNames(t *testing.T) {
	ca := newTestCA(t, t0, 365*day)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr := csrPEM(t, &x509.CertificateRequest{
		Subject:     pkix.Name{CommonName: "n1"},
		DNSNames:    []string{"master.example"},
		IPAddresses: []net.IP{net.IPv4(10, 0, 0, 1)},
	}, key)
	ip := net.IPv4(127, 0, 0, 7)
	out, err := ca.SignServer(csr, "n1", ip, t0, day)
	if err != nil {
		t.Fatalf("SignServer: %v", err)
	}
	c := mustCert(t, out)
	if !slices.Equal(c.DNSNames, []string{"n1"}) ||
		len(c.IPAddresses) != 1 || !c.IPAddresses[0].Equal(ip) {
		t.Errorf("SANs: got %v %v, want [n1] [%v]",
			c.DNSNames, c.IPAddresses, ip)
	}
	if !slices.Equal(c.ExtKeyUsage,
		[]x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}) {
		t.Errorf("EKU: got %v, want server auth", c.ExtKeyUsage)
	}
	if !c.NotBefore.Equal(t0.Add(-time.Hour)) ||
		!c.NotAfter.Equal(t0.Add(day)) {
		t.Errorf("validity: got %v..%v", c.NotBefore, c.NotAfter)
	}
	if err := c.CheckSignatureFrom(ca.Cert); err != nil {
		t.Errorf("signature: %v", err)
	}
}

func TestCA_SignClient(t *testing.T) {
	ca := newTestCA(t, t0, 365*day)
	n := newTestNode(t, ca, "n1", uuidA, net.IPv4(127, 0, 0, 1), t0)
	_, again, _ := newClientCert(t, ca, n, t0)
	c := n.client
	if c.Subject.CommonName != "n1" {
		t.Errorf("CN: got %q, want n1", c.Subject.CommonName)
	}
	if got, err := NodeUUID(c); err != nil || got != uuidA {
		t.Errorf("NodeUUID: got %q, %v, want %q", got, err, uuidA)
	}
	if !slices.Equal(c.ExtKeyUsage,
		[]x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) {
		t.Errorf("EKU: got %v, want client auth", c.ExtKeyUsage)
	}
	if c.SerialNumber.Cmp(again.SerialNumber) == 0 {
		t.Errorf("two certificates share serial %v", c.SerialNumber)
	}
}

func TestCA_SignRejects(t *testing.T) {
	ca := newTestCA(t, t0, 365*day)
	trustOnly, _ := LoadCA(ca.CertPEM, nil)
	_, csr := newCSR(t, "n1")
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	rsaCSR := csrPEM(t, &x509.CertificateRequest{}, rsaKey)
	ip := net.IPv4(127, 0, 0, 1)
	tests := []struct {
		name    string
		sign    func() ([]byte, error)
		wantErr error
	}{
		{"no CA key", func() ([]byte, error) {
			return trustOnly.SignClient(csr, "n1", uuidA, t0, day)
		}, ErrNoCAKey},
		{"tampered CSR", func() ([]byte, error) {
			return ca.SignClient(tamper(t, csr), "n1", uuidA, t0, day)
		}, ErrBadCSR},
		{"no CSR", func() ([]byte, error) {
			return ca.SignServer(ca.CertPEM, "n1", ip, t0, day)
		}, ErrBadCSR},
		{"RSA key", func() ([]byte, error) {
			return ca.SignServer(rsaCSR, "n1", ip, t0, day)
		}, ErrBadCSR},
		{"empty name", func() ([]byte, error) {
			return ca.SignServer(csr, "", ip, t0, day)
		}, ErrBadParameter},
		{"nil ip", func() ([]byte, error) {
			return ca.SignServer(csr, "n1", nil, t0, day)
		}, ErrBadParameter},
		{"uppercase uuid", func() ([]byte, error) {
			u := strings.ToUpper(uuidA)
			return ca.SignClient(csr, "n1", u, t0, day)
		}, ErrBadParameter},
		{"zero validity", func() ([]byte, error) {
			return ca.SignClient(csr, "n1", uuidA, t0, 0)
		}, ErrBadParameter},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := tt.sign()
			if !errors.Is(err, tt.wantErr) || out != nil {
				t.Errorf("got %v (%d bytes), want %v",
					err, len(out), tt.wantErr)
			}
		})
	}
}

func csrPEM(t testing.TB, tmpl *x509.CertificateRequest,
	key any) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemCSR, Bytes: der})
}

// tamper changes the requested common name of a signed CSR.
func tamper(t testing.TB, csr []byte) []byte {
	t.Helper()
	b, _ := pem.Decode(csr)
	der := []byte(strings.Replace(string(b.Bytes), "n1", "n2", 1))
	return pem.EncodeToMemory(&pem.Block{Type: pemCSR, Bytes: der})
}
