package integration

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The refusal reasons the daemon logs (rpcsec's Reason values).
const (
	reasonNoCert    = "no client certificate"
	reasonWrongCA   = "not signed by the cluster CA"
	reasonExpired   = "expired or not yet valid"
	reasonUnknown   = "node not in candidate map"
	reasonHandshake = "TLS handshake failed"
)

// tlsCluster is the cluster the TLS tests share: node1 master, node2
// and node3 candidates, node4 a normal node that is not master-capable
// (a Raft non-voter that is never promoted), and node5 a normal,
// master-capable node for `demote --auto-promote` to promote.
type tlsCluster struct {
	*Cluster
	n1, n2, n3, n4, n5 *Host
	// uuid maps host name to node UUID.
	uuid  map[string]string
	roots *x509.CertPool
}

func newTLSCluster(t *testing.T) *tlsCluster {
	t.Helper()
	c := NewClusterWith(t, 5, Options{})
	tc := &tlsCluster{Cluster: c, n1: c.Hosts[0], n2: c.Hosts[1],
		n3: c.Hosts[2], n4: c.Hosts[3], n5: c.Hosts[4],
		uuid: map[string]string{}}
	c.Init(tc.n1)
	tc.join(tc.n2)
	tc.join(tc.n3)
	tc.join(tc.n4, "--master-capable=false")
	tc.join(tc.n5)
	nodes := c.waitConverged(c.Hosts...)
	want := "node1=mc/voter node2=mc/voter node3=mc/voter " +
		"node4=regular/nonvoter node5=regular/nonvoter"
	if got := roles(nodes); got != want {
		t.Fatalf("roles: got %q, want %q", got, want)
	}
	for _, n := range nodes {
		tc.uuid[n.Name] = n.UUID
	}
	tc.roots = hostCAPool(t, tc.n1)
	tc.ensureMaster(tc.n1)
	return tc
}

// join is Cluster.Join from node1, retried like runRetrying.
func (tc *tlsCluster) join(h *Host, extra ...string) {
	tc.t.Helper()
	tc.TrustMaster(tc.n1, h)
	args := append([]string{"join", "--primary-ip", h.IP,
		"--ssh-port", strconv.Itoa(h.SSHPort)}, extra...)
	tc.runRetrying(tc.n1, func() bool { return tc.listed(h) },
		append(args, h.Name)...)
	WaitFor(tc.t, h.Name+" to be initialised after join", convergeWithin,
		func() (bool, string) {
			st, err := tc.TryStatus(h)
			if err != nil {
				return false, err.Error()
			}
			return st.Initialised, fmt.Sprintf("%+v", st)
		})
}

// listed reports whether the master lists h.
func (tc *tlsCluster) listed(h *Host) bool {
	nodes, err := tc.TryList(tc.Leader())
	return err == nil && checkMembers(nodes, []*Host{h}) == ""
}

// lostMaster holds what a command says when the master lost
// leadership while running it.
var lostMaster = []string{"no longer the master; retry",
	"this node is not the leader"}

// runRetrying runs a command that changes the cluster on h, like
// MustRun, but runs it again, up to three times, when the master lost
// leadership during it, as its message asks: on a loaded machine Raft
// may move leadership at any time. Before a retry it waits for a new
// master and asks done whether the interrupted attempt took effect.
// The command under test, demote, is never retried.
func (tc *tlsCluster) runRetrying(h *Host, done func() bool,
	args ...string) {
	tc.t.Helper()
	for try := 1; ; try++ {
		_, stderr, err := tc.Run(h, args...)
		if err == nil {
			return
		}
		if try == 3 || !slices.ContainsFunc(lostMaster,
			func(m string) bool { return strings.Contains(stderr, m) }) {
			tc.t.Fatalf("on %s: ganeti-node %s: %v (try %d)\n"+
				"stderr: %s\n%s", h.Name, strings.Join(args, " "),
				err, try, stderr, tc.tails())
		}
		tc.t.Logf("on %s: ganeti-node %s: %s; retrying", h.Name,
			strings.Join(args, " "), strings.TrimSpace(stderr))
		if tc.Leader(); done() {
			return
		}
	}
}

// ensureMaster makes h the master if it is not. Leadership may move
// on its own on a loaded machine; the tests want it on node1, so that
// the master is attacked and node3 can be demoted.
func (tc *tlsCluster) ensureMaster(h *Host) {
	tc.t.Helper()
	if tc.Leader() == h {
		return
	}
	tc.runRetrying(h, func() bool { return tc.Leader() == h },
		"cluster", "failover")
	tc.waitMaster(h)
}

// TestTLS_NodeSecurity runs the RPC half of the node security rule
// against real daemons on one shared cluster: who the daemon port
// admits for the node RPC and for Raft, what it logs when it refuses,
// that a normal node never dials, and that `demote` has cut the
// demoted candidate off everywhere by the time it returns.
func TestTLS_NodeSecurity(t *testing.T) {
	tc := newTLSCluster(t)

	t.Run("CandidateAdmitted", tc.testCandidateAdmitted)
	t.Run("Refused", tc.testRefused)
	t.Run("CurlRefused", tc.testCurlRefused)

	// These drive the cluster through the harness, whose failures
	// end the top-level test, so they run at top level.
	tc.checkNormalNodeRefusesOps(t)
	tc.checkDemoteRevokesAtOnce(t)
	tc.checkRaftAfterDemote(t)
	tc.checkNoDialsFromNormalNode(t)
}

// testCandidateAdmitted: the certificates of the master and of a
// candidate are admitted for the node RPC and for Raft.
func (tc *tlsCluster) testCandidateAdmitted(t *testing.T) {
	for _, mc := range []*Host{tc.n1, tc.n2} {
		cert := hostClientCert(t, mc)
		cr := tlsCred{cert: &cert}
		for _, to := range []*Host{tc.n4, tc.n3} {
			if mc == to {
				continue
			}
			if a := tryRPC(mc, to, tc.roots, cr); a.err != nil {
				t.Errorf("rpc %s -> %s: %v", mc.Name, to.Name, a.err)
			}
			if a := tryRaft(t, mc, to, tc.roots, cr); a.err != nil {
				t.Errorf("raft %s -> %s: %v", mc.Name, to.Name, a.err)
			}
		}
	}
}

// tlsRefusal is one client the daemon port must refuse, and the node
// and reason its log line must give.
type tlsRefusal struct {
	name   string
	cred   tlsCred
	node   string
	reason string
	// errHas is part of the logged error, if any.
	errHas string
}

// refusals are the clients a daemon port must refuse before any
// demotion: forged, foreign, expired, normal, stolen, plain and old.
func (tc *tlsCluster) refusals(t *testing.T) []tlsRefusal {
	t.Helper()
	now := time.Now()
	victim := hostClientCert(t, tc.n2)
	u2, u4 := tc.uuid["node2"], tc.uuid["node4"]

	forged := selfSignedCopy(t, victim.Leaf)
	ca, caKey := foreignCA(t)
	foreign := issueCert(t, clientTemplate(t, "node2", u2, now.Add(-time.Hour),
		now.Add(time.Hour)), ca, caKey)
	clusterCert, clusterKey := stolenClusterCA(t, tc.n1)
	expired := issueCert(t, clientTemplate(t, "node2", u2,
		now.Add(-72*time.Hour), now.Add(-24*time.Hour)),
		clusterCert, clusterKey)
	tc.checkNotInMap(t, expired.Leaf)
	normal := hostClientCert(t, tc.n4)
	stolen := tls.Certificate{Certificate: victim.Certificate,
		PrivateKey: normal.PrivateKey}

	return []tlsRefusal{
		{"no certificate", tlsCred{}, "", reasonNoCert, ""},
		{"self-signed copy of node2", tlsCred{cert: &forged}, u2,
			reasonWrongCA, "unknown authority"},
		{"other CA", tlsCred{cert: &foreign}, u2, reasonWrongCA,
			"unknown authority"},
		{"normal node4", tlsCred{cert: &normal}, u4, reasonUnknown, ""},
		{"expired for node2", tlsCred{cert: &expired}, u2, reasonExpired,
			"expired"},
		{"node2's certificate without its key", tlsCred{cert: &stolen}, u2,
			reasonHandshake, "invalid signature"},
		{"TLS 1.2", tlsCred{cert: &victim, maxVersion: tls.VersionTLS12},
			"", reasonHandshake, "unsupported versions"},
		{"plain text", tlsCred{plain: true}, "", reasonHandshake,
			"does not look like a TLS handshake"},
	}
}

// checkNotInMap shows that cert, though signed by the cluster CA for
// a candidate, is not the certificate the candidate map names.
func (tc *tlsCluster) checkNotInMap(t *testing.T, cert *x509.Certificate) {
	t.Helper()
	sum := sha256.Sum256(cert.Raw)
	d := "sha256:" + hex.EncodeToString(sum[:])
	m := readLib(t, tc.n1, "ssconf_master_candidates_certs")
	if strings.Contains(m, d) {
		t.Fatalf("forged certificate %s is in the candidate map", d)
	}
}

// testRefused aims every refused client at a normal node (non-voter)
// and at the master, for the node RPC and for Raft, and checks the
// target's log line.
func (tc *tlsCluster) testRefused(t *testing.T) {
	// The attacker is another normal node, except for node4 itself.
	targets := []struct{ from, to *Host }{{tc.n5, tc.n4}, {tc.n4, tc.n1}}
	for _, r := range tc.refusals(t) {
		t.Run(r.name, func(t *testing.T) {
			for _, tg := range targets {
				tc.checkRefused(t, r, tg.from, tg.to)
			}
		})
	}
}

func (tc *tlsCluster) checkRefused(t *testing.T, r tlsRefusal,
	from, to *Host) {
	t.Helper()
	try := map[string]func() tlsAttempt{
		"rpc": func() tlsAttempt {
			return tryRPC(from, to, tc.roots, r.cred)
		},
		"raft": func() tlsAttempt {
			return tryRaft(t, from, to, tc.roots, r.cred)
		},
	}
	for _, proto := range []string{"rpc", "raft"} {
		if r.cred.plain && proto == "raft" {
			continue // no TLS, so no ALPN to choose Raft by
		}
		what := proto + " " + from.Name + " -> " + to.Name
		a := try[proto]()
		wantRefused(t, what, a)
		if a.peer == "" {
			continue
		}
		fields := refusalFields(a.peer, r.node, r.reason)
		line := waitDaemonLog(t, to, what+" refusal", 0,
			append(fields, r.errHas)...)
		t.Logf("%s: client: %v\n\tlog: %s", what, a.err, line)
	}
}

// testCurlRefused repeats some refusals with curl (OpenSSL), a client
// the product does not share code with. Without ALPN the daemon port
// checks the certificate first and then finds no protocol; so curl is
// not used for an admitted call.
func (tc *tlsCluster) testCurlRefused(t *testing.T) {
	from, to := tc.n5, tc.n4
	n4pem, n2pem := tc.n4.LibPath("client.pem"), tc.n2.LibPath("client.pem")
	tests := []struct {
		name, reason string
		args         []string
	}{
		{"no certificate", reasonNoCert, nil},
		{"normal node4", reasonUnknown,
			[]string{"--cert", n4pem, "--key", n4pem}},
		{"TLS 1.2", reasonHandshake, []string{"--tlsv1.2", "--tls-max",
			"1.2", "--cert", n2pem, "--key", n2pem}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			subs := []string{`msg="refusing connection"`,
				" peer=" + from.IP + ":", " reason=" + slogValue(tt.reason)}
			before := len(daemonLogLines(to, subs...))
			code, out := curlPing(from, to, tt.args...)
			if code == 0 || strings.Contains(out, `"ok"`) {
				t.Errorf("curl: exit %d, output %q; want refused",
					code, out)
			}
			line := waitDaemonLog(t, to, "curl refusal", before, subs...)
			t.Logf("curl exit %d: %s\n\tlog: %s", code,
				strings.TrimSpace(out), line)
		})
	}
}

