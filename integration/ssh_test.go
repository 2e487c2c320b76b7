package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// The tests of this file check the SSH half of node security against
// what the test itself knows, never against what the product reports
// about its own files: every host's authorized_keys must hold exactly
// the current candidates' keys plus the admin's own lines byte for
// byte, ganeti_pub_keys must exist exactly on the potential
// candidates, and real ssh with a node's own key must log in exactly
// where those files say.

// The admin's own lines in every host's authorized_keys: a foreign key
// with options, a comment, a blank line and another foreign key without
// a final newline. Before a join the admin puts the master's
// `authorized-keys` line above them; that line is managed by the tool.
const (
	adminOptions = `from="192.0.2.0/24",no-agent-forwarding `
	adminComment = "# the admin's own lines: ganeti-node must keep them\n"
	ownKeyRel    = "root/.ssh/id_ed25519"
	authKeysRel  = "root/.ssh/authorized_keys"
)

// sshWorld is a cluster plus what the test knows independently of the
// product: the admin's own lines and the whole file it wrote into each
// host's authorized_keys, which hosts ever joined, a known_hosts of
// every host's sshd that the test trusts itself, and foreign keys
// nobody in the cluster holds.
type sshWorld struct {
	*Cluster
	t          testing.TB
	admin      map[*Host]string // the admin's own lines
	seeded     map[*Host]string // the file as the admin wrote it
	joined     map[*Host]bool   // joined at least once
	knownHosts string
	foreign    []string
}

// newSSHWorld starts n hosts and prepares the test's own known_hosts
// and two foreign admin keys.
func newSSHWorld(t testing.TB, n int) *sshWorld {
	t.Helper()
	w := &sshWorld{Cluster: NewCluster(t, n), t: t,
		admin: map[*Host]string{}, seeded: map[*Host]string{},
		joined: map[*Host]bool{}}
	dir := t.TempDir()
	var kh strings.Builder
	for _, h := range w.Hosts {
		f := strings.Fields(readFile(t,
			h.path("etc/ssh/ssh_host_ed25519_key.pub")))
		fmt.Fprintf(&kh, "[%s]:%d %s %s\n", h.IP, h.SSHPort, f[0], f[1])
	}
	w.knownHosts = filepath.Join(dir, "known_hosts")
	writeFile(t, w.knownHosts, kh.String(), 0o644)
	for i := range 2 {
		w.foreign = append(w.foreign, throwawayKey(t, dir, i))
	}
	return w
}

// throwawayKey makes a key pair in dir and returns its public line;
// nothing in the cluster ever holds the private half.
func throwawayKey(t testing.TB, dir string, i int) string {
	t.Helper()
	key := filepath.Join(dir, "foreign"+strconv.Itoa(i))
	out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N",
		"", "-C", "admin@elsewhere", "-f", key).CombinedOutput()
	if err != nil {
		t.Fatalf("ssh-keygen: %v: %s", err, out)
	}
	return strings.TrimSpace(readFile(t, key+".pub"))
}

func readFile(t testing.TB, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading %s: %v", path, err)
	}
	return string(data)
}

func writeFile(t testing.TB, path, data string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatalf("creating %s: %v", filepath.Dir(path), err)
	}
	if err := os.WriteFile(path, []byte(data), mode); err != nil {
		t.Fatalf("writing %s: %v", path, err)
	}
}

// seed writes h's authorized_keys as an admin would: trust (lines for
// the join, or "") above the admin's own lines.
func (w *sshWorld) seed(h *Host, trust string) {
	w.t.Helper()
	admin := adminOptions + w.foreign[0] + "\n" + adminComment + "\n" +
		w.foreign[1]
	writeFile(w.t, h.path(authKeysRel), trust+admin, 0o600)
	w.admin[h], w.seeded[h] = admin, trust+admin
}

// trust seeds h, unless it was seeded before, with node1's
// `authorized-keys` output on top, as the admin does before a join.
func (w *sshWorld) trust(h *Host) {
	w.t.Helper()
	if _, ok := w.admin[h]; ok {
		return
	}
	line := w.MustRun(w.Hosts[0], "authorized-keys")
	if !strings.HasSuffix(line, "\n") {
		line += "\n"
	}
	w.seed(h, line)
}

