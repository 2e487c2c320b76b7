package rapi

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeFile replaces path atomically, as the product does.
func writeFile(t testing.TB, path, data string, mode os.FileMode) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(tmp, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestUsersFile_ReloadsOnChange(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rapi_users")
	f := NewUsersFile(path)
	if us, err := f.Load(); err == nil || us.Authenticate("a", "pw") != nil {
		t.Fatalf("missing file: got %v, want an error and nobody", err)
	}
	writeFile(t, path, "a pw\n", 0o600)
	if us, err := f.Load(); err != nil || us.Authenticate("a", "pw") == nil {
		t.Fatalf("after write: got err %v or a refused, want a in", err)
	}
	writeFile(t, path, "b pw\n", 0o600)
	us, err := f.Load()
	if err != nil || us.Authenticate("a", "pw") != nil || us.Authenticate("b", "pw") == nil {
		t.Fatalf("after rewrite: got err %v; want only b", err)
	}
	writeFile(t, path, "b {bad}\n", 0o600)
	if us, err := f.Load(); !errors.Is(err, ErrBadUsersFile) || us.Authenticate("b", "pw") != nil {
		t.Fatalf("malformed file: got %v, want ErrBadUsersFile and nobody", err)
	}
}

func TestUsersFile_RefusesLooseMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rapi_users")
	writeFile(t, path, "a pw\n", 0o644)
	us, err := NewUsersFile(path).Load()
	if !errors.Is(err, ErrLooseMode) || us.Authenticate("a", "pw") != nil {
		t.Fatalf("mode 0644: got %v, want ErrLooseMode and nobody", err)
	}
}

// certPool trusts the certificate of a rapi.pem explicitly.
func certPool(t testing.TB, pemData []byte) *x509.CertPool {
	t.Helper()
	pub, err := PublicPEM(pemData)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(pub), "PRIVATE KEY") {
		t.Fatal("PublicPEM kept the private key")
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pub) {
		t.Fatal("no certificate in PublicPEM output")
	}
	return pool
}

// serveTLS accepts one connection with conf and writes "ok" on it.
func serveTLS(t testing.TB, conf *tls.Config) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", conf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("ok"))
			c.Close()
		}
	}()
	return ln.Addr().String()
}

func dialRead(addr string, conf *tls.Config) (string, error) {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second},
		"tcp", addr, conf)
	if err != nil {
		return "", err
	}
	defer c.Close()
	b, err := io.ReadAll(c)
	return string(b), err
}

func TestCertFile_ServesTrustedCertificate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rapi.pem")
	data, err := NewCertificate("cluster1.example", time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, string(data), 0o600)
	addr := serveTLS(t, NewCertFile(path).TLSConfig())

	trusted := &tls.Config{RootCAs: certPool(t, data), ServerName: "cluster1.example"}
	if got, err := dialRead(addr, trusted); err != nil || got != "ok" {
		t.Fatalf("trusting client: got %q, %v; want ok", got, err)
	}
	// Without explicit trust, or for another name, the handshake fails.
	other, err := NewCertificate("cluster1.example", time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for name, conf := range map[string]*tls.Config{
		"system roots": {ServerName: "cluster1.example"},
		"other cert":   {RootCAs: certPool(t, other), ServerName: "cluster1.example"},
		"wrong name":   {RootCAs: certPool(t, data), ServerName: "node1"},
		"below tls 1.3": {RootCAs: certPool(t, data),
			ServerName: "cluster1.example", MaxVersion: tls.VersionTLS12},
	} {
		if _, err := dialRead(addr, conf); err == nil {
			t.Errorf("%s: handshake succeeded, want refusal", name)
		}
	}
}

func TestCertFile_ReloadsAndRefusesLooseMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rapi.pem")
	first, _ := NewCertificate("c.example", time.Now(), time.Hour)
	second, _ := NewCertificate("c.example", time.Now(), time.Hour)
	cf := NewCertFile(path)
	if _, err := cf.Load(); err == nil {
		t.Fatal("missing file: got nil error")
	}
	writeFile(t, path, string(first), 0o600)
	a, err := cf.Load()
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, string(second), 0o600)
	b, err := cf.Load()
	if err != nil {
		t.Fatal(err)
	}
	if string(a.Certificate[0]) == string(b.Certificate[0]) {
		t.Fatal("certificate not reloaded after the file changed")
	}
	writeFile(t, path, string(second), 0o640)
	if _, err := cf.Load(); !errors.Is(err, ErrLooseMode) {
		t.Fatalf("mode 0640: got %v, want ErrLooseMode", err)
	}
}

func TestNewCertificate_RefusesBadParameters(t *testing.T) {
	if _, err := NewCertificate("", time.Now(), time.Hour); err == nil {
		t.Error("empty name: got nil error")
	}
	if _, err := NewCertificate("c", time.Now(), 0); err == nil {
		t.Error("zero validity: got nil error")
	}
	if _, err := PublicPEM([]byte("junk")); !errors.Is(err, ErrNoCertificate) {
		t.Errorf("PublicPEM(junk): got %v, want ErrNoCertificate", err)
	}
}
