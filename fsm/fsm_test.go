package fsm

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
)

const (
	uuidA = "00000000-0000-4000-8000-00000000000a"
	uuidB = "00000000-0000-4000-8000-00000000000b"
	dig1  = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	dig2  = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
)

func node(uuid, name, ip string) *Node {
	return &Node{UUID: uuid, Name: name, PrimaryIP: ip, RPCPort: 1811,
		GossipPort: 1813, SSHPort: 22, MasterCapable: true}
}

func initCmd() *Command {
	return &Command{Changes: []Change{{Op: OpInit, Digest: dig1,
		Cluster: &Cluster{Name: "c1", UUID: "u", CandidatePoolSize: 3},
		Node:    node(uuidA, "n1", "10.0.0.1")}}}
}

func mustApply(t testing.TB, s *State, c *Command) *State {
	t.Helper()
	next, err := c.ApplyTo(s)
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	return next
}

func TestCommand_ApplyToRefusals(t *testing.T) {
	base := mustApply(t, New(nil).State(), initCmd())
	mc := node(uuidB, "n2", "10.0.0.2")
	mc.MasterCandidate = true
	tests := []struct {
		name string
		cmd  *Command
		want string
	}{
		{"init twice", initCmd(), "already initialised"},
		{"duplicate name", &Command{Changes: []Change{{Op: OpPutNode,
			Node: node(uuidB, "n1", "10.0.0.2")}}}, "name \"n1\" is used twice"},
		{"duplicate ip", &Command{Changes: []Change{{Op: OpPutNode,
			Node: node(uuidB, "n2", "10.0.0.1")}}}, "IP \"10.0.0.1\" is used twice"},
		{"candidate without digest", &Command{Changes: []Change{{Op: OpPutNode,
			Node: mc}}}, "has no candidate map entry"},
		{"digest for normal node", &Command{Changes: []Change{
			{Op: OpPutNode, Node: node(uuidB, "n2", "10.0.0.2")},
			{Op: OpSetCert, UUID: uuidB, Digest: dig2}}}, "not a master candidate"},
		{"bad digest", &Command{Changes: []Change{{Op: OpSetCert, UUID: uuidA,
			Digest: "md5:00"}}}, "invalid digest"},
		{"remove unknown", &Command{Changes: []Change{{Op: OpRemoveNode,
			UUID: uuidB}}}, "unknown node"},
		{"demote master", &Command{Changes: []Change{{Op: OpSetCert, UUID: uuidA}}},
			"has no candidate map entry"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, _ := base.Encode()
			_, err := tt.cmd.ApplyTo(base)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got error %v, want one containing %q", err, tt.want)
			}
			after, _ := base.Encode()
			if !bytes.Equal(before, after) {
				t.Fatalf("refused command changed the state")
			}
		})
	}
}

func TestCommand_PromoteIsAtomic(t *testing.T) {
	s := mustApply(t, New(nil).State(), initCmd())
	s = mustApply(t, s, &Command{Changes: []Change{{Op: OpPutNode,
		Node: node(uuidB, "n2", "10.0.0.2")}}})
	p := *s.Nodes[uuidB]
	p.MasterCandidate = true
	s = mustApply(t, s, &Command{Changes: []Change{{Op: OpPutNode, Node: &p},
		{Op: OpSetCert, UUID: uuidB, Digest: dig2}}})
	if got := len(s.Candidates()); got != 2 {
		t.Fatalf("got %d candidates, want 2", got)
	}
	if got := s.CandidateMap[uuidB]; got != dig2 {
		t.Fatalf("got digest %q, want %q", got, dig2)
	}
}

func TestFSM_SnapshotRestoreRoundTrip(t *testing.T) {
	f := New(nil)
	f.Apply(&raft.Log{Index: 1, Data: initCmd().Encode()})
	f.Apply(&raft.Log{Index: 2, Data: (&Command{Changes: []Change{{Op: OpPutNode,
		Node: node(uuidB, "n2", "10.0.0.2")}}}).Encode()})
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	var seen *State
	g := New(func(s *State) { seen = s })
	if err := g.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	want, _ := f.State().Encode()
	got, _ := g.State().Encode()
	if !bytes.Equal(got, want) {
		t.Fatalf("restored state differs:\ngot  %s\nwant %s", got, want)
	}
	if seen == nil || seen.Index != 2 {
		t.Fatalf("observer got %+v, want the restored state at index 2", seen)
	}
}

func TestFSM_RefusedCommandAdvancesIndexOnly(t *testing.T) {
	f := New(nil)
	f.Apply(&raft.Log{Index: 1, Data: initCmd().Encode()})
	resp := f.Apply(&raft.Log{Index: 2, Data: initCmd().Encode()})
	if _, ok := resp.(error); !ok {
		t.Fatalf("got response %v, want an error", resp)
	}
	if s := f.State(); s.Index != 2 || len(s.Nodes) != 1 {
		t.Fatalf("got index %d with %d nodes, want 2 and 1", s.Index, len(s.Nodes))
	}
}

func TestSsconf_SortedAndCertsParse(t *testing.T) {
	s := mustApply(t, New(nil).State(), initCmd())
	s = mustApply(t, s, &Command{Changes: []Change{{Op: OpPutNode,
		Node: node(uuidB, "a0", "10.0.0.2")}}})
	m := Ssconf(s)
	if got, want := m["node_list"], "a0\nn1\n"; got != want {
		t.Fatalf("node_list: got %q, want %q", got, want)
	}
	if got, want := m["master_node"], "n1\n"; got != want {
		t.Fatalf("master_node: got %q, want %q", got, want)
	}
	certs, err := ParseCandidateCerts(m["master_candidates_certs"])
	if err != nil || len(certs) != 1 || certs[uuidA] != dig1 {
		t.Fatalf("got certs %v (%v), want only %s", certs, err, uuidA)
	}
}

type memSink struct{ bytes.Buffer }

func (m *memSink) ID() string    { return "mem" }
func (m *memSink) Cancel() error { return nil }
func (m *memSink) Close() error  { return nil }