// initCluster seeds node1 with the admin's lines alone and initialises
// the cluster there.
func (w *sshWorld) initCluster() {
	w.t.Helper()
	w.seed(w.Hosts[0], "")
	w.Init(w.Hosts[0])
	w.joined[w.Hosts[0]] = true
}

// ensureMaster makes node1 the master again if leadership moved, so
// that joins use node1's key, the key the admin trusted (see trust).
func (w *sshWorld) ensureMaster() {
	w.t.Helper()
	n1 := w.Hosts[0]
	if w.Leader() == n1 {
		return
	}
	w.MustRun(n1, "cluster", "failover")
	w.waitMaster(n1)
}

// tryJoin trusts node1 on h and runs the join on node1.
func (w *sshWorld) tryJoin(h *Host, extra ...string) (string, string,
	error) {
	w.t.Helper()
	w.ensureMaster()
	w.trust(h)
	args := []string{"join", "--primary-ip", h.IP,
		"--ssh-port", strconv.Itoa(h.SSHPort)}
	args = append(append(args, extra...), h.Name)
	return w.Run(w.Hosts[0], args...)
}

// join is tryJoin that must succeed; it waits until h's daemon says it
// is initialised.
func (w *sshWorld) join(h *Host, extra ...string) {
	w.t.Helper()
	out, stderr, err := w.tryJoin(h, extra...)
	if err != nil {
		w.t.Fatalf("join %s: %v\nstderr: %s\n--- node1 daemon.log:\n%s",
			h.Name, err, stderr, w.Hosts[0].LogTail(logTailLines))
	}
	if strings.Contains(out, "unreachable:") {
		w.t.Errorf("join %s: stdout %q, want no unreachable node", h.Name,
			out)
	}
	w.joined[h] = true
	WaitFor(w.t, h.Name+" to be initialised after join", convergeWithin,
		func() (bool, string) {
			st, err := w.TryStatus(h)
			if err != nil {
				return false, err.Error()
			}
			return st.Initialised, fmt.Sprintf("%+v", st)
		})
}

// masterList is the list as the master sees it.
func (w *sshWorld) masterList() []NodeInfo {
	w.t.Helper()
	return w.List(w.Leader())
}

// expect checks, straight away, that the master lists wantRoles (in
// the notation of roles) and that every live host's SSH files and
// logins match the list it got, which it returns. Wrong roles do not
// stop the test: the files must still match the roles there are.
func (w *sshWorld) expect(what, wantRoles string) []NodeInfo {
	w.t.Helper()
	nodes := w.masterList()
	if got := roles(nodes); got != wantRoles {
		w.t.Errorf("%s: roles: got %q, want %q", what, got, wantRoles)
	}
	live := w.liveHosts()
	w.checkLogins(what, nodes, live)
	if state := w.filesState(nodes, live); state != "" {
		w.t.Errorf("%s: SSH files differ from the list:\n%s", what, state)
	}
	return nodes
}

// liveHosts returns the hosts whose daemon runs.
func (w *sshWorld) liveHosts() []*Host {
	var out []*Host
	for _, h := range w.Hosts {
		if h.Alive() {
			out = append(out, h)
		}
	}
	return out
}

// ownKey returns h's own public key as "TYPE BASE64".
func ownKey(h *Host) (string, error) {
	data, err := os.ReadFile(h.path(ownKeyRel + ".pub"))
	if err != nil {
		return "", err
	}
	f := strings.Fields(string(data))
	if len(f) < 2 {
		return "", fmt.Errorf("%s: public key %q", h.Name, data)
	}
	return f[0] + " " + f[1], nil
}

func isMC(n NodeInfo) bool {
	return n.Role == "master" || n.Role == "candidate"
}

func findNode(nodes []NodeInfo, name string) (NodeInfo, bool) {
	for _, n := range nodes {
		if n.Name == name {
			return n, true
		}
	}
	return NodeInfo{}, false
}

// expectedKeys derives from the list and each node's own key file the
// managed authorized_keys lines (sorted) and the ganeti_pub_keys
// content (sorted by UUID, as the file format says).
func (w *sshWorld) expectedKeys(nodes []NodeInfo) ([]string, string,
	error) {
	var managed, pub []string
	for _, n := range nodes {
		h := w.Host(n.Name)
		if h == nil {
			return nil, "", fmt.Errorf("listed node %q is no host", n.Name)
		}
		key, err := ownKey(h)
		if err != nil {
			return nil, "", err
		}
		if isMC(n) {
			managed = append(managed, key+" ganeti-node:"+n.UUID+"\n")
		}
		if n.MasterCapable {
			pub = append(pub, n.UUID+" "+key+"\n")
		}
	}
	slices.Sort(managed)
	slices.Sort(pub)
	return managed, strings.Join(pub, ""), nil
}

