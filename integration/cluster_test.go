package integration

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
)

// newCluster starts n hosts, initialises node1 and joins node2..nodeJ
// with default flags (so with pool size 3, node2 and node3 become
// candidates). It waits until the joined hosts have converged.
func newCluster(t testing.TB, n, joined int, o Options) *Cluster {
	t.Helper()
	c := NewClusterWith(t, n, o)
	c.Init(c.Hosts[0])
	for _, h := range c.Hosts[1:joined] {
		c.Join(c.Hosts[0], h)
	}
	c.waitConverged(c.Hosts[:joined]...)
	return c
}

// ssconf reads every ssconf file of h: file name -> content.
func ssconf(h *Host) (map[string]string, error) {
	paths, err := filepath.Glob(h.LibPath("ssconf_*"))
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		m[filepath.Base(p)] = string(data)
	}
	return m, nil
}

// diffSsconf says which files of b differ from a, or "".
func diffSsconf(a, b map[string]string) string {
	var diff []string
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			diff = append(diff, fmt.Sprintf("%s=%q vs %q", k, v, w))
		}
	}
	for k, w := range b {
		if _, ok := a[k]; !ok {
			diff = append(diff, fmt.Sprintf("%s missing vs %q", k, w))
		}
	}
	sort.Strings(diff)
	return strings.Join(diff, ", ")
}

