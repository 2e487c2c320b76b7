package rpcsec

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"time"
)

// CA is the cluster certificate authority. Every node trusts Cert;
// only master candidates load Key and can sign.
type CA struct {
	// Cert is the self-signed CA certificate.
	Cert *x509.Certificate
	// Key signs node certificates; nil on nodes that only trust the CA.
	Key crypto.Signer
	// CertPEM is Cert in PEM form, as written to ca.pem.
	CertPEM []byte
}

// NewCA creates a self-signed ECDSA P-256 CA for clusterName, valid
// from an hour before now until now+validity. It returns the CA and
// its private key as a PKCS#8 PEM block, which only master candidates
// may store. It returns ErrBadParameter for an empty name or a
// non-positive validity.
func NewCA(clusterName string, now time.Time,
	validity time.Duration) (ca *CA, keyPEM []byte, err error) {
	if clusterName == "" || validity <= 0 {
		return nil, nil, fmt.Errorf("%w: cluster name %q, validity %v",
			ErrBadParameter, clusterName, validity)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("rpcsec: generating CA key: %w", err)
	}
	tmpl := &x509.Certificate{
		Subject: pkix.Name{CommonName: "ganeti-node CA " + clusterName},
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign |
			x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := sign(tmpl, tmpl, key.Public(), key, now, validity)
	if err != nil {
		return nil, nil, err
	}
	if keyPEM, err = encodeKey(key); err != nil {
		return nil, nil, err
	}
	ca, err = LoadCA(encodeCert(der), keyPEM)
	return ca, keyPEM, err
}

// LoadCA parses the first certificate of certPEM as the cluster CA and,
// if keyPEM is not empty, its private key. It returns ErrNotCA if the
// certificate is not a CA and ErrKeyMismatch if the key is not its key.
func LoadCA(certPEM, keyPEM []byte) (*CA, error) {
	cert, err := firstCert(certPEM)
	if err != nil {
		return nil, err
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("%w: %q", ErrNotCA, cert.Subject.CommonName)
	}
	ca := &CA{Cert: cert, CertPEM: encodeCert(cert.Raw)}
	if len(keyPEM) == 0 {
		return ca, nil
	}
	if ca.Key, err = parseKey(keyPEM); err != nil {
		return nil, err
	}
	if !keyMatches(cert, ca.Key) {
		return nil, fmt.Errorf("%w: CA %q", ErrKeyMismatch,
			cert.Subject.CommonName)
	}
	return ca, nil
}