// filesState says how the SSH files of hosts differ from what nodes
// implies, or "" when they match exactly.
func (w *sshWorld) filesState(nodes []NodeInfo, hosts []*Host) string {
	managed, pub, err := w.expectedKeys(nodes)
	if err != nil {
		return err.Error()
	}
	var bad []string
	for _, h := range hosts {
		n, member := findNode(nodes, h.Name)
		if s := w.authKeysState(h, member, managed); s != "" {
			bad = append(bad, s)
		}
		if s := pubKeysState(h, member && n.MasterCapable, pub); s != "" {
			bad = append(bad, s)
		}
	}
	return strings.Join(bad, "\n")
}

// authKeysState checks h's authorized_keys. A host that never joined
// keeps the file the admin wrote. Otherwise the file is the admin's own
// lines byte for byte, and, in one block, exactly managed on a member
// and no managed line at all on a removed node.
func (w *sshWorld) authKeysState(h *Host, member bool,
	managed []string) string {
	seeded, ok := w.seeded[h]
	data, err := os.ReadFile(h.path(authKeysRel))
	switch {
	case !ok && err == nil:
		return fmt.Sprintf("%s: authorized_keys %q, want no file",
			h.Name, data)
	case !ok && os.IsNotExist(err):
		return ""
	case err != nil:
		return fmt.Sprintf("%s: %v", h.Name, err)
	case !w.joined[h]:
		if string(data) != seeded {
			return fmt.Sprintf("%s (never joined): authorized_keys:\n"+
				"got  %q\nwant %q", h.Name, data, seeded)
		}
		return ""
	}
	if !member {
		managed = nil
	}
	return splitState(h.Name, string(data), w.admin[h], managed)
}

// splitState checks that content is admin with one block of exactly
// the managed lines (in any order) somewhere between its lines. The
// admin's last line has no newline; the tool ends it when it appends
// its block after it, and may keep that newline when the block goes.
func splitState(name, content, admin string, managed []string) string {
	var rest strings.Builder
	var got []string
	first, last := -1, -1
	lines := strings.SplitAfter(content, "\n")
	for i, l := range lines {
		if !isManagedLine(l) {
			rest.WriteString(l)
			continue
		}
		got = append(got, l)
		if first < 0 {
			first = i
		}
		last = i
	}
	slices.Sort(got)
	if !slices.Equal(got, managed) {
		return fmt.Sprintf("%s: managed lines:\ngot  %q\nwant %q", name,
			got, managed)
	}
	if len(got) > 0 && last-first+1 != len(got) {
		return fmt.Sprintf("%s: managed lines not in one block: %q", name,
			content)
	}
	ended := admin + "\n"
	atEnd := len(got) == 0 || last == len(lines)-1 ||
		last == len(lines)-2 && lines[len(lines)-1] == ""
	if r := rest.String(); r != admin &&
		!(atEnd && !strings.HasSuffix(admin, "\n") && r == ended) {
		return fmt.Sprintf("%s: the admin's lines changed:\ngot  %q\n"+
			"want %q\nin %q", name, r, admin, content)
	}
	return ""
}

// isManagedLine reports whether an authorized_keys line carries the
// tool's marker: a key whose comment starts with "ganeti-node:".
func isManagedLine(line string) bool {
	f := strings.Fields(line)
	return len(f) >= 3 && !strings.HasPrefix(f[0], "#") &&
		strings.HasPrefix(f[len(f)-1], "ganeti-node:")
}

// pubKeysState checks that h has a 0600 ganeti_pub_keys holding
// exactly want when it is a potential candidate, and none otherwise.
func pubKeysState(h *Host, potential bool, want string) string {
	p := h.LibPath("ganeti_pub_keys")
	st, err := os.Stat(p)
	switch {
	case !potential && err == nil:
		return fmt.Sprintf("%s: ganeti_pub_keys exists, want none "+
			"(not a potential candidate)", h.Name)
	case !potential && os.IsNotExist(err):
		return ""
	case err != nil:
		return fmt.Sprintf("%s: ganeti_pub_keys: %v", h.Name, err)
	case st.Mode().Perm() != 0o600:
		return fmt.Sprintf("%s: ganeti_pub_keys mode: got %04o, want 0600",
			h.Name, st.Mode().Perm())
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return fmt.Sprintf("%s: %v", h.Name, err)
	}
	if string(data) != want {
		return fmt.Sprintf("%s: ganeti_pub_keys:\ngot  %q\nwant %q",
			h.Name, data, want)
	}
	return ""
}