// sorted returns nodes sorted by name.
func sorted(nodes []NodeInfo) []NodeInfo {
	out := append([]NodeInfo(nil), nodes...)
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// withoutAlive returns nodes sorted, with Alive cleared, for
// comparisons that liveness must not disturb.
func withoutAlive(nodes []NodeInfo) []NodeInfo {
	out := sorted(nodes)
	for i := range out {
		out[i].Alive = false
	}
	return out
}

// stable is withoutAlive with the master shown as a candidate: Raft
// may move leadership between candidates at any time (a scheduling
// stall on a loaded machine is enough), and only tests that move it
// on purpose assert who holds it.
func stable(nodes []NodeInfo) []NodeInfo {
	out := withoutAlive(nodes)
	for i := range out {
		if out[i].Role == "master" {
			out[i].Role = "candidate"
		}
	}
	return out
}

// waitConverged polls until every host of hosts (all running and
// members) lists the same nodes (liveness aside: see waitAlive), has
// byte-identical ssconf files, and every one of hosts appears in the
// list. It returns the common list, sorted by name, as hosts[0] sees it.
func (c *Cluster) waitConverged(hosts ...*Host) []NodeInfo {
	c.t.Helper()
	var common []NodeInfo
	WaitFor(c.t, "hosts to converge on list and ssconf", convergeWithin,
		func() (bool, string) {
			nodes, state := c.convergedState(hosts)
			common = nodes
			return state == "", state
		})
	return common
}

// convergedState returns the common list, and "" if hosts agree;
// otherwise what differs.
func (c *Cluster) convergedState(hosts []*Host) ([]NodeInfo, string) {
	var first []NodeInfo
	var firstConf map[string]string
	for i, h := range hosts {
		nodes, err := c.TryList(h)
		if err != nil {
			return nil, err.Error()
		}
		conf, err := ssconf(h)
		if err != nil {
			return nil, err.Error()
		}
		if len(conf) == 0 {
			return nil, h.Name + " has no ssconf files"
		}
		if i == 0 {
			first, firstConf = sorted(nodes), conf
			continue
		}
		if !reflect.DeepEqual(withoutAlive(nodes), withoutAlive(first)) {
			return nil, fmt.Sprintf("list on %s %+v, on %s %+v",
				h.Name, nodes, hosts[0].Name, first)
		}
		if d := diffSsconf(firstConf, conf); d != "" {
			return nil, fmt.Sprintf("ssconf %s vs %s: %s",
				hosts[0].Name, h.Name, d)
		}
	}
	return first, checkMembers(first, hosts)
}

// checkMembers says which of hosts is missing from nodes, or "".
func checkMembers(nodes []NodeInfo, hosts []*Host) string {
	byName := map[string]bool{}
	for _, n := range nodes {
		byName[n.Name] = true
	}
	for _, h := range hosts {
		if !byName[h.Name] {
			return h.Name + " not listed"
		}
	}
	return ""
}

// waitAlive polls until every host of hosts lists every node as alive
// exactly when its host's daemon is running.
func (c *Cluster) waitAlive(hosts ...*Host) {
	c.t.Helper()
	WaitFor(c.t, "every host to see every node's liveness",
		convergeWithin, func() (bool, string) {
			for _, h := range hosts {
				if state := c.aliveSeenBy(h); state != "" {
					return false, state
				}
			}
			return true, ""
		})
}

// aliveSeenBy says which node h lists with the wrong liveness, or "".
func (c *Cluster) aliveSeenBy(h *Host) string {
	nodes, err := c.TryList(h)
	if err != nil {
		return err.Error()
	}
	for _, n := range nodes {
		if o := c.Host(n.Name); o != nil && n.Alive != o.Alive() {
			return fmt.Sprintf("%s lists %s alive=%v, want %v",
				h.Name, n.Name, n.Alive, o.Alive())
		}
	}
	return ""
}

// roles renders nodes as "name=role/raft" in name order, with
// master and candidate both shown as "mc" (see stable), e.g.
// "node1=mc/voter node4=regular/nonvoter".
func roles(nodes []NodeInfo) string {
	var parts []string
	for _, n := range stable(nodes) {
		role := n.Role
		if role == "candidate" {
			role = "mc"
		}
		parts = append(parts, n.Name+"="+role+"/"+n.Raft)
	}
	return strings.Join(parts, " ")
}

// oneMaster returns the only node listed as master, failing the test
// unless there is exactly one.
func oneMaster(t testing.TB, nodes []NodeInfo) string {
	t.Helper()
	var masters []string
	for _, n := range nodes {
		if n.Role == "master" {
			masters = append(masters, n.Name)
		}
	}
	if len(masters) != 1 {
		t.Fatalf("masters listed: got %q, want exactly one", masters)
	}
	return masters[0]
}

// checkIdentity checks that every listed node has the IP of its host,
// master_capable as wanted, and the UUID its own daemon reports.
func (c *Cluster) checkIdentity(t testing.TB, nodes []NodeInfo) {
	t.Helper()
	for _, n := range nodes {
		h := c.Host(n.Name)
		if h == nil {
			t.Errorf("listed node %q is no host of the test", n.Name)
			continue
		}
		if n.PrimaryIP != h.IP {
			t.Errorf("%s primary_ip: got %q, want %q",
				n.Name, n.PrimaryIP, h.IP)
		}
		st := c.Status(h)
		if st.Name != n.Name || st.UUID != n.UUID || n.UUID == "" {
			t.Errorf("%s status name/uuid: got %q/%q, want %q/%q",
				n.Name, st.Name, st.UUID, n.Name, n.UUID)
		}
	}
}

// readLib reads rel under h's /var/lib/ganeti or fails the test.
func readLib(t testing.TB, h *Host, rel string) string {
	t.Helper()
	data, err := os.ReadFile(h.LibPath(rel))
	if err != nil {
		t.Fatalf("reading %s of %s: %v", rel, h.Name, err)
	}
	return string(data)
}

func TestCluster_ThreeHostsComeUp(t *testing.T) {
	c := newCluster(t, 4, 3, Options{})
	n1, n4 := c.Hosts[0], c.Hosts[3]

	nodes := c.waitConverged(c.Hosts[:3]...)
	want := "node1=mc/voter node2=mc/voter node3=mc/voter"
	if got := roles(nodes); got != want {
		t.Fatalf("roles after two joins: got %q, want %q", got, want)
	}
	c.checkIdentity(t, nodes)

	// The pool of 3 is full: node4 joins as a regular non-voter.
	c.Join(n1, n4)
	nodes = c.waitConverged(c.Hosts...)
	want += " node4=regular/nonvoter"
	if got := roles(nodes); got != want {
		t.Fatalf("roles after node4 joined: got %q, want %q", got, want)
	}
	c.checkIdentity(t, nodes)
	for _, n := range nodes {
		if !n.MasterCapable {
			t.Errorf("%s master_capable: got false, want true", n.Name)
		}
	}

	c.checkPowers(t, "node4 regular", map[[2]*Host]bool{
		{n1, n4}: true, {c.Hosts[1], n1}: true, {n4, n1}: false,
	})

	c.waitAlive(c.Hosts...)

	// Promoting a candidate again changes nothing.
	c.MustRun(n1, "promote", "node2")
	if got := roles(c.waitConverged(c.Hosts...)); got != want {
		t.Fatalf("roles after promote of a candidate: got %q, want %q",
			got, want)
	}

	c.MustRun(n1, "promote", "node4")
	nodes = c.waitConverged(c.Hosts...)
	want = "node1=mc/voter node2=mc/voter node3=mc/voter " +
		"node4=mc/voter"
	if got := roles(nodes); got != want {
		t.Fatalf("roles after promote node4: got %q, want %q", got, want)
	}

	WaitFor(t, "promoted node4 to reach node1 by ssh and rpc",
		convergeWithin, func() (bool, string) {
			if err := c.SSH(n4, n1, "true"); err != nil {
				return false, err.Error()
			}
			if err := c.RPC(n4, n1); err != nil {
				return false, err.Error()
			}
			return true, ""
		})

	master := oneMaster(t, nodes)
	checks := map[string]string{
		"ssconf_master_node":       master + "\n",
		"ssconf_cluster_name":      clusterName + "\n",
		"ssconf_node_list":         "node1\nnode2\nnode3\nnode4\n",
		"ssconf_master_candidates": "node1\nnode2\nnode3\nnode4\n",
	}
	for file, want := range checks {
		if got := readLib(t, n4, file); got != want {
			t.Errorf("%s on node4: got %q, want %q", file, got, want)
		}
	}
	info := c.clusterInfo(n4)
	if info.Name != clusterName || info.Master != master ||
		info.CandidatePoolSize != 3 {
		t.Errorf("cluster info on node4: got %+v, want name %s, "+
			"master %s, pool 3", info, clusterName, master)
	}
}

// checkPowers checks, for each from->to pair, that real ssh and a
// real TLS node RPC from `from` to `to` succeed exactly when want says.
func (c *Cluster) checkPowers(t testing.TB, what string,
	want map[[2]*Host]bool) {
	t.Helper()
	for pair, ok := range want {
		from, to := pair[0], pair[1]
		sshErr, rpcErr := c.SSH(from, to, "true"), c.RPC(from, to)
		if (sshErr == nil) != ok || (rpcErr == nil) != ok {
			t.Errorf("%s: %s -> %s: ssh %v, rpc %v; want allowed %v",
				what, from.Name, to.Name, sshErr, rpcErr, ok)
		}
	}
}

// ClusterInfo is the part of `cluster info --output json` tests use.
type ClusterInfo struct {
	Name              string `json:"name"`
	UUID              string `json:"uuid"`
	Master            string `json:"master"`
	CandidatePoolSize int    `json:"candidate_pool_size"`
}

func (c *Cluster) clusterInfo(h *Host) ClusterInfo {
	c.t.Helper()
	var info ClusterInfo
	out := c.MustRun(h, "cluster", "info", "--output", "json")
	if err := jsonUnmarshal(out, &info); err != nil {
		c.t.Fatalf("cluster info on %s: %v", h.Name, err)
	}
	return info
}

func TestCluster_MasterKillFailover(t *testing.T) {
	c := newCluster(t, 3, 3, Options{})
	old := c.Leader()

	c.Kill(old)
	leader := c.WaitForNewLeader(old)
	var survivor *Host
	for _, h := range c.Hosts {
		if h != old && h != leader {
			survivor = h
		}
	}
	WaitFor(t, survivor.Name+" to list "+leader.Name+" as master",
		convergeWithin, func() (bool, string) {
			nodes, err := c.TryList(survivor)
			if err != nil {
				return false, err.Error()
			}
			m := MasterOf(nodes)
			return m == leader.Name, "master " + m
		})

	// The killed master comes back as a follower and catches up.
	c.Start(old)
	nodes := c.waitConverged(c.Hosts...)
	if got := MasterOf(nodes); got != leader.Name {
		t.Fatalf("master after restart of %s: got %q, want %q",
			old.Name, got, leader.Name)
	}
	idx := readLib(t, leader, "ssconf_config_index")
	if got := readLib(t, old, "ssconf_config_index"); got != idx {
		t.Fatalf("config index on %s: got %q, want leader's %q",
			old.Name, got, idx)
	}
	if st := c.Status(old); st.RaftState != "Follower" {
		t.Fatalf("raft state of restarted %s: got %q, want Follower",
			old.Name, st.RaftState)
	}
}

func TestCluster_RestartCatchesUp(t *testing.T) {
	c := newCluster(t, 4, 3, Options{})
	leader := c.Leader()
	var down *Host
	for _, h := range c.Hosts[:3] {
		if h != leader {
			down = h
		}
	}
	n4 := c.Hosts[3]

	c.Stop(down)
	c.Join(leader, n4)
	c.MustRun(leader, "promote", n4.Name)
	up := []*Host{}
	for _, h := range c.Hosts {
		if h != down {
			up = append(up, h)
		}
	}
	before := stable(c.waitConverged(up...))

	c.Start(down)
	after := c.waitConverged(c.Hosts...)
	oneMaster(t, after)
	if got := stable(after); !reflect.DeepEqual(got, before) {
		t.Fatalf("list after %s caught up:\ngot  %+v\nwant %+v",
			down.Name, got, before)
	}
	if got, want := roles(after), "node1=mc/voter node2=mc/voter "+
		"node3=mc/voter node4=mc/voter"; got != want {
		t.Fatalf("roles: got %q, want %q", got, want)
	}
}

// hasSnapshot reports whether h's raft directory holds a snapshot.
func hasSnapshot(h *Host) bool {
	found := false
	filepath.WalkDir(h.LibPath("raft"),
		func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.Name() == "meta.json" {
				found = true
			}
			return nil
		})
	return found
}

