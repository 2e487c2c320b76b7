package integration

import (
	"encoding/json"
	"testing"
)

// term returns the Raft term h's daemon is in.
func term(t testing.TB, c *Cluster, h *Host) uint64 {
	t.Helper()
	var st struct {
		Term uint64 `json:"term"`
	}
	if err := json.Unmarshal([]byte(c.MustRun(h, "status", "--output", "json")), &st); err != nil {
		t.Fatalf("status of %s: %v", h.Name, err)
	}
	return st.Term
}

// TestCluster_NoSpuriousElections checks that the tuned Raft timeouts
// survive the load of joins and role changes (SSH fan-outs, key
// generation, TLS handshakes on two cores) without a single election:
// the term stays the same on every node from the first join to the
// end.
func TestCluster_NoSpuriousElections(t *testing.T) {
	c := newCluster(t, 4, 2, Options{})
	master := c.Hosts[0]
	before := term(t, c, master)

	c.Join(master, c.Hosts[2])
	c.Join(master, c.Hosts[3])
	for i := 0; i < 3; i++ {
		c.MustRun(master, "demote", "--auto-promote", c.Hosts[2].Name)
		c.MustRun(master, "demote", "--auto-promote", c.Hosts[3].Name)
	}
	c.waitConverged(c.Hosts...)

	for _, h := range c.Hosts {
		if got := term(t, c, h); got != before {
			t.Errorf("%s is in term %d, want %d: an election happened", h.Name, got, before)
		}
	}
}