// loginPair is one ssh attempt with the login it should give.
type loginPair struct {
	from, to *Host
	key      string // private key file
	want     bool
}

// checkLogins tries real ssh from every host of hosts that has a key
// to every other one. A login must work exactly when the source is a
// candidate and the target a member in nodes, or when the target never
// joined and the admin wrote the source's key there.
func (w *sshWorld) checkLogins(what string, nodes []NodeInfo,
	hosts []*Host) {
	w.t.Helper()
	var pairs []loginPair
	for _, from := range hosts {
		key, err := ownKey(from)
		if err != nil {
			continue // not joined yet: no key to try
		}
		n, _ := findNode(nodes, from.Name)
		for _, to := range hosts {
			if to == from {
				continue
			}
			_, member := findNode(nodes, to.Name)
			want := isMC(n) && member ||
				!w.joined[to] && strings.Contains(w.seeded[to], key)
			pairs = append(pairs, loginPair{from, to,
				from.path(ownKeyRel), want})
		}
	}
	w.checkPairs(what, pairs)
}

// checkPairs runs the ssh attempts of pairs in parallel and reports
// each one that does not end as wanted.
func (w *sshWorld) checkPairs(what string, pairs []loginPair) {
	w.t.Helper()
	errs := make([]error, len(pairs))
	got := make([]bool, len(pairs))
	var wg sync.WaitGroup
	for i, p := range pairs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i], errs[i] = w.login(p.key, p.to)
		}()
	}
	wg.Wait()
	for i, p := range pairs {
		switch {
		case errs[i] != nil:
			w.t.Errorf("%s: ssh %s -> %s: %v", what, p.from.Name,
				p.to.Name, errs[i])
		case got[i] != p.want:
			w.t.Errorf("%s: ssh %s -> %s with %s: logged in %v, want %v",
				what, p.from.Name, p.to.Name, p.key, got[i], p.want)
		}
	}
}

// login runs `true` on to with real ssh and the private key file key,
// verifying to's host key against the test's own known_hosts. It
// reports whether the login worked; an error means ssh failed for any
// other reason than sshd refusing the key.
func (w *sshWorld) login(key string, to *Host) (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, sshPath, "-i", key,
		"-o", "IdentitiesOnly=yes",
		"-o", "BatchMode=yes",
		"-o", "StrictHostKeyChecking=yes",
		"-o", "UserKnownHostsFile="+w.knownHosts,
		"-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "ConnectTimeout=20", // a bound for busy CI hosts only
		"-F", "/dev/null",
		"-p", strconv.Itoa(to.SSHPort), "root@"+to.IP, "true")
	cmd.Env = cleanEnv()
	out, err := cmd.CombinedOutput()
	switch {
	case err == nil:
		return true, nil
	case strings.Contains(string(out), "Permission denied (publickey)"):
		return false, nil
	}
	return false, fmt.Errorf("%w: %s", err, strings.TrimSpace(string(out)))
}

// op runs ganeti-node args on node1, failing the test if it fails,
// and returns its stdout. Every host is up, so the reply must list
// none as unreachable. node1 is made master first: leadership may move
// on its own, and the node an operation revokes must not hold it.
func (w *sshWorld) op(args ...string) string {
	w.t.Helper()
	w.ensureMaster()
	return w.opOn(w.Hosts[0], args...)
}

// opOn is op on h, wherever leadership is.
func (w *sshWorld) opOn(h *Host, args ...string) string {
	w.t.Helper()
	out := w.MustRun(h, args...)
	if strings.Contains(out, "unreachable:") {
		w.t.Errorf("ganeti-node %s: stdout %q, want no unreachable node "+
			"(all hosts are up)", strings.Join(args, " "), out)
	}
	return out
}

