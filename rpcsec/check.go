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
// CA signs node certificates directly. The error names the node the
// certificate claims even when the chain check fails, as evidence.
func (a *Admission) Check(certs []*x509.Certificate,
	roots *x509.CertPool, now time.Time) error {
	if len(certs) == 0 {
		return &RefusedError{Reason: ReasonNoCertificate}
	}
	leaf := certs[0]
	if roots == nil {
		return &RefusedError{Node: claimed(leaf), Reason: ReasonWrongCA,
			Err: errNoRoots}
	}
	if why, err := verifyChain(leaf, roots, now); err != nil {
		return &RefusedError{Node: claimed(leaf), Reason: why, Err: err}
	}
	return a.checkMap(leaf)
}

// checkMap is the part of Check a stock mutual-TLS server does not
// do: the leaf's node UUID must have a map entry equal to its Digest.
func (a *Admission) checkMap(leaf *x509.Certificate) error {
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

// claimed returns the node UUID cert names, or "" if none.
func claimed(cert *x509.Certificate) string {
	node, _ := NodeUUID(cert)
	return node
}

// verifyChain verifies leaf against roots at now. On failure it
// verifies again at a time inside the leaf's validity to tell a
// certificate that is merely out of date from one the CA never signed.
// An out-of-date certificate is reported with the error at now, which
// names the dates that matter; the retry's would name the CA's when
// the leaf is dated outside the CA's own validity.
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
		return ReasonExpired, err
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