// checkNormalNodeRefusesOps: commands that change the cluster are
// refused on a normal node, which must not forward them (it never
// dials); the master has dialled by now.
func (tc *tlsCluster) checkNormalNodeRefusesOps(t *testing.T) {
	t.Helper()
	tc.MustRun(tc.n4, "list")
	for _, args := range [][]string{
		{"demote", "node2"}, {"promote", "node5"},
		{"cluster", "failover"},
	} {
		_, stderr, err := tc.Run(tc.n4, args...)
		if err == nil {
			t.Errorf("%s on normal node4: succeeded, want refused",
				strings.Join(args, " "))
		}
		t.Logf("%s on node4: %s", strings.Join(args, " "),
			strings.TrimSpace(stderr))
	}
	tc.checkDials(t, "after joins, list and refused operations")
}

// isCandidate reports whether the master lists h as a candidate.
func (tc *tlsCluster) isCandidate(h *Host) bool {
	nodes, err := tc.TryList(tc.Leader())
	if err != nil {
		return false
	}
	for _, n := range nodes {
		if n.Name == h.Name {
			return n.Role == "candidate" || n.Role == "master"
		}
	}
	return false
}

// checkDials wants node4's daemon never to have dialled a daemon port
// and the master's to have.
func (tc *tlsCluster) checkDials(t *testing.T, when string) {
	t.Helper()
	if got := tc.Status(tc.n4).TLSDials; got != 0 {
		t.Errorf("%s: tls_dials of normal node4: got %d, want 0",
			when, got)
	}
	if got := tc.Status(tc.n1).TLSDials; got == 0 {
		t.Errorf("%s: tls_dials of node1 (master): got 0, want > 0", when)
	}
}