func TestCluster_SnapshotRestore(t *testing.T) {
	env := []string{"GANETI_RAFT_SNAPSHOT_THRESHOLD=4"}
	c := newCluster(t, 4, 3, Options{Env: env})
	n1, n2, n3, n4 := c.Hosts[0], c.Hosts[1], c.Hosts[2], c.Hosts[3]

	// Failovers and a join add log entries past the threshold.
	c.MustRun(n2, "cluster", "failover")
	c.waitMaster(n2)
	c.MustRun(n1, "cluster", "failover")
	c.waitMaster(n1)
	c.Join(n1, n4)
	before := stable(c.waitConverged(c.Hosts...))
	WaitFor(t, "a raft snapshot on node1 and node3 (is "+
		"GANETI_RAFT_SNAPSHOT_THRESHOLD supported?)", convergeWithin,
		func() (bool, string) {
			return hasSnapshot(n1) && hasSnapshot(n3), fmt.Sprintf(
				"node1 %v, node3 %v", hasSnapshot(n1), hasSnapshot(n3))
		})

	c.Restart(n3)
	c.Restart(n4)
	after := c.waitConverged(c.Hosts...)
	oneMaster(t, after)
	if got := stable(after); !reflect.DeepEqual(got, before) {
		t.Fatalf("list after restarts:\ngot  %+v\nwant %+v", got, before)
	}
	if got, want := roles(after), "node1=mc/voter node2=mc/voter "+
		"node3=mc/voter node4=regular/nonvoter"; got != want {
		t.Fatalf("roles: got %q, want %q", got, want)
	}
}

