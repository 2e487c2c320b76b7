package integration

import (
	"os"
	"strings"
	"testing"
)

// pubKeyUUIDs returns the node UUIDs listed in h's ganeti_pub_keys, or
// nil when the file does not exist.
func pubKeyUUIDs(t testing.TB, h *Host) []string {
	t.Helper()
	data, err := os.ReadFile(h.LibPath("ganeti_pub_keys"))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatalf("reading ganeti_pub_keys of %s: %v", h.Name, err)
	}
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			out = append(out, f[0])
		}
	}
	return out
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// TestClusterModify_RapiFlagMovesPotentialCandidates checks that the
// master_capability_rapi_modifiable flag makes every node a potential
// candidate (its key in ganeti_pub_keys, the file on it) and back.
func TestClusterModify_RapiFlagMovesPotentialCandidates(t *testing.T) {
	c := newCluster(t, 4, 3, Options{})
	master, n4 := c.Hosts[0], c.Hosts[3]
	c.Join(master, n4, "--master-capable=false")
	c.waitConverged(c.Hosts...)
	id4 := nodeUUID(t, c, master, n4.Name)

	if got := pubKeyUUIDs(t, master); contains(got, id4) {
		t.Fatalf("non-master-capable %s in ganeti_pub_keys before the flag: %v", n4.Name, got)
	}
	if _, err := os.Stat(n4.LibPath("ganeti_pub_keys")); !os.IsNotExist(err) {
		t.Fatalf("ganeti_pub_keys exists on %s before the flag (err %v)", n4.Name, err)
	}

	c.MustRun(master, "cluster", "modify", "--master-capability-rapi-modifiable=yes")
	for _, h := range c.Hosts {
		if got := pubKeyUUIDs(t, h); !contains(got, id4) || len(got) != 4 {
			t.Fatalf("with the flag, %s's ganeti_pub_keys = %v, want all 4 nodes", h.Name, got)
		}
	}

	c.MustRun(master, "cluster", "modify", "--master-capability-rapi-modifiable=no")
	for _, h := range c.Hosts[:3] {
		if got := pubKeyUUIDs(t, h); contains(got, id4) || len(got) != 3 {
			t.Fatalf("without the flag, %s's ganeti_pub_keys = %v, want the 3 others", h.Name, got)
		}
	}
	if _, err := os.Stat(n4.LibPath("ganeti_pub_keys")); !os.IsNotExist(err) {
		t.Fatalf("ganeti_pub_keys still on %s after the flag was cleared (err %v)", n4.Name, err)
	}
	_, stderr, err := c.Run(master, "cluster", "modify", "--master-capability-rapi-modifiable=maybe")
	if err == nil || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
		t.Fatalf("bad flag value: got err %v, stderr %q; want one error line", err, stderr)
	}
}

func nodeUUID(t testing.TB, c *Cluster, from *Host, name string) string {
	t.Helper()
	for _, n := range c.List(from) {
		if n.Name == name {
			return n.UUID
		}
	}
	t.Fatalf("node %s not listed on %s", name, from.Name)
	return ""
}

func roleOf(t testing.TB, c *Cluster, from *Host, name string) string {
	t.Helper()
	for _, n := range c.List(from) {
		if n.Name == name {
			return n.Role
		}
	}
	t.Fatalf("node %s not listed on %s", name, from.Name)
	return ""
}

// TestRoles_DrainUndrain checks that draining a candidate revokes it
// like a demotion (with a replacement promoted) and that undrain makes
// it a regular node again.
func TestRoles_DrainUndrain(t *testing.T) {
	c := newCluster(t, 4, 4, Options{})
	master, n2, n4 := c.Hosts[0], c.Hosts[1], c.Hosts[3]
	if _, _, err := c.Run(master, "drain", n2.Name); err == nil {
		t.Fatalf("drain of a candidate without --auto-promote succeeded")
	}
	c.MustRun(master, "drain", "--auto-promote", n2.Name)
	if got := roleOf(t, c, master, n2.Name); got != "drained" {
		t.Fatalf("%s is %q after drain, want drained", n2.Name, got)
	}
	if got := roleOf(t, c, master, n4.Name); got != "candidate" {
		t.Fatalf("%s is %q after the drain, want candidate", n4.Name, got)
	}
	if err := c.SSH(n2, c.Hosts[2], "true"); err == nil {
		t.Fatalf("drained %s still logs in to %s", n2.Name, c.Hosts[2].Name)
	}
	c.MustRun(master, "undrain", n2.Name)
	if got := roleOf(t, c, master, n2.Name); got != "regular" {
		t.Fatalf("%s is %q after undrain, want regular", n2.Name, got)
	}
}

// TestClusterModify_SSHSetupOffThenOn is the downgrade path: with SSH
// management switched off, role changes leave every SSH file alone;
// `cluster modify` refuses to switch it back on, and renew-crypto does
// it, after which the security boundary holds again.
func TestClusterModify_SSHSetupOffThenOn(t *testing.T) {
	c := newCluster(t, 3, 3, Options{})
	master, n3 := c.Hosts[0], c.Hosts[2]
	c.MustRun(master, "cluster", "modify", "--candidate-pool-size=2")
	c.MustRun(master, "cluster", "modify", "--modify-ssh-setup=no")
	authKeys := func() map[*Host]string {
		m := map[*Host]string{}
		for _, h := range c.Hosts {
			m[h] = string(readFileBytes(t, h.path("root/.ssh/authorized_keys")))
		}
		return m
	}
	before := authKeys()
	c.MustRun(master, "demote", n3.Name)
	for h, data := range authKeys() {
		if data != before[h] {
			t.Errorf("%s: authorized_keys changed by a demote with SSH "+
				"management off:\n%s\nwant\n%s", h.Name, data, before[h])
		}
	}

	_, stderr, err := c.Run(master, "cluster", "modify", "--modify-ssh-setup=yes")
	if err == nil || !strings.Contains(stderr, "renew-crypto --new-ssh-keys "+
		"--enable-ssh-management") || !strings.Contains(stderr, "nothing was changed") ||
		strings.Count(stderr, "\n") != 1 {
		t.Errorf("--modify-ssh-setup=yes: err %v, stderr %q; want one line "+
			"pointing to renew-crypto", err, stderr)
	}
	_, stderr, err = c.Run(master, "cluster", "modify", "--modify-ssh-setup=maybe")
	if err == nil || !strings.Contains(stderr, `"maybe" is not yes or no`) {
		t.Errorf("--modify-ssh-setup=maybe: err %v, stderr %q", err, stderr)
	}

	c.renew(master, "--new-ssh-keys", "--enable-ssh-management")
	c.waitConverged(c.Hosts...)
	c.checkBoundary(t, "after switching SSH management back on")
}
