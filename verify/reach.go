package verify

// checkReach reports each node that did not answer, in one finding per
// node: the checks that need the missing answers then skip the node.
func checkReach(c *checker) {
	for _, n := range c.online() {
		nf := c.nf(n.UUID)
		rpcDown, sshDown := nf.Self == nil, c.sshDown(n.UUID)
		switch {
		case rpcDown && sshDown:
			c.add(NodeUnreachable, n.UUID, "no answer over the secured "+
				"RPC (%s) nor over SSH (%s); the node is down or cut off",
				nf.RPCErr, nf.SSHErr.Message)
		case rpcDown:
			c.add(NodeRPCUnreachable, n.UUID, "the daemon does not answer "+
				"over the secured RPC: %s; start `ganeti-node daemon` "+
				"there", nf.RPCErr)
		case sshDown:
			c.add(NodeSSHUnreachable, n.UUID, "the master cannot connect "+
				"to sshd: %s; check sshd and the network", nf.SSHErr.Message)
		}
		e := nf.SSHErr
		if e != nil && (e.Kind == Remote || e.Kind == Other) {
			c.add(NodeReportFailed, n.UUID, "the master's SSH report "+
				"failed: %s", e.Message)
		}
	}
}

// checkIdentity reports a daemon that answers at a node's address as
// another node.
func checkIdentity(c *checker) {
	for _, n := range c.online() {
		s := c.nf(n.UUID).Self
		if s == nil || (s.UUID == n.UUID && s.Name == n.Name) {
			continue
		}
		c.add(NodeIdentity, n.UUID, "the daemon at %s reports itself as "+
			"node %q (%s), not %q (%s)", n.RPCAddr(), s.Name, s.UUID,
			n.Name, n.UUID)
	}
}

// checkLag reports nodes whose applied configuration is older than the
// master's.
func checkLag(c *checker) {
	want := c.f.State.Index
	for _, n := range c.online() {
		s := c.nf(n.UUID).Self
		if s == nil || s.AppliedIndex >= want {
			continue
		}
		c.add(ConfigLag, n.UUID, "has applied configuration index %d, "+
			"the master %d; it may still admit revoked certificates",
			s.AppliedIndex, want)
	}
}
