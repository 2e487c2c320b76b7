package rpcsec

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"time"
)

// serialLimit bounds serial numbers to 128 random bits.
var serialLimit = new(big.Int).Lsh(big.NewInt(1), 128)

// NewKeyAndCSR makes a fresh ECDSA P-256 key and a CSR for it with
// common name nodeName. It runs on the node: keyPEM never leaves it,
// only csrPEM goes to the master for signing.
func NewKeyAndCSR(nodeName string) (keyPEM, csrPEM []byte, err error) {
	if nodeName == "" {
		return nil, nil, fmt.Errorf("%w: empty node name", ErrBadParameter)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("rpcsec: generating key: %w", err)
	}
	tmpl := &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: nodeName},
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return nil, nil, fmt.Errorf("rpcsec: creating CSR: %w", err)
	}
	if keyPEM, err = encodeKey(key); err != nil {
		return nil, nil, err
	}
	csrPEM = pem.EncodeToMemory(&pem.Block{Type: pemCSR, Bytes: der})
	return keyPEM, csrPEM, nil
}

// SignServer issues a server certificate for the key in csrPEM, valid
// from an hour before now until now+validity. Its SANs are nodeName
// (DNS) and ip, taken from the arguments and never from the CSR. It
// returns ErrNoCAKey, ErrBadCSR or ErrBadParameter.
func (ca *CA) SignServer(csrPEM []byte, nodeName string, ip net.IP,
	now time.Time, validity time.Duration) (certPEM []byte, err error) {
	if nodeName == "" || ip.To16() == nil {
		return nil, fmt.Errorf("%w: node name %q, ip %v",
			ErrBadParameter, nodeName, ip)
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: nodeName},
		DNSNames:    []string{nodeName},
		IPAddresses: []net.IP{ip},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	return ca.issue(csrPEM, tmpl, now, validity)
}

// SignClient issues a client certificate for the key in csrPEM with
// common name nodeName and the URI SAN urn:uuid:nodeUUID, valid from an
// hour before now until now+validity. nodeUUID must be a lowercase
// RFC 4122 string. It returns ErrNoCAKey, ErrBadCSR or ErrBadParameter.
func (ca *CA) SignClient(csrPEM []byte, nodeName, nodeUUID string,
	now time.Time, validity time.Duration) (certPEM []byte, err error) {
	if nodeName == "" || !validUUID(nodeUUID) {
		return nil, fmt.Errorf("%w: node name %q, uuid %q",
			ErrBadParameter, nodeName, nodeUUID)
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: nodeName},
		URIs:        []*url.URL{uuidURI(nodeUUID)},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	return ca.issue(csrPEM, tmpl, now, validity)
}

func (ca *CA) issue(csrPEM []byte, tmpl *x509.Certificate,
	now time.Time, validity time.Duration) ([]byte, error) {
	if ca.Key == nil {
		return nil, ErrNoCAKey
	}
	if validity <= 0 {
		return nil, fmt.Errorf("%w: validity %v", ErrBadParameter, validity)
	}
	pub, err := csrKey(csrPEM)
	if err != nil {
		return nil, err
	}
	der, err := sign(tmpl, ca.Cert, pub, ca.Key, now, validity)
	if err != nil {
		return nil, err
	}
	return encodeCert(der), nil
}

// csrKey returns the public key of a CSR whose signature verifies.
func csrKey(csrPEM []byte) (crypto.PublicKey, error) {
	ders := blocks(csrPEM, pemCSR)
	if len(ders) == 0 {
		return nil, fmt.Errorf("%w: no %s block", ErrBadCSR, pemCSR)
	}
	csr, err := x509.ParseCertificateRequest(ders[0])
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadCSR, err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadCSR, err)
	}
	switch csr.PublicKey.(type) {
	case *ecdsa.PublicKey, ed25519.PublicKey:
		return csr.PublicKey, nil
	}
	return nil, fmt.Errorf("%w: key type %T", ErrBadCSR, csr.PublicKey)
}

// sign fills in a fresh serial and the validity window and signs tmpl.
func sign(tmpl, parent *x509.Certificate, pub crypto.PublicKey,
	key crypto.Signer, now time.Time, validity time.Duration) ([]byte, error) {
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial
	tmpl.NotBefore = now.Add(-time.Hour)
	tmpl.NotAfter = now.Add(validity)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	if err != nil {
		return nil, fmt.Errorf("rpcsec: signing certificate %q: %w",
			tmpl.Subject.CommonName, err)
	}
	return der, nil
}

// newSerial returns a random, non-zero 128-bit serial number.
func newSerial() (*big.Int, error) {
	for {
		n, err := rand.Int(rand.Reader, serialLimit)
		if err != nil {
			return nil, fmt.Errorf("rpcsec: generating serial: %w", err)
		}
		if n.Sign() > 0 {
			return n, nil
		}
	}
}
