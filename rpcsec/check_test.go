package rpcsec

import (
	"crypto/x509"
	"errors"
	"net"
	"testing"
	"time"
)

func TestAdmission_Check(t *testing.T) {
	ca := newTestCA(t, t0, 365*day)
	other := newTestCA(t, t0, 365*day)
	shortCA := newTestCA(t, t0, 2*time.Hour)
	ip := net.IPv4(127, 0, 0, 1)
	mc := newTestNode(t, ca, "mc", uuidA, ip, t0)
	normal := newTestNode(t, ca, "normal", uuidB, ip, t0)
	alien := newTestNode(t, other, "mc", uuidA, ip, t0)
	late := newTestNode(t, shortCA, "late", uuidC, ip, t0)
	_, reissued, _ := newClientCert(t, ca, mc, t0)
	forged := selfSigned(t, mc.client).Leaf
	noID, _ := caSigned(t, ca, nil, x509.ExtKeyUsageClientAuth)
	server := mustCert(t, mc.serverPEM)

	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	roots.AddCert(shortCA.Cert)
	adm := NewAdmission(nil)
	adm.Set(map[string]string{
		uuidA: Digest(mc.client.Raw),
		uuidC: Digest(late.client.Raw),
	})

	tests := []struct {
		name     string
		cert     *x509.Certificate
		now      time.Time
		roots    *x509.CertPool
		want     Reason // "" means admitted
		wantNode string
	}{
		{"candidate", mc.client, t0, roots, "", ""},
		{"no certificate", nil, t0, roots, ReasonNoCertificate, ""},
		{"self-signed copy", forged, t0, roots, ReasonWrongCA, uuidA},
		{"expired self-signed copy", forged, t0.Add(2 * day), roots,
			ReasonWrongCA, uuidA},
		{"other CA", alien.client, t0, roots, ReasonWrongCA, uuidA},
		{"no roots", mc.client, t0, nil, ReasonWrongCA, uuidA},
		{"server certificate", server, t0, roots, ReasonWrongUsage, ""},
		{"expired", mc.client, t0.Add(2 * day), roots,
			ReasonExpired, uuidA},
		{"not yet valid", mc.client, t0.Add(-2 * time.Hour), roots,
			ReasonExpired, uuidA},
		{"CA expired", late.client, t0.Add(3 * time.Hour), roots,
			ReasonExpired, uuidC},
		{"no node UUID", noID, t0, roots, ReasonNoNodeID, ""},
		{"normal node", normal.client, t0, roots,
			ReasonUnknownNode, uuidB},
		{"reissued certificate", reissued, t0, roots,
			ReasonDigestMismatch, uuidA},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var certs []*x509.Certificate
			if tt.cert != nil {
				certs = append(certs, tt.cert)
			}
			err := adm.Check(certs, tt.roots, tt.now)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("got %v, want admitted", err)
				}
				return
			}
			var re *RefusedError
			if !errors.As(err, &re) {
				t.Fatalf("got %v, want *RefusedError", err)
			}
			if re.Reason != tt.want || re.Node != tt.wantNode {
				t.Errorf("got reason %q node %q, want %q %q",
					re.Reason, re.Node, tt.want, tt.wantNode)
			}
		})
	}
}

func TestAdmission_ZeroValueAdmitsNobody(t *testing.T) {
	ca := newTestCA(t, t0, 365*day)
	mc := newTestNode(t, ca, "mc", uuidA, net.IPv4(127, 0, 0, 1), t0)
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	var adm Admission
	var re *RefusedError
	err := adm.Check([]*x509.Certificate{mc.client}, roots, t0)
	if !errors.As(err, &re) || re.Reason != ReasonUnknownNode {
		t.Errorf("got %v, want %q", err, ReasonUnknownNode)
	}
}

func TestAdmission_SetCopiesMap(t *testing.T) {
	ca := newTestCA(t, t0, 365*day)
	mc := newTestNode(t, ca, "mc", uuidA, net.IPv4(127, 0, 0, 1), t0)
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	adm := NewAdmission(nil)
	m := map[string]string{}
	adm.Set(m)
	m[uuidA] = Digest(mc.client.Raw)
	err := adm.Check([]*x509.Certificate{mc.client}, roots, t0)
	if err == nil {
		t.Errorf("got admitted after mutating the map given to Set, " +
			"want refused")
	}
}

// A certificate dated before its CA existed and expired since is
// refused as expired, with the error about the certificate at the
// time of the check, not about the CA at some other time.
func TestAdmission_CheckExpiredBeforeCA(t *testing.T) {
	ca := newTestCA(t, t0, 365*day)
	mc := newTestNode(t, ca, "mc", uuidA, net.IPv4(127, 0, 0, 1), t0)
	backdated, _ := caSignedAt(t, ca, mc.client.URIs,
		t0.Add(-10*day), t0.Add(-9*day))
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	adm := NewAdmission(nil)
	adm.Set(map[string]string{uuidA: Digest(mc.client.Raw)})

	err := adm.Check([]*x509.Certificate{backdated}, roots, t0)
	var re *RefusedError
	if !errors.As(err, &re) || re.Reason != ReasonExpired {
		t.Fatalf("got %v, want %q", err, ReasonExpired)
	}
	var inv x509.CertificateInvalidError
	if !errors.As(err, &inv) || !inv.Cert.Equal(backdated) {
		t.Errorf("got %v, want the invalid-date error of the "+
			"certificate itself", err)
	}
}
