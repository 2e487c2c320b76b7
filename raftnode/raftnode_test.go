package raftnode

import (
	"log/slog"
	"net"
	"testing"
	"time"

	"ganeti-node/fsm"
	"ganeti-node/rpcsec"
)

// testNode is one in-process Raft member over a real TLS listener.
type testNode struct {
	uuid string
	addr string
	fsm  *fsm.FSM
	node *Node
}

func testConfig(t testing.TB) Config {
	c := DefaultConfig()
	// The race detector on two loaded cores stalls goroutines for
	// hundreds of milliseconds; this test is about replication, not
	// timing, so use hashicorp/raft's relaxed defaults.
	c.HeartbeatTimeout, c.ElectionTimeout = time.Second, time.Second
	c.LeaderLeaseTimeout = 500 * time.Millisecond
	c.Log = slog.New(slog.DiscardHandler)
	c.Dir = t.TempDir()
	return c
}

// startNodes makes n members with certificates from one CA, all in the
// candidate map, listening on 127.0.0.1.
func startNodes(t *testing.T, n int) []*testNode {
	t.Helper()
	now := time.Now()
	ca, _, err := rpcsec.NewCA("test", now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	uuids := []string{"00000000-0000-4000-8000-000000000001",
		"00000000-0000-4000-8000-000000000002", "00000000-0000-4000-8000-000000000003"}
	adm := map[string]string{}
	var ids []*rpcsec.Identity
	for i := 0; i < n; i++ {
		id := identity(t, ca, uuids[i], now)
		adm[uuids[i]] = id.ClientDigest()
		ids = append(ids, id)
	}
	var out []*testNode
	for i := 0; i < n; i++ {
		a := rpcsec.NewAdmission(nil)
		a.Set(adm)
		mux, err := rpcsec.Listen("127.0.0.1:0", ids[i], a, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { mux.Close() })
		cfg := testConfig(t)
		cfg.ID, cfg.Advertise = uuids[i], mux.Addr()
		f := fsm.New(nil)
		rn, err := Open(cfg, f, rpcsec.NewStreamLayer(mux, ids[i], mux.Addr()), nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { rn.Shutdown() })
		out = append(out, &testNode{uuid: uuids[i], addr: mux.Addr().String(), fsm: f, node: rn})
	}
	return out
}

func identity(t testing.TB, ca *rpcsec.CA, uuid string, now time.Time) *rpcsec.Identity {
	t.Helper()
	sk, scsr, _ := rpcsec.NewKeyAndCSR("n")
	ck, ccsr, _ := rpcsec.NewKeyAndCSR("n")
	sc, err := ca.SignServer(scsr, "n", net.ParseIP("127.0.0.1"), now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cc, err := ca.SignClient(ccsr, "n", uuid, now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	id, err := rpcsec.NewIdentity(append(sc, sk...), append(cc, ck...), ca.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func initCommand(uuid string) *fsm.Command {
	return &fsm.Command{Changes: []fsm.Change{{Op: fsm.OpInit,
		Digest:  "sha256:0000000000000000000000000000000000000000000000000000000000000001",
		Cluster: &fsm.Cluster{Name: "c", UUID: "u", CandidatePoolSize: 3},
		Node: &fsm.Node{UUID: uuid, Name: "n1", PrimaryIP: "127.0.0.1",
			RPCPort: 1811, GossipPort: 1813, SSHPort: 22, MasterCapable: true}}}}
}

func TestNode_ReplicatesAndTransfers(t *testing.T) {
	ns := startNodes(t, 3)
	lead := ns[0]
	if err := lead.node.Bootstrap(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "bootstrap leader", lead.node.IsLeader)
	if err := lead.node.AddVoter(ns[1].uuid, ns[1].addr); err != nil {
		t.Fatalf("AddVoter: %v", err)
	}
	if err := lead.node.AddNonvoter(ns[2].uuid, ns[2].addr); err != nil {
		t.Fatalf("AddNonvoter: %v", err)
	}
	idx, err := lead.node.Apply(initCommand(lead.uuid))
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	for _, n := range ns {
		waitFor(t, "replication to "+n.uuid, func() bool { return n.fsm.State().Index >= idx })
	}
	servers, err := ns[2].node.Servers()
	if err != nil {
		t.Fatal(err)
	}
	if got := servers[ns[2].uuid]; got != "nonvoter" {
		t.Fatalf("third node is %q, want nonvoter", got)
	}

	if err := lead.node.TransferLeadership(ns[1].uuid, ns[1].addr); err != nil {
		t.Fatalf("transfer: %v", err)
	}
	waitFor(t, "new leader", ns[1].node.IsLeader)
	if _, err := lead.node.Apply(initCommand(lead.uuid)); err == nil {
		t.Fatalf("apply on the old leader succeeded, want ErrNotLeader")
	}
}

func TestConfig_ValidateNamesField(t *testing.T) {
	c := DefaultConfig()
	c.ID, c.Dir = "x", "/tmp/x"
	c.Advertise = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}
	c.LeaderLeaseTimeout = time.Second
	if err := c.Validate(); err == nil {
		t.Fatalf("lease above heartbeat accepted")
	}
}