// revocationProber keeps trying a node RPC call as cr while `demote`
// runs, and records when the last admitted call started.
type revocationProber struct {
	stop, done chan struct{}

	mu           sync.Mutex
	admitted     int
	refused      int
	lastAdmitted time.Time // start of the last admitted call
	firstRefused time.Time
}

func startRevocationProber(from, to *Host, roots *x509.CertPool,
	cr tlsCred) *revocationProber {
	p := &revocationProber{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		for {
			select {
			case <-p.stop:
				return
			default:
			}
			start := time.Now()
			a := tryRPC(from, to, roots, cr)
			p.record(start, a.err == nil)
			time.Sleep(10 * time.Millisecond) // poll interval
		}
	}()
	return p
}

func (p *revocationProber) record(start time.Time, admitted bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if admitted {
		p.admitted++
		p.lastAdmitted = start
		return
	}
	p.refused++
	if p.firstRefused.IsZero() {
		p.firstRefused = time.Now()
	}
}

func (p *revocationProber) finish() {
	close(p.stop)
	<-p.done
}

// checkDemoteRevokesAtOnce demotes node3 and checks, straight after
// the command returns, that node3's connections opened before are
// already closed and new ones are refused, by the master and by a
// normal node, for the node RPC and for Raft.
func (tc *tlsCluster) checkDemoteRevokesAtOnce(t *testing.T) {
	t.Helper()
	n3cert := hostClientCert(t, tc.n3)
	cr := tlsCred{cert: &n3cert}
	u3 := tc.uuid["node3"]

	// Admitted connections opened before, then left idle.
	idle := map[*Host]*rpcConn{}
	for _, to := range []*Host{tc.n4, tc.n1} {
		c, err := openRPC(tc.n3, to, tc.roots, cr)
		if err == nil {
			err = c.ping(to)
		}
		if err != nil {
			t.Fatalf("rpc node3 -> %s before demote: %v", to.Name, err)
		}
		t.Cleanup(c.Close)
		idle[to] = c
	}
	rc := newRaftClient(t, tc.n3, tc.roots, cr)
	if _, err := rc.appendEntries(tc.n4); err != nil {
		t.Fatalf("raft node3 -> node4 before demote: %v", err)
	}
	raftSock := rc.s.last()
	resumable := tc.ticketFor(t, cr)

	tc.ensureMaster(tc.n1)
	p := startRevocationProber(tc.n3, tc.n4, tc.roots, cr)
	began := time.Now()
	out := tc.MustRun(tc.n1, "demote", "--auto-promote", "node3")
	returned := time.Now()

	// Straight after the return, before anything else is sent.
	for to, c := range idle {
		if closed, state := peerClosed(c.raw); !closed {
			t.Errorf("node3's idle rpc connection to %s right after "+
				"demote returned: %s, want closed by the server",
				to.Name, state)
		}
	}
	if closed, state := peerClosed(raftSock); !closed {
		t.Errorf("node3's idle raft connection to node4 right after "+
			"demote returned: %s, want closed by the server", state)
	}
	for _, to := range []*Host{tc.n4, tc.n1} {
		a := tryRPC(tc.n3, to, tc.roots, cr)
		wantRefused(t, "rpc node3 -> "+to.Name+" after demote", a)
		waitDaemonLog(t, to, "refusal of demoted node3", 0,
			refusalFields(a.peer, u3, reasonUnknown)...)
	}
	p.finish()
	tc.reportWindow(t, p, began, returned, out)
	tc.checkResumptionRefused(t, resumable)

	// The next message on the old connections fails.
	for to, c := range idle {
		if err := c.ping(to); err == nil {
			t.Errorf("request on node3's old connection to %s after "+
				"demote: answered, want failure", to.Name)
		}
		peer := c.raw.LocalAddr().String()
		waitDaemonLog(t, to, "revocation of node3's connection", 0,
			`msg="closing revoked connection"`, " peer="+peer+" ",
			" node="+u3, " reason="+slogValue(reasonUnknown))
	}
	if _, err := rc.appendEntries(tc.n4); err == nil {
		t.Errorf("raft message on node3's old connection to node4 " +
			"after demote: answered, want failure")
	}
}