// refused runs ganeti-node args on node1 and checks that it fails
// with one line on stderr that contains want.
func (w *sshWorld) refused(want string, args ...string) {
	w.t.Helper()
	cmd := strings.Join(args, " ")
	w.ensureMaster()
	_, stderr, err := w.Run(w.Hosts[0], args...)
	if err == nil {
		w.t.Fatalf("ganeti-node %s: succeeded, want refusal", cmd)
	}
	line := strings.TrimSuffix(stderr, "\n")
	if strings.Contains(line, "\n") || !strings.Contains(line, want) {
		w.t.Errorf("ganeti-node %s: stderr %q, want one line with %q",
			cmd, stderr, want)
	}
}

// files reads every host's authorized_keys and ganeti_pub_keys, by
// path; a file that cannot be read shows as "<error>".
func (w *sshWorld) files() map[string]string {
	m := map[string]string{}
	for _, h := range w.Hosts {
		for _, p := range []string{h.path(authKeysRel),
			h.LibPath("ganeti_pub_keys")} {
			data, err := os.ReadFile(p)
			if err != nil {
				m[p] = "<" + err.Error() + ">"
				continue
			}
			m[p] = string(data)
		}
	}
	return m
}

// checkFailedJoin makes the join of h fail after h has made its keys
// (a directory where install must write server.pem) and checks that
// nothing of it is left: no key anywhere, no node in the list.
func (w *sshWorld) checkFailedJoin(h *Host, wantRoles string) {
	w.t.Helper()
	w.trust(h)
	blocker := h.LibPath("server.pem")
	if err := os.MkdirAll(blocker, 0o700); err != nil {
		w.t.Fatal(err)
	}
	before := w.files()
	_, stderr, err := w.tryJoin(h)
	if err == nil {
		w.t.Fatalf("join %s with server.pem a directory: succeeded, "+
			"want failure", h.Name)
	}
	w.t.Logf("failed join: %s", strings.TrimSpace(stderr))
	line := strings.TrimSuffix(stderr, "\n")
	if strings.Contains(line, "\n") ||
		!strings.Contains(line, "installing the node") ||
		!strings.Contains(line, "server.pem") {
		w.t.Errorf("failed join: stderr %q, want one line naming the "+
			"install step and server.pem", stderr)
	}
	key, err := ownKey(h)
	if err != nil {
		w.t.Fatalf("no key on %s after the failed join (%v): it failed "+
			"before key generation, which this test does not cover",
			h.Name, err)
	}
	after := w.files()
	for p, was := range before {
		if after[p] != was {
			w.t.Errorf("failed join changed %s:\ngot  %q\nwant %q",
				p, after[p], was)
		}
		if strings.Contains(after[p], key) {
			w.t.Errorf("failed join left %s's key in %s", h.Name, p)
		}
	}
	w.expect("after the failed join of "+h.Name, wantRoles)
	if err := os.Remove(blocker); err != nil {
		w.t.Fatal(err)
	}
}

// checkBadInput checks the refusals and no-ops of role commands.
func (w *sshWorld) checkBadInput(wantRoles string) {
	w.t.Helper()
	w.refused("node99", "promote", "node99")
	w.refused("master", "remove", w.Leader().Name)
	out := w.op("demote", "node4")
	if want := "node node4 is not a master candidate\n"; out != want {
		w.t.Errorf("demote of a regular node: stdout %q, want %q",
			out, want)
	}
	w.expect("after bad input", wantRoles)
}

