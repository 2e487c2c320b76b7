package rapi

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"time"
)

// ErrNoCertificate is returned by PublicPEM when the data holds no
// certificate.
var ErrNoCertificate = errors.New("rapi: no certificate in PEM data")

// NewCertificate makes the RAPI server certificate: a fresh ECDSA
// P-256 key and a self-signed certificate for the DNS name
// clusterName, valid from an hour before now until now+validity. It
// returns one PEM file, the certificate followed by the private key,
// as rapi.pem holds them. The certificate is independent of the
// cluster CA: a RAPI client trusts it explicitly and gains no trust in
// the node daemons' certificates.
func NewCertificate(clusterName string, now time.Time,
	validity time.Duration) ([]byte, error) {
	if clusterName == "" || validity <= 0 {
		return nil, fmt.Errorf("rapi: certificate for cluster %q, validity %v: "+
			"need a name and a positive validity", clusterName, validity)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("rapi: generating key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("rapi: generating serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial.Add(serial, big.NewInt(1)),
		Subject:      pkix.Name{CommonName: clusterName},
		DNSNames:     []string{clusterName},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("rapi: signing certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("rapi: encoding key: %w", err)
	}
	out := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return append(out, pem.EncodeToMemory(
		&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})...), nil
}

// PublicPEM returns the certificate blocks of a rapi.pem, without the
// private key: what a client needs to trust the server.
func PublicPEM(data []byte) ([]byte, error) {
	var out []byte
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type == "CERTIFICATE" {
			out = append(out, pem.EncodeToMemory(b)...)
		}
	}
	if len(out) == 0 {
		return nil, ErrNoCertificate
	}
	return out, nil
}