// ticketFor makes an admitted node RPC call from node3 to node4 as cr
// and returns cr with a session cache that now holds node4's ticket.
func (tc *tlsCluster) ticketFor(t *testing.T, cr tlsCred) tlsCred {
	t.Helper()
	cr.sessions = tls.NewLRUClientSessionCache(4)
	// The first read of the response also takes in the ticket.
	if a := tryRPC(tc.n3, tc.n4, tc.roots, cr); a.err != nil {
		t.Fatalf("rpc node3 -> node4 before demote: %v", a.err)
	}
	return cr
}

// checkResumptionRefused resumes node3's session with node4 from
// before the demotion: the resumed handshake is checked too.
func (tc *tlsCluster) checkResumptionRefused(t *testing.T, cr tlsCred) {
	t.Helper()
	c, err := openRPC(tc.n3, tc.n4, tc.roots, cr)
	if err != nil {
		t.Fatalf("resuming node3's session with node4: %v", err)
	}
	defer c.Close()
	if !c.tls.ConnectionState().DidResume {
		t.Errorf("node3's session with node4 was not resumed; " +
			"the resumption check proves nothing")
	}
	err = c.ping(tc.n4)
	a := tlsAttempt{peer: c.raw.LocalAddr().String(), err: err}
	wantRefused(t, "resumed rpc node3 -> node4 after demote", a)
	waitDaemonLog(t, tc.n4, "refusal of node3's resumed session", 0,
		refusalFields(a.peer, tc.uuid["node3"], reasonUnknown)...)
}

