package verify

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"slices"
	"testing"
	"time"

	"ganeti-node/fsm"
	"ganeti-node/rpcsec"
)

// now is the fixed time of every fixture.
var now = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

const year = 365 * 24 * time.Hour

// fixture is a clean five-node cluster: node1 (master), node2 and
// node3 are candidates, node4 is a master-capable regular node and
// node5 a regular node that is not master-capable.
type fixture struct {
	t  testing.TB
	f  *Facts
	ca *rpcsec.CA
}

func uuidOf(i int) string {
	return fmt.Sprintf("00000000-0000-4000-8000-%012d", i)
}

func fpOf(i int) string { return fmt.Sprintf("SHA256:key%d", i) }

// id returns the UUID of nodeN.
func (x *fixture) id(name string) string {
	return x.f.State.NodeByName(name).UUID
}

// nf returns the facts of the node called name.
func (x *fixture) nf(name string) *NodeFacts {
	return x.f.Nodes[x.id(name)]
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	ca, _, err := rpcsec.NewCA("c.example", now, 10*year)
	if err != nil {
		t.Fatal(err)
	}
	x := &fixture{t: t, ca: ca}
	x.f = &Facts{Now: now, State: fixtureState(), Verifier: uuidOf(1),
		CAPEM: string(ca.CertPEM), Raft: map[string]string{},
		Nodes: map[string]*NodeFacts{}}
	for i, n := range x.f.State.SortedNodes() {
		x.f.Nodes[n.UUID] = x.nodeFacts(i+1, n)
		x.f.Raft[n.UUID] = wantSuffrage(n)
	}
	for _, mc := range x.f.State.Candidates() {
		cert := x.f.Nodes[mc.UUID].SSH.ClientCert
		digest, err := rpcsec.DigestPEM([]byte(cert))
		if err != nil {
			t.Fatal(err)
		}
		x.f.State.CandidateMap[mc.UUID] = digest
	}
	return x
}

func fixtureState() *fsm.State {
	s := &fsm.State{Nodes: map[string]*fsm.Node{},
		CandidateMap: map[string]string{}, Index: 42}
	s.Cluster = fsm.Cluster{Name: "c.example", UUID: uuidOf(99),
		CandidatePoolSize: 3, MasterNode: uuidOf(1), ModifySSHSetup: true,
		AuthorizedKeysFile: "/root/.ssh/authorized_keys"}
	for i := 1; i <= 5; i++ {
		s.Nodes[uuidOf(i)] = &fsm.Node{UUID: uuidOf(i),
			Name:      fmt.Sprintf("node%d", i),
			PrimaryIP: fmt.Sprintf("127.0.0.%d", i),
			RPCPort:   1811, GossipPort: 1813, SSHPort: 22,
			MasterCapable: i <= 4, MasterCandidate: i <= 3}
	}
	return s
}

func (x *fixture) nodeFacts(i int, n *fsm.Node) *NodeFacts {
	client := x.signedClient(n.Name, n.UUID, now, year)
	server := x.signedServer(n.Name, year)
	files := x.files(n)
	digest, _ := rpcsec.DigestPEM([]byte(client))
	nf := &NodeFacts{
		SSH: &SSHReport{PublicKeyFP: fpOf(i), ClientCert: client,
			Files: files},
		HostKey: HostKeyResult{Status: HostKeyOK},
		Self: &SelfReport{UUID: n.UUID, Name: n.Name, AppliedIndex: 42,
			ClientCert: client, ServerCert: server,
			LoadedClientDigest: digest, PublicKeyFP: fpOf(i),
			Files: files, AuthorizedKeys: candidateLines(),
			SSHD: SSHDFact{Checked: true,
				Files:   []string{"/root/.ssh/authorized_keys"},
				Managed: "/root/.ssh/authorized_keys"}},
	}
	if n.MasterCapable {
		nf.Self.PubKeysPresent = true
		nf.Self.PubKeys = potentialEntries()
	}
	if n.MasterCandidate {
		for j := 1; j <= 5; j++ {
			nf.Logins = append(nf.Logins, Login{Target: uuidOf(j)})
		}
	}
	return nf
}

