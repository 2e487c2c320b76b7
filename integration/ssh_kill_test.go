package integration

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// A master killed in the middle of a role change leaves a committed
// configuration whose SSH side is half done; the next master must
// finish it (DESIGN invariant 8).

// quickPoll is how often killMidOp looks for the commit: often, so
// that the kill lands while the master is still fanning out.
const quickPoll = 2 * time.Millisecond

const certsRel = libRel + "/ssconf_master_candidates_certs"

// killMidOp starts ganeti-node args on master in the background,
// polls until moment says the operation got that far, and then kills
// master's daemon. It waits for the command to end and logs how it
// ended and which hosts the fan-out had not reached yet.
func (w *sshWorld) killMidOp(master *Host, moment string,
	reached func() bool, args ...string) {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, w.Bin,
		append([]string{"--root", master.Root}, args...)...)
	cmd.Env = cleanEnv()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		w.t.Fatalf("starting ganeti-node %v: %v", args, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()

	deadline := time.Now().Add(convergeWithin)
	for !reached() {
		select {
		case err := <-done:
			w.t.Fatalf("ganeti-node %v ended (%v) before %s: %s", args,
				err, moment, strings.TrimSpace(out.String()))
		default:
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("timed out after %v waiting for %s after "+
				"ganeti-node %v\n%s", convergeWithin, moment, args, w.tails())
		}
		time.Sleep(quickPoll) // poll interval, not a wait for a state
	}
	w.Kill(master)

	// How far the master came, for the log only: the outcome is
	// checked after the next master took over.
	nodes, _ := w.TryList(w.otherLive(master))
	w.t.Logf("killed %s at %s during %v; hosts not yet as configured: %v",
		master.Name, moment, args, w.staleHosts(nodes))
	select {
	case err := <-done:
		w.t.Logf("ganeti-node %v ended: %v: %s", args, err,
			strings.TrimSpace(out.String()))
	case <-ctx.Done():
		w.t.Fatalf("ganeti-node %v still running after %v", args,
			cmdTimeout)
	}
}

// staleHosts names the live hosts whose SSH files differ from nodes.
func (w *sshWorld) staleHosts(nodes []NodeInfo) []string {
	var stale []string
	for _, h := range w.liveHosts() {
		if w.filesState(nodes, []*Host{h}) != "" {
			stale = append(stale, h.Name)
		}
	}
	return stale
}

// changed returns a condition that holds once the file rel under
// some host of hosts differs from what it is now.
func changed(t testing.TB, rel string, hosts ...*Host) func() bool {
	t.Helper()
	before := map[*Host]string{}
	for _, h := range hosts {
		before[h] = readFile(t, h.path(rel))
	}
	return func() bool {
		for _, h := range hosts {
			data, err := os.ReadFile(h.path(rel))
			if err == nil && string(data) != before[h] {
				return true
			}
		}
		return false
	}
}

// otherLive returns the first host other than h whose daemon runs.
func (w *sshWorld) otherLive(h *Host) *Host {
	w.t.Helper()
	for _, o := range w.Hosts {
		if o != h && o.Alive() {
			return o
		}
	}
	w.t.Fatalf("no live host besides %s", h.Name)
	return nil
}

// leaderOtherThan returns the master after moving leadership to
// another candidate if h holds it.
func (w *sshWorld) leaderOtherThan(h *Host) *Host {
	w.t.Helper()
	l := w.Leader()
	if l != h {
		return l
	}
	to := w.Hosts[1]
	if to == h {
		to = w.Hosts[2]
	}
	w.MustRun(to, "cluster", "failover")
	w.waitMaster(to)
	return to
}

// waitFiles polls until leader lists wantRoles and every live host's
// SSH files match that list, then checks the logins once.
func (w *sshWorld) waitFiles(what string, leader *Host, wantRoles string) {
	w.t.Helper()
	var nodes []NodeInfo
	WaitFor(w.t, what, convergeWithin, func() (bool, string) {
		var err error
		if nodes, err = w.TryList(leader); err != nil {
			return false, err.Error()
		}
		if got := roles(nodes); got != wantRoles {
			return false, "roles " + got + ", want " + wantRoles
		}
		state := w.filesState(nodes, w.liveHosts())
		return state == "", state
	})
	w.checkLogins(what, nodes, w.liveHosts())
}