// reportWindow logs how long node3 could still connect after demote
// returned (the target is none) and fails if any call that started
// after the return was admitted.
func (tc *tlsCluster) reportWindow(t *testing.T, p *revocationProber, began,
	returned time.Time, out string) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	t.Logf("demote took %v: %s", returned.Sub(began).Round(time.Millisecond),
		strings.TrimSpace(out))
	if p.admitted == 0 || p.refused == 0 {
		t.Logf("prober: %d admitted, %d refused: no transition seen",
			p.admitted, p.refused)
		return
	}
	t.Logf("prober node3 -> node4: %d admitted, %d refused; first "+
		"refusal %v after demote began; last admitted call started "+
		"%v before demote returned", p.admitted, p.refused,
		p.firstRefused.Sub(began).Round(time.Millisecond),
		returned.Sub(p.lastAdmitted).Round(time.Millisecond))
	if p.lastAdmitted.After(returned) {
		t.Errorf("a call by node3 started %v after demote returned "+
			"and was admitted; want none",
			p.lastAdmitted.Sub(returned))
	}
}

// checkRaftAfterDemote: the roles converge through the secured Raft
// transport, and the demoted node can send Raft messages to no one.
func (tc *tlsCluster) checkRaftAfterDemote(t *testing.T) {
	t.Helper()
	nodes := tc.waitConverged(tc.Hosts...)
	want := "node1=mc/voter node2=mc/voter node3=regular/nonvoter " +
		"node4=regular/nonvoter node5=mc/voter"
	if got := roles(nodes); got != want {
		t.Fatalf("roles after demote: got %q, want %q", got, want)
	}
	n3cert := hostClientCert(t, tc.n3)
	cr := tlsCred{cert: &n3cert}
	for _, to := range []*Host{tc.n1, tc.n2, tc.n4, tc.n5} {
		a := tryRaft(t, tc.n3, to, tc.roots, cr)
		wantRefused(t, "raft node3 -> "+to.Name+" after demote", a)
		if a.peer != "" {
			waitDaemonLog(t, to, "raft refusal of demoted node3", 0,
				refusalFields(a.peer, tc.uuid["node3"], reasonUnknown)...)
		}
	}
}