func TestSSH_RoleChangesKeepKeysExact(t *testing.T) {
	w := newSSHWorld(t, 5)
	n2, n3, n4, n5 := w.Hosts[1], w.Hosts[2], w.Hosts[3], w.Hosts[4]

	w.initCluster()
	w.expect("init", "node1=mc/voter")
	w.join(n2)
	w.expect("join node2", "node1=mc/voter node2=mc/voter")
	w.join(n3)
	mc3 := "node1=mc/voter node2=mc/voter node3=mc/voter"
	w.expect("join node3", mc3)
	w.join(n4) // the pool of 3 is full: a regular node
	want := mc3 + " node4=regular/nonvoter"
	w.expect("join node4", want)

	w.checkBadInput(want)
	w.checkFailedJoin(n5, want)

	// node5 is never a potential candidate until modify says so.
	w.join(n5, "--master-capable=false")
	want += " node5=regular/nonvoter"
	w.expect("join node5 --master-capable=false", want)
	w.refused("master-capable", "promote", "node5")

	w.op("promote", "node4")
	w.expect("promote node4", "node1=mc/voter node2=mc/voter "+
		"node3=mc/voter node4=mc/voter node5=regular/nonvoter")
	w.op("demote", "node4")
	w.expect("demote node4", want)

	// Demotions below the pool need --auto-promote while node4 is
	// promotable; with it node4 replaces node2 in the same operation.
	w.refused("--auto-promote", "demote", "node2")
	w.expect("refused demote node2", want)
	w.op("demote", "--auto-promote", "node2")
	w.expect("demote --auto-promote node2", "node1=mc/voter "+
		"node2=regular/nonvoter node3=mc/voter node4=mc/voter "+
		"node5=regular/nonvoter")

	w.refused("--auto-promote", "offline", "node3")
	w.op("offline", "--auto-promote", "node3")
	w.expect("offline --auto-promote node3", "node1=mc/voter "+
		"node2=mc/voter node3=offline/none node4=mc/voter "+
		"node5=regular/nonvoter")
	w.op("online", "node3") // the pool is full: back as regular
	want = "node1=mc/voter node2=mc/voter node3=regular/nonvoter " +
		"node4=mc/voter node5=regular/nonvoter"
	w.expect("online node3 with a full pool", want)

	w.modifyMasterCapable("node5")
	w.expect("modify node5 --master-capable=true", want)
	w.op("promote", "node5")
	w.expect("promote node5", "node1=mc/voter node2=mc/voter "+
		"node3=regular/nonvoter node4=mc/voter node5=mc/voter")

	// Four candidates: node4 may go offline without a replacement.
	w.op("offline", "node4")
	w.expect("offline node4", "node1=mc/voter node2=mc/voter "+
		"node3=regular/nonvoter node4=offline/none node5=mc/voter")

	w.op("remove", "node3")
	w.expect("remove regular node3", "node1=mc/voter node2=mc/voter "+
		"node4=offline/none node5=mc/voter")
	// Nobody is left to promote: node2 may go, leaving room in the pool.
	w.op("remove", "node2")
	w.expect("remove candidate node2", "node1=mc/voter "+
		"node4=offline/none node5=mc/voter")
	w.op("online", "node4") // it was a candidate and the pool has room
	want = "node1=mc/voter node4=mc/voter node5=mc/voter"
	w.expect("online node4 with room in the pool", want)

	w.checkReadd(n4, want)

	// node1's key reached every host through the admin before each join;
	// as a managed line it goes when node1 stops being a candidate.
	w.MustRun(n5, "cluster", "failover")
	w.waitMaster(n5)
	w.opOn(n5, "demote", "--auto-promote", "node1")
	w.expect("demote --auto-promote node1, the first master",
		"node1=regular/nonvoter node4=mc/voter node5=mc/voter")
}

// modifyMasterCapable runs `modify NODE --master-capable=true` in the
// order the design documents. If the command line refuses that order,
// the test fails and goes on with the flag first, so that the checks
// after it still run.
func (w *sshWorld) modifyMasterCapable(node string) {
	w.t.Helper()
	args := []string{"modify", node, "--master-capable=true"}
	w.ensureMaster()
	if _, stderr, err := w.Run(w.Hosts[0], args...); err != nil {
		w.t.Errorf("ganeti-node %s: %v: %s", strings.Join(args, " "), err,
			strings.TrimSpace(stderr))
		w.op("modify", "--master-capable=true", node)
	}
}

// checkReadd re-adds h, a candidate, and checks that its old key is
// refused everywhere and its new key works as its role says.
func (w *sshWorld) checkReadd(h *Host, wantRoles string) {
	w.t.Helper()
	old := filepath.Join(w.t.TempDir(), "old_id_ed25519")
	writeFile(w.t, old, readFile(w.t, h.path(ownKeyRel)), 0o600)
	oldPub, err := ownKey(h)
	if err != nil {
		w.t.Fatal(err)
	}

	w.join(h, "--readd")
	w.expect("join --readd "+h.Name, wantRoles)
	if key, _ := ownKey(h); key == oldPub {
		w.t.Fatalf("join --readd %s kept its key %q, want a new one",
			h.Name, key)
	}
	var pairs []loginPair
	for _, to := range w.liveHosts() {
		if to != h {
			pairs = append(pairs, loginPair{h, to, old, false})
		}
	}
	w.checkPairs("old key of "+h.Name+" after readd", pairs)
}
