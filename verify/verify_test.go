package verify

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
)

func TestCheck_CleanClusterHasNoFindings(t *testing.T) {
	r := Check(newFixture(t).f)
	if g := got(r); len(g) != 0 {
		t.Fatalf("findings on a clean cluster: got %q, want none", g)
	}
	data, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"errors":[],"warnings":[]}`; string(data) != want {
		t.Fatalf("JSON of a clean result: got %s, want %s", data, want)
	}
	if !r.OK() {
		t.Fatalf("OK() of a clean result: got false, want true")
	}
}

// checkCase breaks one thing in a clean fixture and names every
// finding ("CODE node") that must follow, and no other.
type checkCase struct {
	name   string
	break_ func(x *fixture)
	want   []string
}

func runCases(t *testing.T, cases []checkCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			x := newFixture(t)
			tc.break_(x)
			g := got(Check(x.f))
			want := slices.Clone(tc.want)
			slices.Sort(want)
			if !slices.Equal(g, want) {
				t.Fatalf("findings: got %q, want %q", g, want)
			}
		})
	}
}

func TestCheck_Reachability(t *testing.T) {
	runCases(t, []checkCase{
		{"rpc and ssh down", func(x *fixture) {
			nf := x.nf("node4")
			nf.Self, nf.RPCErr = nil, "connection refused"
			nf.SSH, nf.SSHErr = nil, &Failure{Unreachable, "refused"}
			nf.HostKey = HostKeyResult{HostKeyError, "refused"}
			for _, mc := range []string{"node1", "node2", "node3"} {
				fail(x, mc, "node4", Unreachable)
			}
		}, []string{"NODE_UNREACHABLE node4"}},
		{"candidate down", func(x *fixture) {
			nf := x.nf("node2")
			nf.Self, nf.RPCErr = nil, "connection refused"
			nf.SSH, nf.SSHErr = nil, &Failure{Unreachable, "refused"}
			nf.Logins, nf.LoginsErr = nil, "connection refused"
			fail(x, "node1", "node2", Unreachable)
			fail(x, "node3", "node2", Unreachable)
		}, []string{"NODE_UNREACHABLE node2"}},
		{"daemon down", func(x *fixture) {
			nf := x.nf("node3")
			nf.Self, nf.RPCErr = nil, "connection refused"
			nf.Logins, nf.LoginsErr = nil, "connection refused"
		}, []string{"NODE_RPC_UNREACHABLE node3"}},
		{"sshd down", func(x *fixture) {
			nf := x.nf("node5")
			nf.SSH, nf.SSHErr = nil, &Failure{Unreachable, "refused"}
			nf.HostKey = HostKeyResult{HostKeyError, "refused"}
			fail(x, "node1", "node5", Unreachable)
		}, []string{"NODE_SSH_UNREACHABLE node5"}},
		{"helper fails", func(x *fixture) {
			nf := x.nf("node5")
			nf.SSH, nf.SSHErr = nil, &Failure{Remote, "wrong cluster"}
			fail(x, "node1", "node5", Remote)
		}, []string{"NODE_REPORT_FAILED node5"}},
		{"offline node is skipped", func(x *fixture) {
			x.f.State.Nodes[x.id("node5")].Offline = true
			delete(x.f.Nodes, x.id("node5"))
			delete(x.f.Raft, x.id("node5"))
		}, nil},
		{"not gathered", func(x *fixture) {
			delete(x.f.Nodes, x.id("node5"))
		}, []string{"NODE_UNREACHABLE node5"}},
		{"other daemon at address", func(x *fixture) {
			x.nf("node4").Self.UUID = uuidOf(5)
		}, []string{"NODE_IDENTITY_MISMATCH node4"}},
		{"config lag", func(x *fixture) {
			x.nf("node5").Self.AppliedIndex = 40
		}, []string{"CONFIG_LAG node5"}},
	})
}

// fail records that candidate from failed to log in to node to.
func fail(x *fixture, from, to string, kind FailureKind) {
	for i, l := range x.nf(from).Logins {
		if l.Target == x.id(to) {
			x.nf(from).Logins[i].Failure = &Failure{kind, string(kind)}
		}
	}
}

func TestCheck_SSH(t *testing.T) {
	runCases(t, []checkCase{
		{"candidate key refused", func(x *fixture) {
			fail(x, "node2", "node4", AuthRefused)
		}, []string{"SSH_LOGIN_FAILED node4"}},
		{"candidate cannot reach", func(x *fixture) {
			fail(x, "node3", "node5", Unreachable)
		}, []string{"SSH_LOGIN_FAILED node5"}},
		{"logins not asked", func(x *fixture) {
			x.nf("node2").Logins = nil
			x.nf("node2").LoginsErr = "timeout"
		}, []string{"SSH_LOGIN_UNCHECKED node2"}},
		{"host key mismatch", func(x *fixture) {
			x.nf("node4").HostKey = HostKeyResult{HostKeyMismatch, "m"}
			x.nf("node4").SSH = nil
			x.nf("node4").SSHErr = &Failure{HostKey, "m"}
			for _, mc := range []string{"node1", "node2", "node3"} {
				fail(x, mc, "node4", HostKey)
			}
		}, []string{"SSH_HOST_KEY_MISMATCH node4"}},
		{"host key unknown", func(x *fixture) {
			x.nf("node5").HostKey = HostKeyResult{HostKeyUnknown, "u"}
		}, []string{"SSH_HOST_KEY_UNKNOWN node5"}},
		{"host key unreadable", func(x *fixture) {
			x.nf("node5").HostKey = HostKeyResult{HostKeyError, "e"}
		}, []string{"SSH_HOST_KEY_UNCHECKED node5"}},
		{"own key missing", func(x *fixture) {
			nf := x.nf("node5")
			nf.SSH.PublicKeyFP, nf.SSH.PublicKeyErr = "", "no key"
		}, []string{"SSH_OWN_KEY_MISSING node5"}},
		{"normal key authorised", func(x *fixture) {
			nf := x.nf("node2")
			nf.Self.AuthorizedKeys = append(nf.Self.AuthorizedKeys,
				AuthKeyFact{Fingerprint: fpOf(4)})
		}, []string{"AUTHKEYS_NORMAL_NODE_KEY node2"}},
		{"stale managed line", func(x *fixture) {
			nf := x.nf("node5")
			nf.Self.AuthorizedKeys = append(nf.Self.AuthorizedKeys,
				AuthKeyFact{Fingerprint: fpOf(4), Managed: true,
					ManagedUUID: uuidOf(4)})
		}, []string{"AUTHKEYS_STALE_MANAGED_KEY node5"}},
		{"authorized_keys unreadable", func(x *fixture) {
			x.nf("node3").Self.AuthorizedKeysErr = "is a directory"
		}, []string{"AUTHKEYS_UNREADABLE node3"}},
		{"unmanaged ssh skips key files", func(x *fixture) {
			x.f.State.Cluster.ModifySSHSetup = false
			nf := x.nf("node2")
			nf.Self.AuthorizedKeys = append(nf.Self.AuthorizedKeys,
				AuthKeyFact{Fingerprint: fpOf(4)})
			x.nf("node5").Self.SSHD = SSHDFact{Err: "no sshd"}
		}, nil},
	})
}

func TestCheck_PubKeys(t *testing.T) {
	addEntry := func(x *fixture, on, uuid, fp string) {
		s := x.nf(on).Self
		s.PubKeys = append(s.PubKeys, PubKeyFact{uuid, fp})
	}
	runCases(t, []checkCase{
		{"stale line", func(x *fixture) {
			addEntry(x, "node2", uuidOf(77), "SHA256:gone")
		}, []string{"PUBKEYS_STALE_ENTRY node2"}},
		{"not potential", func(x *fixture) {
			addEntry(x, "node1", uuidOf(5), fpOf(5))
		}, []string{"PUBKEYS_NOT_POTENTIAL node1"}},
		{"missing entry", func(x *fixture) {
			s := x.nf("node4").Self
			s.PubKeys = s.PubKeys[:3]
		}, []string{"PUBKEYS_MISSING_ENTRY node4"}},
		{"key mismatch", func(x *fixture) {
			x.nf("node3").Self.PubKeys[1].Fingerprint = "SHA256:old"
		}, []string{"PUBKEYS_KEY_MISMATCH node3"}},
		{"old and new key of a node", func(x *fixture) {
			addEntry(x, "node3", uuidOf(2), "SHA256:old")
		}, nil},
		{"file on normal node", func(x *fixture) {
			x.setFile("node5", pubKeysPath, "0600")
		}, []string{"PUBKEYS_FILE_MISPLACED node5"}},
		{"file missing on potential candidate", func(x *fixture) {
			x.dropFile("node4", pubKeysPath)
		}, []string{"PUBKEYS_FILE_MISSING node4"}},
		{"unparsable", func(x *fixture) {
			x.nf("node4").Self.PubKeysErr = "line 2: bad key"
		}, []string{"PUBKEYS_INVALID node4"}},
		{"rapi modifiable makes every node potential", func(x *fixture) {
			x.f.State.Cluster.MasterCapabilityRapiModifiable = true
		}, []string{"PUBKEYS_FILE_MISSING node5",
			"PUBKEYS_MISSING_ENTRY node1", "PUBKEYS_MISSING_ENTRY node2",
			"PUBKEYS_MISSING_ENTRY node3", "PUBKEYS_MISSING_ENTRY node4"}},
	})
}

func TestCheck_SSHD(t *testing.T) {
	runCases(t, []checkCase{
		{"other file", func(x *fixture) {
			x.nf("node4").Self.SSHD.Files = []string{"/etc/ssh/keys/%u"}
		}, []string{"SSHD_AUTHKEYS_FILE node4"}},
		{"managed among several", func(x *fixture) {
			d := &x.nf("node4").Self.SSHD
			d.Files = []string{"/root/.ssh/authorized_keys2", d.Managed}
		}, nil},
		{"command", func(x *fixture) {
			x.nf("node1").Self.SSHD.Command = "/usr/bin/keys %u"
		}, []string{"SSHD_AUTHKEYS_COMMAND node1"}},
		{"not checked", func(x *fixture) {
			x.nf("node5").Self.SSHD = SSHDFact{Err: "sshd not found"}
		}, []string{"SSHD_CONFIG_UNCHECKED node5"}},
	})
}

func TestCheck_Files(t *testing.T) {
	runCases(t, []checkCase{
		{"ca key on normal node", func(x *fixture) {
			x.setFile("node5", caKeyPath, "0600")
		}, []string{"FILE_CA_KEY_LEAK node5"}},
		{"ca key backup on normal node", func(x *fixture) {
			x.setFile("node4", caKeyPath+".bak-20300101T000000.000000000",
				"0600")
		}, []string{"FILE_CA_KEY_LEAK node4"}},
		{"ca key missing on candidate", func(x *fixture) {
			x.dropFile("node3", caKeyPath)
		}, []string{"FILE_CA_KEY_MISSING node3"}},
		{"rapi on normal node", func(x *fixture) {
			x.setFile("node4", stateDir+"/rapi_users", "0600")
			x.setFile("node4", stateDir+"/rapi.pem", "0600")
		}, []string{"FILE_RAPI_LEAK node4", "FILE_RAPI_LEAK node4"}},
		{"rapi on candidate", func(x *fixture) {
			x.setFile("node2", stateDir+"/rapi.pem", "0600")
		}, nil},
		{"own key readable", func(x *fixture) {
			x.setFile("node4", "/root/.ssh/id_ed25519", "0644")
		}, []string{"FILE_MODE node4"}},
		{"client.pem group readable", func(x *fixture) {
			x.setFile("node2", stateDir+"/client.pem", "0640")
		}, []string{"FILE_MODE node2"}},
		{"narrower is fine", func(x *fixture) {
			x.setFile("node2", stateDir+"/gossip.key", "0400")
		}, nil},
		{"public files may be readable", func(x *fixture) {
			x.setFile("node2", stateDir+"/ca.pem", "0644")
			x.setFile("node2", "/root/.ssh/id_rsa.pub", "0644")
		}, nil},
	})
}

func TestCheck_Raft(t *testing.T) {
	runCases(t, []checkCase{
		{"normal node votes", func(x *fixture) {
			x.f.Raft[x.id("node4")] = "voter"
		}, []string{"RAFT_MEMBERSHIP node4"}},
		{"candidate does not vote", func(x *fixture) {
			x.f.Raft[x.id("node3")] = "nonvoter"
		}, []string{"RAFT_MEMBERSHIP node3"}},
		{"member missing", func(x *fixture) {
			delete(x.f.Raft, x.id("node5"))
		}, []string{"RAFT_MEMBERSHIP node5"}},
		{"stranger", func(x *fixture) {
			x.f.Raft[uuidOf(66)] = "voter"
		}, []string{"RAFT_MEMBERSHIP " + uuidOf(66)}},
		{"unreadable", func(x *fixture) {
			x.f.Raft, x.f.RaftErr = nil, "shut down"
		}, []string{"RAFT_UNCHECKED node1"}},
	})
}

func TestResult_SortedAndSplitBySeverity(t *testing.T) {
	x := newFixture(t)
	x.nf("node5").Self.AppliedIndex = 1
	x.setFile("node4", caKeyPath, "0644")
	x.nf("node2").Self.AuthorizedKeys = append(
		x.nf("node2").Self.AuthorizedKeys, AuthKeyFact{Fingerprint: fpOf(5)})
	r := Check(x.f)
	var errs, warns []string
	for _, f := range r.Errors {
		errs = append(errs, string(f.Code)+" "+f.Node)
	}
	for _, f := range r.Warnings {
		warns = append(warns, string(f.Code)+" "+f.Node)
	}
	wantErrs := []string{"FILE_CA_KEY_LEAK node4", "FILE_MODE node4",
		"CONFIG_LAG node5"}
	if !slices.Equal(errs, wantErrs) {
		t.Errorf("errors: got %q, want %q", errs, wantErrs)
	}
	want := []string{"AUTHKEYS_NORMAL_NODE_KEY node2"}
	if !slices.Equal(warns, want) {
		t.Errorf("warnings: got %q, want %q", warns, want)
	}
	if r.OK() {
		t.Errorf("OK() with errors: got true, want false")
	}
}

func TestCodes_DocumentedOnceWithFixText(t *testing.T) {
	seen := map[Code]bool{}
	for _, c := range Codes {
		if seen[c.Code] {
			t.Errorf("code %s: documented twice", c.Code)
		}
		seen[c.Code] = true
		upper := strings.ToUpper(string(c.Code)) == string(c.Code)
		if c.Summary == "" || !upper {
			t.Errorf("code %q: want an upper-case code with a summary", c.Code)
		}
	}
	if got := SeverityOf("NO_SUCH_CODE"); got != Error {
		t.Errorf("SeverityOf unknown code: got %v, want error", got)
	}
}

func TestCodes_InReadmeTable(t *testing.T) {
	data, err := os.ReadFile("../README.md")
	if err != nil {
		t.Skipf("no README: %v", err)
	}
	for _, c := range Codes {
		row := fmt.Sprintf("| `%s` | %s |", c.Code, c.Severity)
		if !strings.Contains(string(data), row) {
			t.Errorf("README: no row starting %q", row)
		}
	}
}
