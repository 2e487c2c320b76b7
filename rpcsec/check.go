package rpcsec

import (
	"crypto/x509"
	"errors"
	"time"
)

// errNoRoots refuses everyone when no CA pool is given: a nil pool
// would make x509 fall back to the system roots.
var errNoRoots = errors.New("rpcsec: no cluster CA to verify against")

// Check decides whether the peer that presented certs (leaf first) may
// connect. It returns nil or a *RefusedError, testing in this order: a
// certificate is present; it is signed directly by one of roots for
// client auth; it and its CA are valid at now; it names one node UUID;
// that node has a map entry; the entry equals the certificate's Digest.
// Intermediate certificates sent by the peer are ignored: the cluster
// CA signs node certificates directly.
func (a *Admission) Check(certs []*x509.Certificate,
	roots *x509.CertPool, now time.Time) error {
	if len(certs) == 0 {
		return &RefusedError{Reason: ReasonNoCertificate}
	}
	if roots == nil {
		return &RefusedError{Reason: ReasonWrongCA, Err: errNoRoots}
	}
	leaf := certs[0]
	if why, err := verifyChain(leaf, roots, now); err != nil {
		return &RefusedError{Reason: why, Err: err}
	}
	node, err := NodeUUID(leaf)
	if err != nil {
		return &RefusedError{Reason: ReasonNoNodeID, Err: err}
	}
	want, ok := a.lookup(node)
	if !ok {
		return &RefusedError{Node: node, Reason: ReasonUnknownNode}
	}
	if Digest(leaf.Raw) != want {
		return &RefusedError{Node: node, Reason: ReasonDigestMismatch}
	}
	return nil
}

// verifyChain verifies leaf against roots at now. On failure it
// verifies again at a time inside the leaf's validity to tell a
// certificate that is merely out of date from one the CA never signed.
func verifyChain(leaf *x509.Certificate, roots *x509.CertPool,
	now time.Time) (Reason, error) {
	opts := x509.VerifyOptions{
		Roots:       roots,
		CurrentTime: now,
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	_, err := leaf.Verify(opts)
	if err == nil {
		return "", nil
	}
	opts.CurrentTime = clamp(now, leaf.NotBefore, leaf.NotAfter)
	_, err2 := leaf.Verify(opts)
	var inv x509.CertificateInvalidError
	switch {
	case err2 == nil:
		return ReasonExpired, err
	case !errors.As(err2, &inv):
		return ReasonWrongCA, err2
	case inv.Reason == x509.Expired:
		return ReasonExpired, err2
	case inv.Reason == x509.IncompatibleUsage:
		return ReasonWrongUsage, err2
	}
	return ReasonWrongCA, err2
}

func clamp(t, lo, hi time.Time) time.Time {
	switch {
	case t.Before(lo):
		return lo
	case t.After(hi):
		return hi
	}
	return t
}
