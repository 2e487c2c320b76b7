package daemon

import (
	"crypto/ed25519"
	"crypto/rand"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/crypto/ssh"

	"ganeti-node/fsm"
	"ganeti-node/sshdist"
)

const (
	idMaster = "00000000-0000-4000-8000-000000000001"
	idMC     = "00000000-0000-4000-8000-000000000002"
	idNormal = "00000000-0000-4000-8000-000000000003"
	idGone   = "00000000-0000-4000-8000-000000000009"
)

func testKey(t testing.TB) ssh.PublicKey {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// testState is a cluster with a master, a candidate and a normal node.
func testState() *fsm.State {
	mk := func(id, name string, mc bool) *fsm.Node {
		return &fsm.Node{UUID: id, Name: name, PrimaryIP: "10.0.0." + name[1:],
			MasterCapable: true, MasterCandidate: mc}
	}
	return &fsm.State{
		Cluster: fsm.Cluster{Name: "c", UUID: "u", MasterNode: idMaster,
			ModifySSHSetup: true, AuthorizedKeysFile: "/root/.ssh/authorized_keys"},
		Nodes: map[string]*fsm.Node{idMaster: mk(idMaster, "n1", true),
			idMC: mk(idMC, "n2", true), idNormal: mk(idNormal, "n3", false)}}
}

func entryUUIDs(es []sshdist.KeyEntry) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.UUID)
	}
	return out
}

// TestKeySet_OnlyCurrentCandidatesAuthorised checks invariant 2 where
// the SSH work is built: a key reaches authorized_keys only if it is in
// the master's ganeti_pub_keys and its node is a current candidate.
func TestKeySet_OnlyCurrentCandidatesAuthorised(t *testing.T) {
	k := &keySet{entries: []sshdist.PubKeyEntry{
		{UUID: idMaster, Key: testKey(t)}, {UUID: idMC, Key: testKey(t)},
		{UUID: idNormal, Key: testKey(t)}, {UUID: idGone, Key: testKey(t)}}}
	s := testState()
	got := entryUUIDs(k.candidateKeys(s))
	if len(got) != 2 || got[0] != idMaster || got[1] != idMC {
		t.Fatalf("authorised %v, want only %s and %s", got, idMaster, idMC)
	}
	if got := entryUUIDs(k.potentialKeys(s)); len(got) != 3 {
		t.Fatalf("pub-key file would hold %v, want the 3 member nodes only", got)
	}

	// A candidate whose key is not in the master's file gets nothing in.
	k.entries = k.entries[:1]
	if got := entryUUIDs(k.candidateKeys(s)); len(got) != 1 || got[0] != idMaster {
		t.Fatalf("authorised %v, want only %s", got, idMaster)
	}
}

// TestDaemon_DesiredFollowsRole checks the files each role must and
// must not hold after reconciliation.
func TestDaemon_DesiredFollowsRole(t *testing.T) {
	d := New(Config{Root: t.TempDir(), Log: slog.New(slog.DiscardHandler)})
	for name, data := range map[string]string{"known_hosts": "kh\n",
		"ca.pem": "ca\n", "ca-key.pem": "key\n"} {
		p := filepath.Join(d.paths.StateDir(), name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s := testState()
	k := &keySet{entries: []sshdist.PubKeyEntry{{UUID: idMaster, Key: testKey(t)}}}

	mc, err := d.desired(s, k, s.Nodes[idMC])
	if err != nil {
		t.Fatal(err)
	}
	if !hasFile(mc, "ca-key.pem") || mc.PubKeys == nil || mc.PubKeys.Remove {
		t.Fatalf("candidate request %+v lacks the CA key or pub keys", mc)
	}
	s.Nodes[idNormal].MasterCapable = false
	normal, err := d.desired(s, k, s.Nodes[idNormal])
	if err != nil {
		t.Fatal(err)
	}
	if hasFile(normal, "ca-key.pem") || !contains(normal.RemoveFiles, "ca-key.pem") {
		t.Fatalf("normal node request %+v keeps the CA key", normal)
	}
	if normal.PubKeys == nil || !normal.PubKeys.Remove {
		t.Fatalf("non-potential node keeps ganeti_pub_keys: %+v", normal.PubKeys)
	}
	if got := entryUUIDs(normal.AuthorizedKeys.Keys); len(got) != 1 || got[0] != idMaster {
		t.Fatalf("normal node authorises %v, want %s", got, idMaster)
	}
}

func hasFile(r *sshdist.Request, name string) bool {
	for _, f := range r.Files {
		if f.Name == name {
			return true
		}
	}
	return false
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}
