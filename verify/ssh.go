package verify

import (
	"path"
	"slices"
	"strings"
)

// pubKeysPath is ganeti_pub_keys, root-relative.
const pubKeysPath = "/var/lib/ganeti/ganeti_pub_keys"

// checkLogins reports every master candidate that cannot log in over
// SSH to an online node. A target the master cannot reach at all, or
// whose host key is already reported, is not reported again.
func checkLogins(c *checker) {
	for _, mc := range c.online() {
		if !mc.MasterCandidate {
			continue
		}
		nf := c.nf(mc.UUID)
		if nf.Logins == nil {
			if nf.Self != nil {
				c.add(SSHLoginUnchecked, mc.UUID, "could not ask it to "+
					"try its SSH logins: %s", nf.LoginsErr)
			}
			continue
		}
		for _, l := range nf.Logins {
			if l.Failure == nil || c.loginExcused(l) {
				continue
			}
			c.add(SSHLoginFailed, l.Target, "master candidate %s cannot "+
				"log in over SSH with its own key: %s", mc.Name,
				l.Failure.Message)
		}
	}
}

// loginExcused reports whether a failed login is explained by a
// finding of its own: the target is unreachable from the master, or
// its host key is wrong. A helper failure after a successful login is
// no login failure.
func (c *checker) loginExcused(l Login) bool {
	switch l.Failure.Kind {
	case Remote:
		return true
	case HostKey:
		st := c.nf(l.Target).HostKey.Status
		return st == HostKeyMismatch || st == HostKeyUnknown
	}
	return c.sshDown(l.Target) || c.f.State.Nodes[l.Target] == nil
}

// checkHostKeys reports host keys that known_hosts does not pin.
func checkHostKeys(c *checker) {
	for _, n := range c.online() {
		hk := c.nf(n.UUID).HostKey
		switch hk.Status {
		case HostKeyMismatch:
			c.add(SSHHostKeyMismatch, n.UUID, "%s", hk.Message)
		case HostKeyUnknown:
			c.add(SSHHostKeyUnknown, n.UUID, "%s", hk.Message)
		case HostKeyError:
			if !c.sshDown(n.UUID) {
				c.add(SSHHostKeyUnchecked, n.UUID, "%s", hk.Message)
			}
		}
	}
}

// checkOwnKeys reports nodes without a usable own SSH key pair.
func checkOwnKeys(c *checker) {
	for _, n := range c.online() {
		if fp, missing := c.keyFP(n.UUID); fp == "" && missing != "" {
			c.add(SSHKeyMissing, n.UUID, "has no usable own SSH key: %s",
				missing)
		}
	}
}

// candidateKeys returns the fingerprints that may be in managed
// authorized_keys lines: the current candidates' keys, as the
// verifier's ganeti_pub_keys and the candidates themselves tell.
func (c *checker) candidateKeys() map[string]bool {
	keys := map[string]bool{}
	for _, e := range c.verifierPubKeys() {
		if n := c.f.State.Nodes[e.UUID]; n != nil && n.MasterCandidate {
			keys[e.Fingerprint] = true
		}
	}
	for _, n := range c.f.State.Candidates() {
		if fp, _ := c.keyFP(n.UUID); fp != "" {
			keys[fp] = true
		}
	}
	return keys
}

// normalKeys maps the fingerprints of nodes that are not candidates
// to their UUIDs. A key that also belongs to a candidate is left out.
func (c *checker) normalKeys() map[string]string {
	mc := c.candidateKeys()
	keys := map[string]string{}
	for _, e := range c.verifierPubKeys() {
		n := c.f.State.Nodes[e.UUID]
		if n != nil && !n.MasterCandidate && !mc[e.Fingerprint] {
			keys[e.Fingerprint] = e.UUID
		}
	}
	for _, n := range c.f.State.SortedNodes() {
		fp, _ := c.keyFP(n.UUID)
		if fp != "" && !n.MasterCandidate && !mc[fp] {
			keys[fp] = n.UUID
		}
	}
	return keys
}

func (c *checker) verifierPubKeys() []PubKeyFact {
	if s := c.nf(c.f.Verifier).Self; s != nil {
		return s.PubKeys
	}
	return nil
}

// checkAuthKeys reports authorized_keys lines that give a node that is
// not a candidate the power to log in.
func checkAuthKeys(c *checker) {
	if !c.managesSSH() {
		return
	}
	mc, normal := c.candidateKeys(), c.normalKeys()
	for _, n := range c.online() {
		s := c.nf(n.UUID).Self
		if s == nil {
			continue
		}
		if s.AuthorizedKeysErr != "" {
			c.add(AuthKeysUnreadable, n.UUID, "%s", s.AuthorizedKeysErr)
			continue
		}
		for _, k := range s.AuthorizedKeys {
			c.judgeAuthKey(n.UUID, k, mc, normal)
		}
	}
}