func TestSSH_NewMasterFinishesFanOut(t *testing.T) {
	w := newSSHWorld(t, 5)
	w.initCluster()
	for _, h := range w.Hosts[1:] {
		w.join(h)
	}
	mc := "node1=mc/voter node2=mc/voter node3=mc/voter "
	w.expect("joined", mc+"node4=regular/nonvoter node5=regular/nonvoter")

	// The master dies as soon as node4's promotion is committed, before
	// or while it authorises node4's key everywhere.
	old := w.Leader()
	follower := w.otherLive(old)
	w.killMidOp(old, "the commit on "+follower.Name,
		changed(t, certsRel, follower), "promote", "node4")
	leader := w.WaitForNewLeader(old)
	promoted := mc + "node4=mc/voter node5=regular/nonvoter"
	w.waitFiles("the new master "+leader.Name+" to finish promote node4",
		leader, promoted)
	w.Start(old)
	w.waitFiles(old.Name+" back after the promote", leader, promoted)

	// The master dies while it revokes node4's key, once the first host
	// lost it; after the next master finished, node4 logs in nowhere.
	// node4 may have become master meanwhile; a master is not demoted.
	old = w.leaderOtherThan(w.Hosts[3])
	var others []*Host
	for _, h := range w.Hosts {
		if h != old {
			others = append(others, h)
		}
	}
	w.killMidOp(old, "the first authorized_keys written",
		changed(t, authKeysRel, others...), "demote", "node4")
	leader = w.WaitForNewLeader(old)
	demoted := mc + "node4=regular/nonvoter node5=regular/nonvoter"
	w.waitFiles("the new master "+leader.Name+" to finish demote node4",
		leader, demoted)
	w.Start(old)
	w.waitFiles(old.Name+" back after the demote", leader, demoted)
}

// TestSSH_NewMasterTakesMissingHostKeyPin: a candidate that missed a
// join's known_hosts push (its master lost leadership right after the
// commit) becomes master; it takes the new host's pin from another
// candidate and reaches that host, instead of refusing it for ever.
func TestSSH_NewMasterTakesMissingHostKeyPin(t *testing.T) {
	c := newCluster(t, 4, 4, Options{})
	n1, n2, n4 := c.Hosts[0], c.Hosts[1], c.Hosts[3]
	entry := "[" + n4.IP + "]:" + strconv.Itoa(n4.SSHPort) + " "
	kh := n2.LibPath("known_hosts")
	data := string(readFileBytes(t, kh))
	var kept []string
	for _, l := range strings.SplitAfter(data, "\n") {
		if !strings.HasPrefix(l, entry) {
			kept = append(kept, l)
		}
	}
	if len(kept) == len(strings.SplitAfter(data, "\n")) {
		t.Fatalf("%s's known_hosts has no line for %s:\n%s", n2.Name, entry, data)
	}
	if err := os.WriteFile(kh, []byte(strings.Join(kept, "")), 0o644); err != nil {
		t.Fatal(err)
	}

	c.MustRun(n2, "cluster", "failover")
	c.waitMaster(n2)
	WaitFor(t, n2.Name+" to pin "+n4.Name+" again", convergeWithin,
		func() (bool, string) {
			got := string(readFileBytes(t, kh))
			return strings.Contains(got, entry), got
		})
	// The pin is the host's real key: the master's update reaches it.
	c.MustRun(n2, "modify", "--master-capable=false", n4.Name)
	if got := pubKeyUUIDs(t, n4); got != nil {
		t.Errorf("%s still has ganeti_pub_keys %v after losing master_capable",
			n4.Name, got)
	}
	c.MustRun(n1, "cluster", "verify")
}