// candidateLines is the authorized_keys of every node: the managed
// lines of node1..node3 and one line the admin wrote.
func candidateLines() []AuthKeyFact {
	out := []AuthKeyFact{{Fingerprint: "SHA256:admin"}}
	for i := 1; i <= 3; i++ {
		out = append(out, AuthKeyFact{Fingerprint: fpOf(i),
			Managed: true, ManagedUUID: uuidOf(i)})
	}
	return out
}

func potentialEntries() []PubKeyFact {
	var out []PubKeyFact
	for i := 1; i <= 4; i++ {
		out = append(out, PubKeyFact{UUID: uuidOf(i), Fingerprint: fpOf(i)})
	}
	return out
}

func (x *fixture) files(n *fsm.Node) []FileFact {
	out := []FileFact{
		{"/root/.ssh/authorized_keys", "0600"},
		{"/root/.ssh/id_ed25519", "0600"},
		{"/root/.ssh/id_ed25519.pub", "0644"},
		{"/var/lib/ganeti/ca.pem", "0644"},
		{"/var/lib/ganeti/client.pem", "0600"},
		{"/var/lib/ganeti/gossip.key", "0600"},
		{"/var/lib/ganeti/known_hosts", "0644"},
		{"/var/lib/ganeti/node.json", "0644"},
		{"/var/lib/ganeti/server.pem", "0600"},
	}
	if n.MasterCandidate {
		out = append(out, FileFact{caKeyPath, "0600"})
	}
	if n.MasterCapable {
		out = append(out, FileFact{pubKeysPath, "0600"})
	}
	return out
}

// signedClient issues a CA-signed client certificate valid from an
// hour before issued until issued+validity.
func (x *fixture) signedClient(name, uuid string, issued time.Time,
	validity time.Duration) string {
	x.t.Helper()
	_, csr, err := rpcsec.NewKeyAndCSR(name)
	if err != nil {
		x.t.Fatal(err)
	}
	cert, err := x.ca.SignClient(csr, name, uuid, issued, validity)
	if err != nil {
		x.t.Fatal(err)
	}
	return string(cert)
}

func (x *fixture) signedServer(name string, validity time.Duration) string {
	x.t.Helper()
	_, csr, err := rpcsec.NewKeyAndCSR(name)
	if err != nil {
		x.t.Fatal(err)
	}
	cert, err := x.ca.SignServer(csr, name, net.IPv4(127, 0, 0, 1), now,
		validity)
	if err != nil {
		x.t.Fatal(err)
	}
	return string(cert)
}

// selfSignedClient makes a client certificate for uuid that signs
// itself, as an admin's openssl one-liner would.
func selfSignedClient(t testing.TB, name, uuid string) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7),
		Subject:   pkix.Name{CommonName: name},
		URIs:      []*url.URL{{Scheme: "urn", Opaque: "uuid:" + uuid}},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(year),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl,
		key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE",
		Bytes: der}))
}

// setClient puts cert on node name, as both SSH and the node see it.
func (x *fixture) setClient(name, cert string) {
	nf := x.nf(name)
	nf.SSH.ClientCert, nf.Self.ClientCert = cert, cert
}

// setFile sets (or adds) a file of node name with mode, in both views.
func (x *fixture) setFile(name, p, mode string) {
	nf := x.nf(name)
	for _, list := range []*[]FileFact{&nf.SSH.Files, &nf.Self.Files} {
		*list = slices.DeleteFunc(slices.Clone(*list),
			func(f FileFact) bool { return f.Path == p })
		*list = append(*list, FileFact{p, mode})
	}
}

// dropFile removes a file of node name from both views.
func (x *fixture) dropFile(name, p string) {
	nf := x.nf(name)
	for _, list := range []*[]FileFact{&nf.SSH.Files, &nf.Self.Files} {
		*list = slices.DeleteFunc(slices.Clone(*list),
			func(f FileFact) bool { return f.Path == p })
	}
}

// got renders r's findings as sorted "CODE node" strings.
func got(r *Result) []string {
	var out []string
	for _, list := range [][]Finding{r.Errors, r.Warnings} {
		for _, f := range list {
			out = append(out, string(f.Code)+" "+f.Node)
		}
	}
	slices.Sort(out)
	return out
}
