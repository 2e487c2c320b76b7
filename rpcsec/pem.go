package rpcsec

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"fmt"
)

const (
	pemCert = "CERTIFICATE"
	pemKey  = "PRIVATE KEY"
	pemCSR  = "CERTIFICATE REQUEST"
)

// blocks returns the DER of every PEM block of type typ in data.
func blocks(data []byte, typ string) [][]byte {
	var out [][]byte
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return out
		}
		if b.Type == typ {
			out = append(out, b.Bytes)
		}
	}
}

func firstCert(data []byte) (*x509.Certificate, error) {
	ders := blocks(data, pemCert)
	if len(ders) == 0 {
		return nil, ErrNoCertificate
	}
	cert, err := x509.ParseCertificate(ders[0])
	if err != nil {
		return nil, fmt.Errorf("rpcsec: parsing certificate: %w", err)
	}
	return cert, nil
}

func parseKey(data []byte) (crypto.Signer, error) {
	ders := blocks(data, pemKey)
	if len(ders) == 0 {
		return nil, ErrNoKey
	}
	k, err := x509.ParsePKCS8PrivateKey(ders[0])
	if err != nil {
		return nil, fmt.Errorf("rpcsec: parsing private key: %w", err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("rpcsec: private key of type %T "+
			"cannot sign", k)
	}
	return s, nil
}

func encodeKey(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("rpcsec: encoding private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemKey, Bytes: der}), nil
}

func encodeCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: pemCert, Bytes: der})
}

// keyMatches reports whether key is the private half of cert's key.
func keyMatches(cert *x509.Certificate, key crypto.Signer) bool {
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	return ok && pub.Equal(cert.PublicKey)
}

// CertificatesOnly returns the CERTIFICATE blocks of data re-encoded,
// so that no other block (a private key) can slip through when a
// certificate file is shown to another node; nil when there are none.
func CertificatesOnly(data []byte) []byte {
	var out []byte
	for _, der := range blocks(data, "CERTIFICATE") {
		out = append(out, encodeCert(der)...)
	}
	return out
}
