package rpcsec

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
)

// Identity is what a node presents (its server and client certificates)
// and what it trusts (the cluster CA certificates). It is safe for
// concurrent use; Update swaps all of it at once, and handshakes that
// start afterwards use the new material. Create it with NewIdentity or
// LoadIdentity; the zero value is not usable.
type Identity struct {
	cur atomic.Pointer[idState]
}

type idState struct {
	server tls.Certificate
	client tls.Certificate
	roots  *x509.CertPool
	digest string
	node   string
}

// NewIdentity builds an Identity from the node's files: serverPEM and
// clientPEM each hold a CERTIFICATE block followed by its PRIVATE KEY
// block, and caPEM holds one or more CA certificates, all trusted (so
// that a CA rotation can overlap). Both certificates must be signed by
// one of those CAs and carry the matching extended key usage, and the
// client certificate must name the node's UUID. Validity dates are not
// checked here, so an expired identity still loads and can be renewed.
func NewIdentity(serverPEM, clientPEM, caPEM []byte) (*Identity, error) {
	st, err := newState(serverPEM, clientPEM, caPEM)
	if err != nil {
		return nil, err
	}
	id := &Identity{}
	id.cur.Store(st)
	return id, nil
}

// LoadIdentity reads server.pem, client.pem and ca.pem from dir and
// returns NewIdentity of them.
func LoadIdentity(dir string) (*Identity, error) {
	var pems [3][]byte
	for i, name := range []string{"server.pem", "client.pem", "ca.pem"} {
		p := filepath.Join(dir, name)
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("rpcsec: reading %q: %w", p, err)
		}
		pems[i] = b
	}
	return NewIdentity(pems[0], pems[1], pems[2])
}

// Update replaces the identity after a certificate renewal or CA
// rotation. Connections already open are not affected. On error the
// identity is unchanged.
func (id *Identity) Update(serverPEM, clientPEM, caPEM []byte) error {
	st, err := newState(serverPEM, clientPEM, caPEM)
	if err != nil {
		return err
	}
	id.cur.Store(st)
	return nil
}

// ClientDigest returns the Digest of the node's own client certificate,
// the value its candidate-map entry must hold.
func (id *Identity) ClientDigest() string { return id.cur.Load().digest }

// NodeUUID returns the node UUID named by the own client certificate.
func (id *Identity) NodeUUID() string { return id.cur.Load().node }

// Roots returns the pool of trusted CA certificates. The caller must
// not modify it.
func (id *Identity) Roots() *x509.CertPool { return id.cur.Load().roots }

func newState(serverPEM, clientPEM, caPEM []byte) (*idState, error) {
	cas, err := parseCAs(caPEM)
	if err != nil {
		return nil, err
	}
	st := &idState{roots: x509.NewCertPool()}
	for _, c := range cas {
		st.roots.AddCert(c)
	}
	st.server, err = keyPair("server", serverPEM, cas,
		x509.ExtKeyUsageServerAuth)
	if err != nil {
		return nil, err
	}
	st.client, err = keyPair("client", clientPEM, cas,
		x509.ExtKeyUsageClientAuth)
	if err != nil {
		return nil, err
	}
	if st.node, err = NodeUUID(st.client.Leaf); err != nil {
		return nil, fmt.Errorf("rpcsec: client certificate: %w", err)
	}
	st.digest = Digest(st.client.Leaf.Raw)
	return st, nil
}

func parseCAs(caPEM []byte) ([]*x509.Certificate, error) {
	ders := blocks(caPEM, pemCert)
	if len(ders) == 0 {
		return nil, fmt.Errorf("rpcsec: CA certificates: %w",
			ErrNoCertificate)
	}
	cas := make([]*x509.Certificate, 0, len(ders))
	for _, der := range ders {
		ca, err := LoadCA(encodeCert(der), nil)
		if err != nil {
			return nil, err
		}
		cas = append(cas, ca.Cert)
	}
	return cas, nil
}

// keyPair parses a certificate+key PEM and checks that the key is the
// certificate's and that one of cas signed it for usage.
func keyPair(what string, data []byte, cas []*x509.Certificate,
	usage x509.ExtKeyUsage) (tls.Certificate, error) {
	var kp tls.Certificate
	leaf, err := firstCert(data)
	if err != nil {
		return kp, fmt.Errorf("rpcsec: %s certificate: %w", what, err)
	}
	key, err := parseKey(data)
	if err != nil {
		return kp, fmt.Errorf("rpcsec: %s key: %w", what, err)
	}
	name := leaf.Subject.CommonName
	switch {
	case !keyMatches(leaf, key):
		return kp, fmt.Errorf("%w: %s %q", ErrKeyMismatch, what, name)
	case !slices.Contains(leaf.ExtKeyUsage, usage):
		return kp, fmt.Errorf("%w: %s %q", ErrWrongUsage, what, name)
	case !signedByAny(leaf, cas):
		return kp, fmt.Errorf("%w: %s %q", ErrNotSignedByCA, what, name)
	}
	kp = tls.Certificate{
		Certificate: [][]byte{leaf.Raw},
		PrivateKey:  key,
		Leaf:        leaf,
	}
	return kp, nil
}

func signedByAny(leaf *x509.Certificate, cas []*x509.Certificate) bool {
	return slices.ContainsFunc(cas, func(ca *x509.Certificate) bool {
		return leaf.CheckSignatureFrom(ca) == nil
	})
}
