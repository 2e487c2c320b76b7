package rpcsec

import (
	"errors"
	"fmt"
)

var (
	// ErrNoCertificate is returned when PEM input holds no CERTIFICATE
	// block.
	ErrNoCertificate = errors.New("rpcsec: no CERTIFICATE block")
	// ErrNoKey is returned when PEM input holds no PRIVATE KEY block.
	ErrNoKey = errors.New("rpcsec: no PRIVATE KEY block")
	// ErrKeyMismatch is returned when a private key does not belong to
	// the certificate it is loaded with.
	ErrKeyMismatch = errors.New(
		"rpcsec: private key does not match certificate")
	// ErrNotCA is returned when a certificate given as a CA is not one.
	ErrNotCA = errors.New("rpcsec: certificate is not a CA")
	// ErrNoCAKey is returned when a CA without its private key is asked
	// to sign; only master candidates hold the key.
	ErrNoCAKey = errors.New("rpcsec: CA private key not loaded; " +
		"sign on a master candidate")
	// ErrBadCSR is returned when a CSR cannot be parsed, its signature
	// does not verify, or its key type is not ECDSA or Ed25519.
	ErrBadCSR = errors.New("rpcsec: invalid certificate request")
	// ErrBadParameter is returned when a name, address or validity given
	// to an issuing function is empty or out of range.
	ErrBadParameter = errors.New("rpcsec: invalid parameter")
	// ErrNoNodeID is returned when a client certificate does not name
	// exactly one node UUID in a urn:uuid URI SAN, or the UUID is not a
	// lowercase RFC 4122 string.
	ErrNoNodeID = errors.New("rpcsec: no valid node UUID in certificate")
	// ErrNotSignedByCA is returned when an identity's certificate is not
	// signed by any of the CA certificates it is loaded with.
	ErrNotSignedByCA = errors.New(
		"rpcsec: certificate not signed by the cluster CA")
	// ErrWrongUsage is returned when a server certificate lacks server
	// auth or a client certificate lacks client auth usage.
	ErrWrongUsage = errors.New("rpcsec: wrong extended key usage")
	// ErrALPN is returned when a protocol other than ALPNRPC or ALPNRaft
	// is asked for, or the server negotiates another one.
	ErrALPN = errors.New("rpcsec: unexpected ALPN protocol")
)

// Reason says why a peer was refused.
type Reason string

// The reasons for refusing a peer, in the order Admission.Check tests
// them.
const (
	// ReasonNoCertificate means the peer presented no certificate.
	ReasonNoCertificate Reason = "no client certificate"
	// ReasonWrongCA means the certificate does not chain to a cluster
	// CA: it is self-signed or from another CA.
	ReasonWrongCA Reason = "not signed by the cluster CA"
	// ReasonWrongUsage means the certificate is CA-signed but not for
	// client authentication, such as a server certificate.
	ReasonWrongUsage Reason = "not a client certificate"
	// ReasonExpired means the certificate, or its CA, is expired or not
	// yet valid.
	ReasonExpired Reason = "expired or not yet valid"
	// ReasonNoNodeID means there is no single, well-formed urn:uuid URI
	// SAN.
	ReasonNoNodeID Reason = "no node UUID in certificate"
	// ReasonUnknownNode means the named node has no candidate-map entry:
	// it is a normal node, or was demoted, offlined or removed.
	ReasonUnknownNode Reason = "node not in candidate map"
	// ReasonDigestMismatch means the candidate-map entry of the node
	// names another certificate, such as a renewed one.
	ReasonDigestMismatch Reason = "digest differs from candidate map"
	// ReasonHandshake means TLS failed before or after the certificate
	// check: the client does not speak TLS 1.3, or not TLS at all, or
	// cannot prove it holds the certificate's private key. Check
	// never returns it; the Mux logs it.
	ReasonHandshake Reason = "TLS handshake failed"
)

// RefusedError is returned by Admission.Check, and ends a refused
// handshake, with the evidence of the refusal.
type RefusedError struct {
	// Peer is the remote address; empty when Check is called directly.
	Peer string
	// Node is the node UUID the certificate claims, whether or not
	// the certificate is genuine, or empty if it names none.
	Node string
	// Reason is why the peer was refused.
	Reason Reason
	// Err is the underlying verification error, if any.
	Err error
}

// Error describes the refusal.
func (e *RefusedError) Error() string {
	s := fmt.Sprintf("rpcsec: refused peer %q node %q: %s",
		e.Peer, e.Node, e.Reason)
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns the underlying verification error.
func (e *RefusedError) Unwrap() error { return e.Err }
