package verify

import (
	"testing"
	"time"

	"ganeti-node/rpcsec"
)

func TestCheck_Certificates(t *testing.T) {
	runCases(t, []checkCase{
		{"swapped between candidate and normal node", func(x *fixture) {
			a, b := x.nf("node2").SSH.ClientCert, x.nf("node4").SSH.ClientCert
			x.setClient("node2", b)
			x.setClient("node4", a)
		}, []string{"CERT_WRONG_NODE node2", "CERT_WRONG_NODE node4",
			"CERT_DIGEST_MISMATCH node2", "CERT_NOT_LOADED node2",
			"CERT_NOT_LOADED node4"}},
		{"copied to another node", func(x *fixture) {
			x.setClient("node5", x.nf("node1").SSH.ClientCert)
		}, []string{"CERT_DUPLICATE node1", "CERT_DUPLICATE node5",
			"CERT_WRONG_NODE node5", "CERT_NOT_LOADED node5"}},
		{"self-signed", func(x *fixture) {
			x.setClient("node4", selfSignedClient(t, "node4", x.id("node4")))
			x.nf("node4").Self.LoadedClientDigest = ""
		}, []string{"CERT_SELF_SIGNED node4"}},
		{"other CA", func(x *fixture) {
			other, _, err := rpcsec.NewCA("other", now, year)
			if err != nil {
				t.Fatal(err)
			}
			y := &fixture{t: t, ca: other}
			x.setClient("node5", y.signedClient("node5", x.id("node5"),
				now, year))
			x.nf("node5").Self.LoadedClientDigest = ""
		}, []string{"CERT_UNKNOWN_CA node5"}},
		{"expiring", func(x *fixture) {
			x.setClient("node3", x.signedClient("node3", x.id("node3"),
				now.Add(-year), year+10*24*time.Hour))
			x.resetDigest("node3")
		}, []string{"CERT_EXPIRING node3"}},
		{"expired", func(x *fixture) {
			x.setClient("node4", x.signedClient("node4", x.id("node4"),
				now.Add(-2*year), year))
			x.nf("node4").Self.LoadedClientDigest = ""
		}, []string{"CERT_EXPIRED node4"}},
		{"server certificate expiring", func(x *fixture) {
			x.nf("node5").Self.ServerCert = x.signedServer("node5",
				20*24*time.Hour)
		}, []string{"CERT_EXPIRING node5"}},
		{"CA expiring", func(x *fixture) {
			ca, _, err := rpcsec.NewCA("c.example", now, 5*24*time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			x.f.CAPEM += string(ca.CertPEM)
		}, []string{"CERT_EXPIRING node1"}},
		{"no client certificate", func(x *fixture) {
			x.setClient("node5", "")
			x.nf("node5").Self.LoadedClientDigest = ""
		}, []string{"CERT_MISSING node5"}},
		{"candidate without entry", func(x *fixture) {
			delete(x.f.State.CandidateMap, x.id("node3"))
		}, []string{"CERT_MAP_MISSING node3"}},
		{"entry of a normal node", func(x *fixture) {
			x.f.State.CandidateMap[x.id("node4")] = "sha256:00"
		}, []string{"CERT_MAP_NOT_CANDIDATE node4"}},
		{"daemon runs an older certificate", func(x *fixture) {
			x.nf("node5").Self.LoadedClientDigest = "sha256:11"
		}, []string{"CERT_NOT_LOADED node5"}},
		{"only the node's view", func(x *fixture) {
			nf := x.nf("node4")
			nf.SSH, nf.SSHErr = nil, &Failure{AuthRefused, "refused"}
			nf.Self.ClientCert = selfSignedClient(t, "node4", x.id("node4"))
			nf.Self.LoadedClientDigest = ""
			fail(x, "node1", "node4", AuthRefused)
		}, []string{"CERT_SELF_SIGNED node4", "SSH_LOGIN_FAILED node4"}},
	})
}

// resetDigest makes the daemon of node name present its file's
// certificate, and a candidate's map entry follow it.
func (x *fixture) resetDigest(name string) {
	d, err := rpcsec.DigestPEM([]byte(x.nf(name).SSH.ClientCert))
	if err != nil {
		x.t.Fatal(err)
	}
	x.nf(name).Self.LoadedClientDigest = d
	if _, ok := x.f.State.CandidateMap[x.id(name)]; ok {
		x.f.State.CandidateMap[x.id(name)] = d
	}
}
