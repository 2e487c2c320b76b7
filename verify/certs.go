package verify

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"time"

	"ganeti-node/rpcsec"
)

// ExpiryWarning is how long before its end a certificate is reported
// as expiring.
const ExpiryWarning = 30 * 24 * time.Hour

// errNoCert is returned by parseLeaf when the PEM holds no certificate.
var errNoCert = errors.New("no certificate")

// parseLeaf returns the first certificate of pemText.
func parseLeaf(pemText string) (*x509.Certificate, error) {
	certs, err := parseCerts(pemText)
	if err != nil {
		return nil, err
	}
	return certs[0], nil
}

// parseCerts returns every certificate of pemText, or errNoCert.
func parseCerts(pemText string) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	rest := []byte(pemText)
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parsing certificate: %w", err)
		}
		out = append(out, cert)
	}
	if len(out) == 0 {
		return nil, errNoCert
	}
	return out, nil
}

// selfSigned reports whether cert names itself as issuer and its own
// key verifies its signature.
func selfSigned(cert *x509.Certificate) bool {
	return bytes.Equal(cert.RawIssuer, cert.RawSubject) &&
		cert.CheckSignature(cert.SignatureAlgorithm,
			cert.RawTBSCertificate, cert.Signature) == nil
}

// checkCerts checks every online node's client and server certificate
// and the cluster CA, then looks for certificates on two nodes.
func checkCerts(c *checker) {
	cas, _ := parseCerts(c.f.CAPEM)
	digests := map[string][]string{}
	for _, n := range c.online() {
		if d := c.checkClientCert(n.UUID, cas); d != "" {
			digests[d] = append(digests[d], n.UUID)
		}
		if s := c.nf(n.UUID).Self; s != nil {
			c.checkServerCert(n.UUID, s.ServerCert, cas)
		}
	}
	c.checkCA(cas)
	for _, ids := range digests {
		c.reportDuplicates(ids)
	}
}

// checkClientCert judges id's client certificate and returns its
// digest, or "" when there is none to judge.
func (c *checker) checkClientCert(id string,
	cas []*x509.Certificate) string {
	pemText, ok := c.clientCert(id)
	if !ok {
		return ""
	}
	leaf, err := parseLeaf(pemText)
	if err != nil {
		c.add(CertMissing, id, "client.pem: %v; %s", err, renewFix)
		return ""
	}
	c.judge(id, "client", leaf, cas)
	if named, err := rpcsec.NodeUUID(leaf); err != nil || named != id {
		c.add(CertWrongNode, id, "its client certificate (CN %q) names "+
			"node %s, not itself: it uses another node's certificate; %s",
			leaf.Subject.CommonName, c.namedBy(named, err), renewFix)
	}
	digest := rpcsec.Digest(leaf.Raw)
	c.checkMapEntry(id, digest)
	s := c.nf(id).Self
	if s != nil && s.LoadedClientDigest != "" &&
		s.LoadedClientDigest != digest {
		c.add(CertNotLoaded, id, "the daemon presents %s but client.pem "+
			"holds %s; after a restart it would present the file's",
			s.LoadedClientDigest, digest)
	}
	return digest
}

// namedBy describes the node a certificate names.
func (c *checker) namedBy(uuid string, err error) string {
	if err != nil {
		return "no valid node UUID"
	}
	if n := c.f.State.Nodes[uuid]; n != nil {
		return fmt.Sprintf("%s (%s)", n.Name, uuid)
	}
	return uuid
}

// checkMapEntry compares a candidate's client certificate digest with
// its candidate-map entry.
func (c *checker) checkMapEntry(id, digest string) {
	n := c.f.State.Nodes[id]
	want := c.f.State.CandidateMap[id]
	if n == nil || !n.MasterCandidate || want == "" || want == digest {
		return
	}
	c.add(CertDigestMismatch, id, "its client certificate %s differs "+
		"from its candidate-map entry %s, so every node refuses its RPC "+
		"and Raft connections; %s", digest, want, renewFix)
}

func (c *checker) checkServerCert(id, pemText string,
	cas []*x509.Certificate) {
	leaf, err := parseLeaf(pemText)
	if err != nil {
		c.add(CertMissing, id, "server.pem: %v; %s", err, renewFix)
		return
	}
	c.judge(id, "server", leaf, cas)
}

// judge reports a node certificate that the cluster CA did not sign or
// whose validity ends soon.
func (c *checker) judge(id, what string, cert *x509.Certificate,
	cas []*x509.Certificate) {
	signed := slices.ContainsFunc(cas, func(ca *x509.Certificate) bool {
		return cert.CheckSignatureFrom(ca) == nil
	})
	switch {
	case selfSigned(cert):
		c.add(CertSelfSigned, id, "its %s certificate (CN %q) is "+
			"self-signed; %s", what, cert.Subject.CommonName, renewFix)
	case !signed:
		c.add(CertUnknownCA, id, "its %s certificate (CN %q) is not "+
			"signed by the current cluster CA; %s", what,
			cert.Subject.CommonName, renewFix)
	}
	c.judgeExpiry(id, what+" certificate", cert)
}

func (c *checker) judgeExpiry(id, what string, cert *x509.Certificate) {
	end := cert.NotAfter.UTC().Format(time.RFC3339)
	switch left := cert.NotAfter.Sub(c.f.Now); {
	case left <= 0:
		c.add(CertExpired, id, "its %s expired at %s; %s", what, end,
			renewFix)
	case left < ExpiryWarning:
		c.add(CertExpiring, id, "its %s expires at %s, in %d days; %s",
			what, end, int(left.Hours()/24), renewFix)
	}
}

// checkCA checks the validity of the CA certificates the verifier
// trusts.
func (c *checker) checkCA(cas []*x509.Certificate) {
	if len(cas) == 0 {
		c.add(CertMissing, c.f.Verifier, "ca.pem holds no readable CA "+
			"certificate")
		return
	}
	for _, ca := range cas {
		c.judgeExpiry(c.f.Verifier, fmt.Sprintf("cluster CA certificate "+
			"(CN %q)", ca.Subject.CommonName), ca)
	}
}

// reportDuplicates reports every node of ids, which present one client
// certificate.
func (c *checker) reportDuplicates(ids []string) {
	if len(ids) < 2 {
		return
	}
	for _, id := range ids {
		var others []string
		for _, o := range ids {
			if o != id {
				others = append(others, c.name(o))
			}
		}
		slices.Sort(others)
		c.add(CertDuplicate, id, "presents the same client certificate "+
			"as %q; %s", others, renewFix)
	}
}

// checkCandidateMap checks that the map has an entry for exactly the
// current master candidates.
func checkCandidateMap(c *checker) {
	st := c.f.State
	ids := make([]string, 0, len(st.CandidateMap))
	for id := range st.CandidateMap {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		if n := st.Nodes[id]; n == nil || !n.MasterCandidate {
			c.add(CertMapNotMC, id, "has a candidate-map entry but is "+
				"not a master candidate: its certificate is admitted")
		}
	}
	for _, n := range st.Candidates() {
		if st.CandidateMap[n.UUID] == "" {
			c.add(CertMapMissing, n.UUID, "is a master candidate "+
				"without a candidate-map entry: no node admits it")
		}
	}
}
