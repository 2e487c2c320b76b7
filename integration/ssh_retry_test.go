package integration

import (
	"os"
	"strings"
	"testing"
)

// A host the fan-out cannot update is named in the reply and retried
// by the master until it converges (DESIGN invariant 5). Here the host
// is up but its update fails: a directory stands where the candidate's
// CA key must go, so it misses exactly what a promotion sends it.

// blockUpdate makes every update that gives h the CA key fail, and
// returns the function that lifts the block.
func (w *sshWorld) blockUpdate(h *Host) func() {
	w.t.Helper()
	p := h.LibPath("ca-key.pem")
	if err := os.MkdirAll(p, 0o700); err != nil {
		w.t.Fatal(err)
	}
	return func() {
		w.t.Helper()
		if err := os.Remove(p); err != nil {
			w.t.Fatal(err)
		}
	}
}

// promoteMissing promotes h while its update is blocked and checks the
// reply names it and every other live host trusts its key already.
func (w *sshWorld) promoteMissing(h *Host, wantRoles string) {
	w.t.Helper()
	w.ensureMaster()
	out := w.MustRun(w.Hosts[0], "promote", h.Name)
	if want := "unreachable: " + h.Name; !strings.Contains(out, want) {
		w.t.Errorf("promote %s with its update failing: stdout %q, "+
			"want a line %q", h.Name, out, want)
	}
	nodes := w.masterList()
	if got := roles(nodes); got != wantRoles {
		w.t.Errorf("promote %s: roles: got %q, want %q", h.Name, got,
			wantRoles)
	}
	var others []*Host
	for _, o := range w.liveHosts() {
		if o != h {
			others = append(others, o)
		}
	}
	if state := w.filesState(nodes, others); state != "" {
		w.t.Errorf("promote %s: SSH files of the other hosts:\n%s",
			h.Name, state)
	}
}

func TestSSH_UnreachableCandidateIsRetried(t *testing.T) {
	w := newSSHWorld(t, 5)
	w.initCluster()
	for _, h := range w.Hosts[1:] {
		w.join(h)
	}
	n1, n4 := w.Hosts[0], w.Hosts[3]
	mc := "node1=mc/voter node2=mc/voter node3=mc/voter "
	regular := mc + "node4=regular/nonvoter node5=regular/nonvoter"
	promoted := mc + "node4=mc/voter node5=regular/nonvoter"
	w.expect("joined", regular)

	unblock := w.blockUpdate(n4)
	w.promoteMissing(n4, promoted)
	unblock()
	w.waitFiles("the master to retry node4", n1, promoted)

	// The same, but node4 becomes master before any retry reached it:
	// the new master must finish its own promotion.
	w.op("demote", "node4")
	w.expect("demote node4", regular)
	unblock = w.blockUpdate(n4)
	w.promoteMissing(n4, promoted)
	w.MustRun(n4, "cluster", "failover")
	w.waitMaster(n4)
	unblock()
	w.waitFiles("node4, master now, to finish its own promotion", n4,
		promoted)
}
