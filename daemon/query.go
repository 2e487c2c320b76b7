package daemon

import (
	"ganeti-node/fsm"
	"ganeti-node/rpcsec"
)

func (d *Daemon) status() Status {
	d.mu.Lock()
	nf, r := d.node, d.raft
	d.mu.Unlock()
	st := Status{RaftState: "none", TLSDials: rpcsec.DialCount()}
	if nf == nil {
		return st
	}
	s := d.fsm.State()
	st.Name, st.UUID, st.Cluster = nf.Name, nf.UUID, nf.Cluster
	st.Initialised = s.Initialised()
	st.RaftState = r.State()
	_, leaderID := r.Leader()
	if n := s.Nodes[leaderID]; n != nil {
		st.Leader = n.Name
	}
	st.AppliedIndex = min(s.Index, d.admitted.Load())
	st.Term = r.Term()
	if n := s.Nodes[nf.UUID]; n != nil {
		st.Role = s.Role(n)
	}
	return st
}

func (d *Daemon) list() []NodeInfo {
	s := d.fsm.State()
	d.mu.Lock()
	r, g, nf := d.raft, d.gossip, d.node
	d.mu.Unlock()
	servers := map[string]string{}
	if r != nil {
		servers, _ = r.Servers()
	}
	alive := map[string]bool{}
	if g != nil {
		alive = g.Alive()
	}
	out := []NodeInfo{}
	for _, n := range s.SortedNodes() {
		raft := servers[n.UUID]
		if raft == "" {
			raft = "none"
		}
		out = append(out, NodeInfo{Name: n.Name, UUID: n.UUID,
			PrimaryIP: n.PrimaryIP, Role: s.Role(n),
			MasterCapable: n.MasterCapable, Raft: raft,
			Alive: alive[n.Name] || (nf != nil && nf.UUID == n.UUID)})
	}
	return out
}

func (d *Daemon) clusterInfo() (*ClusterInfo, error) {
	s := d.fsm.State()
	if !s.Initialised() {
		return nil, ErrNoIdentity
	}
	c := s.Cluster
	info := &ClusterInfo{Name: c.Name, UUID: c.UUID,
		CandidatePoolSize:              c.CandidatePoolSize,
		MasterCapabilityRapiModifiable: c.MasterCapabilityRapiModifiable,
		ModifySSHSetup:                 c.ModifySSHSetup, SSHKeyType: c.SSHKeyType,
		AuthorizedKeysFile: c.AuthorizedKeysFile, ConfigIndex: s.Index,
		Nodes: len(s.Nodes), Candidates: len(s.Candidates())}
	if m := s.Nodes[c.MasterNode]; m != nil {
		info.Master, info.MasterIP = m.Name, m.PrimaryIP
	}
	return info, nil
}

// self returns this node's record in s, or nil.
func (d *Daemon) self(s *fsm.State) *fsm.Node {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.node == nil {
		return nil
	}
	return s.Nodes[d.node.UUID]
}