// waitMaster polls until every running host lists h as master and h
// is the Raft leader.
func (c *Cluster) waitMaster(h *Host) {
	c.t.Helper()
	WaitFor(c.t, h.Name+" to be master", leaderTimeout,
		func() (bool, string) {
			if l, state := c.leaderSeenBy(h, nil); l != h {
				return false, state
			}
			return true, ""
		})
}

func TestCluster_GracefulStopHandsOver(t *testing.T) {
	c := newCluster(t, 3, 3, Options{})
	old := c.Leader()

	c.Stop(old)
	leader := c.WaitForNewLeader(old)
	if st := c.Status(leader); st.RaftState != "Leader" {
		t.Fatalf("raft state of new master %s: got %q, want Leader",
			leader.Name, st.RaftState)
	}
	if got := MasterOf(c.List(leader)); got != leader.Name {
		t.Fatalf("master listed by %s: got %q, want itself",
			leader.Name, got)
	}

	c.Start(old)
	if got := MasterOf(c.waitConverged(c.Hosts...)); got != leader.Name {
		t.Fatalf("master after %s came back: got %q, want %q",
			old.Name, got, leader.Name)
	}
}

// seedWrongHostKey makes h's known_hosts claim a fresh, unrelated
// ed25519 key for to's sshd address.
func seedWrongHostKey(t testing.TB, h, to *Host) {
	t.Helper()
	dir := t.TempDir()
	key := filepath.Join(dir, "k")
	out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "",
		"-f", key).CombinedOutput()
	if err != nil {
		t.Fatalf("ssh-keygen: %v: %s", err, out)
	}
	pub, err := os.ReadFile(key + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(pub))
	line := fmt.Sprintf("[%s]:%d %s %s\n", to.IP, to.SSHPort, f[0], f[1])
	p := h.LibPath("known_hosts")
	kh, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatalf("opening %s: %v", p, err)
	}
	defer kh.Close()
	if _, err := kh.WriteString(line); err != nil {
		t.Fatalf("writing %s: %v", p, err)
	}
}

