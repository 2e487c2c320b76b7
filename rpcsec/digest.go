package rpcsec

import (
	"crypto/sha256"
	"encoding/hex"
)

// Digest returns the fingerprint of a DER certificate as the candidate
// map stores it: "sha256:" followed by the lowercase hex SHA-256.
func Digest(der []byte) string {
	sum := sha256.Sum256(der)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// DigestPEM returns the Digest of the first CERTIFICATE block of
// certPEM. It returns ErrNoCertificate if there is none, or the parse
// error if the block is not a certificate.
func DigestPEM(certPEM []byte) (string, error) {
	cert, err := firstCert(certPEM)
	if err != nil {
		return "", err
	}
	return Digest(cert.Raw), nil
}
