package rpcsec

import (
	"bytes"
	"crypto/x509"
	"errors"
	"io/fs"
	"net"
	"path/filepath"
	"slices"
	"testing"

	"ganeti-node/atomicfile"
)

func TestNewIdentity_Fields(t *testing.T) {
	ca := newTestCA(t, t0, 365*day)
	n := newTestNode(t, ca, "n1", uuidA, net.IPv4(127, 0, 0, 1), t0)
	id := n.identity(t, ca.CertPEM)
	want, _ := DigestPEM(n.clientPEM)
	if got := id.ClientDigest(); got != want {
		t.Errorf("ClientDigest: got %s, want %s", got, want)
	}
	if got := id.NodeUUID(); got != uuidA {
		t.Errorf("NodeUUID: got %q, want %q", got, uuidA)
	}
	if _, err := n.client.Verify(x509Opts(id, t0)); err != nil {
		t.Errorf("Roots do not verify own client certificate: %v", err)
	}
}

func TestNewIdentity_Rejects(t *testing.T) {
	ca := newTestCA(t, t0, 365*day)
	other := newTestCA(t, t0, 365*day)
	n := newTestNode(t, ca, "n1", uuidA, net.IPv4(127, 0, 0, 1), t0)
	alien := newTestNode(t, other, "n1", uuidA, net.IPv4(127, 0, 0, 1), t0)
	// The server certificate with the client key.
	crossed := slices.Concat(certPart(n.serverPEM), keyPart(n.clientPEM))
	_, noID := caSigned(t, ca, nil, x509.ExtKeyUsageClientAuth)
	tests := []struct {
		name           string
		server, client []byte
		caPEM          []byte
		wantErr        error
	}{
		{"server and client swapped", n.clientPEM, n.serverPEM,
			ca.CertPEM, ErrWrongUsage},
		{"key of another certificate", crossed, n.clientPEM,
			ca.CertPEM, ErrKeyMismatch},
		{"other CA", alien.serverPEM, alien.clientPEM, ca.CertPEM,
			ErrNotSignedByCA},
		{"no CA", n.serverPEM, n.clientPEM, nil, ErrNoCertificate},
		{"leaf as CA", n.serverPEM, n.clientPEM, n.clientPEM,
			ErrNotCA},
		{"no key", certPart(n.serverPEM), n.clientPEM, ca.CertPEM,
			ErrNoKey},
		{"client without uuid", n.serverPEM, noID, ca.CertPEM,
			ErrNoNodeID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewIdentity(tt.server, tt.client, tt.caPEM)
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("got %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestIdentity_UpdateKeepsOldOnError(t *testing.T) {
	ca := newTestCA(t, t0, 365*day)
	a := newTestNode(t, ca, "a", uuidA, net.IPv4(127, 0, 0, 1), t0)
	b := newTestNode(t, ca, "b", uuidB, net.IPv4(127, 0, 0, 1), t0)
	id := a.identity(t, ca.CertPEM)
	if err := id.Update(b.serverPEM, b.clientPEM, nil); err == nil {
		t.Fatal("Update without CA: got nil error")
	}
	if id.NodeUUID() != uuidA {
		t.Errorf("after failed Update: got %q, want %q",
			id.NodeUUID(), uuidA)
	}
	if err := id.Update(b.serverPEM, b.clientPEM, ca.CertPEM); err != nil {
		t.Fatalf("Update: %v", err)
	}
	if id.NodeUUID() != uuidB {
		t.Errorf("after Update: got %q, want %q", id.NodeUUID(), uuidB)
	}
}

func TestNewIdentity_TrustsEveryCA(t *testing.T) {
	oldCA := newTestCA(t, t0, 365*day)
	newCA := newTestCA(t, t0, 365*day)
	n := newTestNode(t, newCA, "n1", uuidA, net.IPv4(127, 0, 0, 1), t0)
	old := newTestNode(t, oldCA, "n2", uuidB, net.IPv4(127, 0, 0, 1), t0)
	id := n.identity(t, oldCA.CertPEM, newCA.CertPEM)
	if _, err := old.client.Verify(x509Opts(id, t0)); err != nil {
		t.Errorf("old CA's client not trusted during rotation: %v", err)
	}
}

func TestLoadIdentity(t *testing.T) {
	ca := newTestCA(t, t0, 365*day)
	n := newTestNode(t, ca, "n1", uuidA, net.IPv4(127, 0, 0, 1), t0)
	dir := t.TempDir()
	files := map[string][]byte{
		"server.pem": n.serverPEM,
		"client.pem": n.clientPEM,
		"ca.pem":     ca.CertPEM,
	}
	for name, data := range files {
		if err := atomicfile.Write(filepath.Join(dir, name), data,
			0o600); err != nil {
			t.Fatal(err)
		}
	}
	id, err := LoadIdentity(dir)
	if err != nil {
		t.Fatalf("LoadIdentity: %v", err)
	}
	if id.NodeUUID() != uuidA {
		t.Errorf("got %q, want %q", id.NodeUUID(), uuidA)
	}
	if _, err := LoadIdentity(t.TempDir()); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("empty dir: got %v, want fs.ErrNotExist", err)
	}
}

// certPart and keyPart split a server.pem / client.pem.
func certPart(p []byte) []byte {
	return p[:bytes.Index(p, []byte("-----BEGIN PRIVATE KEY"))]
}

func keyPart(p []byte) []byte {
	return p[bytes.Index(p, []byte("-----BEGIN PRIVATE KEY")):]
}