func TestCluster_BadInput(t *testing.T) {
	c := newCluster(t, 5, 3, Options{})
	n1, n4, n5 := c.Hosts[0], c.Hosts[3], c.Hosts[4]
	c.Join(n1, n4) // regular: the pool is full
	c.TrustMaster(n1, n5)
	before := stable(c.waitConverged(c.Hosts[:4]...))
	nowhere := n1.IP[:strings.LastIndex(n1.IP, ".")] + ".99"

	cases := []struct {
		name  string
		on    *Host
		args  []string
		setup func()
	}{
		{name: "join existing name", on: n1, args: []string{"join",
			"--primary-ip", n5.IP, "--ssh-port", "2222", "node2"}},
		{name: "join existing ip", on: n1, args: []string{"join",
			"--primary-ip", c.Hosts[1].IP, "--ssh-port", "2222", "node5"}},
		{name: "join unreachable", on: n1, args: []string{"join",
			"--primary-ip", nowhere, "--ssh-port", "2222", "node9"}},
		{name: "join changed host key", on: n1, args: []string{"join",
			"--primary-ip", n5.IP, "--ssh-port", "2222", "node5"},
			setup: func() {
				// On every MC: a forwarded join runs on the leader.
				for _, mc := range c.Hosts[:3] {
					seedWrongHostKey(t, mc, n5)
				}
			}},
		{name: "init twice", on: n1, args: []string{"init",
			"--node-name", "node1", "--primary-ip", n1.IP,
			"--ssh-port", "2222", clusterName}},
		{name: "init on member", on: c.Hosts[1], args: []string{"init",
			"--node-name", "node2", "--primary-ip", c.Hosts[1].IP,
			"--ssh-port", "2222", clusterName}},
		{name: "promote unknown", on: n1,
			args: []string{"promote", "node99"}},
		{name: "promote on regular", on: n4,
			args: []string{"promote", "node4"}},
		{name: "join on regular", on: n4, args: []string{"join",
			"--primary-ip", n5.IP, "--ssh-port", "2222", "node5"}},
		{name: "failover on regular", on: n4,
			args: []string{"cluster", "failover"}},
	}
	for _, tc := range cases {
		if tc.setup != nil {
			tc.setup()
		}
		_, stderr, err := c.Run(tc.on, tc.args...)
		if err == nil {
			t.Errorf("%s: ganeti-node %s on %s: succeeded, want failure",
				tc.name, strings.Join(tc.args, " "), tc.on.Name)
		}
		if lines := strings.Split(strings.TrimSuffix(stderr, "\n"),
			"\n"); stderr == "" || len(lines) != 1 {
			t.Errorf("%s: stderr: got %d lines %q, want exactly one",
				tc.name, len(lines), stderr)
		}
		if got := stable(c.List(n1)); !reflect.DeepEqual(got, before) {
			t.Fatalf("%s: list changed:\ngot  %+v\nwant %+v",
				tc.name, got, before)
		}
		t.Logf("%s: %s", tc.name, strings.TrimSpace(stderr))
	}
}

func jsonUnmarshal(s string, v any) error {
	if err := json.Unmarshal([]byte(s), v); err != nil {
		return fmt.Errorf("bad JSON %q: %w", s, err)
	}
	return nil
}