func (c *checker) judgeAuthKey(holder string, k AuthKeyFact,
	mc map[string]bool, normal map[string]string) {
	owner, isNormal := normal[k.Fingerprint]
	switch {
	case k.Managed && !mc[k.Fingerprint]:
		c.add(AuthKeysStale, holder, "authorized_keys has a managed line "+
			"for node %s with key %s, which is no current master "+
			"candidate's; the master's next reconcile removes it",
			c.name(k.ManagedUUID), k.Fingerprint)
	case !k.Managed && isNormal:
		c.add(AuthKeysNormalKey, holder, "authorized_keys holds the key "+
			"%s of %s, which is not a master candidate; remove the line "+
			"unless another tool needs it", k.Fingerprint, c.name(owner))
	}
}

// checkPubKeys checks where ganeti_pub_keys is and what it holds.
func checkPubKeys(c *checker) {
	if !c.managesSSH() {
		return
	}
	for _, n := range c.online() {
		has, known := c.hasFile(n.UUID, pubKeysPath)
		potential := c.f.State.PotentialCandidate(n)
		switch {
		case !known:
			continue
		case has && !potential:
			c.add(PubKeysMisplaced, n.UUID, "holds %s but is not a "+
				"potential master candidate; remove the file", pubKeysPath)
			continue
		case !has && potential:
			c.add(PubKeysMissing, n.UUID, "is a potential master "+
				"candidate without %s", pubKeysPath)
			continue
		}
		s := c.nf(n.UUID).Self
		switch {
		case !has || s == nil:
		case s.PubKeysErr != "":
			c.add(PubKeysInvalid, n.UUID, "%s", s.PubKeysErr)
		default:
			c.checkPubKeyEntries(n.UUID, s.PubKeys)
		}
	}
}

// checkPubKeyEntries checks the entries of holder's ganeti_pub_keys.
func (c *checker) checkPubKeyEntries(holder string, entries []PubKeyFact) {
	st := c.f.State
	byNode := map[string][]string{}
	for _, e := range entries {
		n := st.Nodes[e.UUID]
		switch {
		case n == nil:
			c.add(PubKeysStale, holder, "ganeti_pub_keys holds key %s "+
				"of node %s, which is not in the cluster; remove the "+
				"line", e.Fingerprint, e.UUID)
		case !st.PotentialCandidate(n):
			c.add(PubKeysNotPotential, holder, "ganeti_pub_keys holds "+
				"the key of %s, which is not a potential master "+
				"candidate; remove the line", n.Name)
		default:
			byNode[e.UUID] = append(byNode[e.UUID], e.Fingerprint)
		}
	}
	for _, n := range st.SortedNodes() {
		if st.PotentialCandidate(n) {
			c.checkPubKeyOf(holder, n.UUID, byNode[n.UUID])
		}
	}
}

// checkPubKeyOf checks the fingerprints holder's file lists for the
// potential candidate id against id's own key.
func (c *checker) checkPubKeyOf(holder, id string, fps []string) {
	if len(fps) == 0 {
		c.add(PubKeysMissingEntry, holder, "ganeti_pub_keys has no key "+
			"of potential master candidate %s; it cannot be promoted "+
			"(re-add it with `ganeti-node join --readd`)", c.name(id))
		return
	}
	if own, _ := c.keyFP(id); own != "" && !slices.Contains(fps, own) {
		c.add(PubKeysKeyMismatch, holder, "ganeti_pub_keys holds %s for "+
			"%s, but its own key is %s", strings.Join(fps, ", "),
			c.name(id), own)
	}
}

// checkSSHD reports nodes whose sshd would not read the managed
// authorized_keys file, or would also ask a command.
func checkSSHD(c *checker) {
	if !c.managesSSH() {
		return
	}
	for _, n := range c.online() {
		s := c.nf(n.UUID).Self
		if s == nil {
			continue
		}
		d := s.SSHD
		switch {
		case !d.Checked:
			c.add(SSHDUnchecked, n.UUID, "cannot tell which "+
				"authorized_keys files sshd reads: %s", d.Err)
		case !slices.Contains(d.Files, path.Clean(d.Managed)):
			c.add(SSHDAuthKeysFile, n.UUID, "sshd reads %q, not the "+
				"managed %s; set AuthorizedKeysFile in sshd_config",
				d.Files, d.Managed)
		}
		if d.Command != "" {
			c.add(SSHDAuthKeysCommand, n.UUID, "sshd also takes keys "+
				"from AuthorizedKeysCommand %q, which ganeti-node does "+
				"not manage", d.Command)
		}
	}
}