// checkNoDialsFromNormalNode moves leadership to node2 (an election
// over the secured transport), promotes node3 again from there, and
// checks that node3 is admitted again and node4 still never dialled.
func (tc *tlsCluster) checkNoDialsFromNormalNode(t *testing.T) {
	t.Helper()
	tc.checkDials(t, "after demote with auto-promote")

	tc.ensureMaster(tc.n2)
	tc.runRetrying(tc.n2, func() bool { return tc.isCandidate(tc.n3) },
		"promote", "node3")
	nodes := tc.waitConverged(tc.Hosts...)
	want := "node1=mc/voter node2=mc/voter node3=mc/voter " +
		"node4=regular/nonvoter node5=mc/voter"
	if got := roles(nodes); got != want {
		t.Fatalf("roles after failover and promote: got %q, want %q",
			got, want)
	}
	n3cert := hostClientCert(t, tc.n3)
	cr := tlsCred{cert: &n3cert}
	if a := tryRPC(tc.n3, tc.n4, tc.roots, cr); a.err != nil {
		t.Errorf("rpc node3 -> node4 after promote: %v", a.err)
	}
	if a := tryRaft(t, tc.n3, tc.n1, tc.roots, cr); a.err != nil {
		t.Errorf("raft node3 -> node1 after promote: %v", a.err)
	}
	if got := tc.Status(tc.n4).TLSDials; got != 0 {
		t.Errorf("tls_dials of normal node4 at the end: got %d, want 0",
			got)
	}
}
