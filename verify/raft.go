package verify

import (
	"slices"

	"ganeti-node/fsm"
)

// Raft suffrages as Facts.Raft holds them; "none" is shown for a node
// that is no member.
const (
	voter    = "voter"
	nonvoter = "nonvoter"
	noMember = "none"
)

// wantSuffrage is the Raft role the configuration gives n: candidates
// vote, other online nodes follow, offline nodes are out.
func wantSuffrage(n *fsm.Node) string {
	switch {
	case n.MasterCandidate:
		return voter
	case n.Offline:
		return noMember
	}
	return nonvoter
}

// checkRaft compares the Raft configuration with the roles.
func checkRaft(c *checker) {
	if c.f.Raft == nil {
		c.add(RaftUnchecked, c.f.Verifier, "cannot read the Raft "+
			"configuration: %s", c.f.RaftErr)
		return
	}
	for _, n := range c.f.State.SortedNodes() {
		have := c.f.Raft[n.UUID]
		if have == "" {
			have = noMember
		}
		if want := wantSuffrage(n); have != want {
			c.add(RaftMembership, n.UUID, "is a Raft %s, want %s", have,
				want)
		}
	}
	var strangers []string
	for id := range c.f.Raft {
		if c.f.State.Nodes[id] == nil {
			strangers = append(strangers, id)
		}
	}
	slices.Sort(strangers)
	for _, id := range strangers {
		c.add(RaftMembership, id, "is a Raft %s but not in the "+
			"configuration", c.f.Raft[id])
	}
}
