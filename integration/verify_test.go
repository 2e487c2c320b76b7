package integration

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/url"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// verifyFinding and verifyResult are the JSON of `cluster verify`.
type verifyFinding struct {
	Code    string `json:"code"`
	Node    string `json:"node"`
	Message string `json:"message"`
}

type verifyResult struct {
	Errors   []verifyFinding `json:"errors"`
	Warnings []verifyFinding `json:"warnings"`
}

// codes renders every finding as "CODE node", sorted.
func (r verifyResult) codes() []string {
	var out []string
	for _, f := range append(slices.Clone(r.Errors), r.Warnings...) {
		out = append(out, f.Code+" "+f.Node)
	}
	slices.Sort(out)
	return out
}

// verifyRun is one `cluster verify --output json` run.
type verifyRun struct {
	res    verifyResult
	stderr string
	err    error
	took   time.Duration
}

// runVerify runs `cluster verify --output json` on h and parses its
// output strictly: exactly the documented fields.
func (c *Cluster) runVerify(t testing.TB, h *Host) verifyRun {
	t.Helper()
	start := time.Now()
	stdout, stderr, err := c.Run(h, "cluster", "verify", "--output", "json")
	run := verifyRun{stderr: stderr, err: err, took: time.Since(start)}
	dec := json.NewDecoder(strings.NewReader(stdout))
	dec.DisallowUnknownFields()
	if derr := dec.Decode(&run.res); derr != nil ||
		run.res.Errors == nil || run.res.Warnings == nil {
		t.Fatalf("cluster verify on %s: output %q (%v), stderr %q, err %v\n%s",
			h.Name, stdout, derr, stderr, err, h.LogTail(logTailLines))
	}
	return run
}

// verifyCase breaks one thing, says which findings must follow (and no
// other), and restores the cluster.
type verifyCase struct {
	name string
	// on picks the host to run verify on; nil means the master.
	on     func() *Host
	break_ func(t *testing.T) (restore func())
	want   []string
	// settle says that the restore restarts something, so the case
	// waits for a clean verify before the next one; file restores
	// take effect at once.
	settle bool
	// maxTook, when set, bounds how long the verify may take.
	maxTook time.Duration
}

// verifyAttempts is how often a case is tried. A new master
// reconciles every node and may repair the damage before verify looks,
// and on a machine shared by many simulated hosts a login may time out;
// both pass, while a wrong finding comes back every time.
const verifyAttempts = 3

// verifyCleanWithin bounds the wait for a clean verify after a
// restore; a busy machine needs several verify rounds.
const verifyCleanWithin = 3 * time.Minute

// runVerifyCase breaks, verifies and restores, up to verifyAttempts
// times until verify reports exactly the wanted findings.
func (c *Cluster) runVerifyCase(t *testing.T, tc verifyCase) {
	want := slices.Sorted(slices.Values(tc.want))
	var run verifyRun
	for attempt := 1; attempt <= verifyAttempts; attempt++ {
		on := c.Leader()
		if tc.on != nil {
			on = tc.on()
		}
		restore := tc.break_(t)
		run = c.runVerify(t, on)
		restore()
		if slices.Equal(run.res.codes(), want) {
			c.verifyCheckExit(t, run)
			if tc.maxTook > 0 && run.took > tc.maxTook {
				t.Fatalf("verify took %v, want < %v", run.took, tc.maxTook)
			}
			if tc.settle {
				c.waitVerifyClean(t)
			}
			return
		}
		t.Logf("attempt %d: got %q, want %q; full: %+v", attempt,
			run.res.codes(), want, run.res)
		c.waitVerifyClean(t)
	}
	t.Fatalf("findings after %d attempts: got %q, want %q",
		verifyAttempts, run.res.codes(), want)
}

// verifyCheckExit checks that verify failed, with one line on stderr,
// exactly when it found an error.
func (c *Cluster) verifyCheckExit(t *testing.T, run verifyRun) {
	t.Helper()
	hasErr := len(run.res.Errors) > 0
	if (run.err != nil) != hasErr {
		t.Fatalf("exit: got err %v with %d errors, want failure exactly "+
			"when there is an error", run.err, len(run.res.Errors))
	}
	lines := strings.Split(strings.TrimSuffix(run.stderr, "\n"), "\n")
	if hasErr && (len(lines) != 1 ||
		!strings.Contains(run.stderr, "cluster verify found")) {
		t.Fatalf("stderr: got %q, want one line with the counts",
			run.stderr)
	}
}

// waitVerifyClean polls verify on the master until it reports neither
// errors nor warnings.
func (c *Cluster) waitVerifyClean(t testing.TB) {
	t.Helper()
	WaitFor(t, "a clean cluster verify", verifyCleanWithin,
		func() (bool, string) {
			run := c.runVerify(t, c.Leader())
			got := run.res.codes()
			return len(got) == 0 && run.err == nil,
				fmt.Sprintf("%q, err %v", got, run.err)
		})
}

// verifyUUIDs maps node names to UUIDs as the master lists them.
func (c *Cluster) verifyUUIDs(t testing.TB) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, n := range c.List(c.Leader()) {
		m[n.Name] = n.UUID
	}
	return m
}

// verifyKeep saves the file at p and returns a function that writes
// it back with its mode.
func verifyKeep(t testing.TB, p string) func() {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("saving %s: %v", p, err)
	}
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return func() {
		if err := os.WriteFile(p, data, st.Mode().Perm()); err != nil {
			t.Errorf("restoring %s: %v", p, err)
		}
		if err := os.Chmod(p, st.Mode().Perm()); err != nil {
			t.Errorf("restoring mode of %s: %v", p, err)
		}
	}
}

// verifyAppend appends line to the file at p.
func verifyAppend(t testing.TB, p, line string) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatalf("opening %s: %v", p, err)
	}
	defer f.Close()
	if _, err := f.WriteString(line); err != nil {
		t.Fatalf("appending to %s: %v", p, err)
	}
}

// verifySelfSignedPEM makes a client certificate and key for uuid that
// no CA signed, in client.pem's layout.
func verifySelfSignedPEM(t testing.TB, name, uuid string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1),
		Subject:     pkix.Name{CommonName: name},
		URIs:        []*url.URL{{Scheme: "urn", Opaque: "uuid:" + uuid}},
		NotBefore:   time.Now().Add(-time.Hour),
		NotAfter:    time.Now().Add(2 * 365 * 24 * time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl,
		key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE",
		Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY",
		Bytes: kder})...)
}

// verifySignalHost sends sig to h's daemon process group and its
// sshd.
func verifySignalHost(h *Host, sig syscall.Signal) {
	syscall.Kill(-h.daemon.cmd.Process.Pid, sig)
	h.sshd.cmd.Process.Signal(sig)
}

func TestVerify_BreakAndRestore(t *testing.T) {
	// node1..node3 are candidates, node4 a master-capable regular node
	// and node5 a regular node that may never be a candidate.
	c := newCluster(t, 5, 4, Options{})
	c.Join(c.Hosts[0], c.Hosts[4], "--master-capable=false")
	c.waitConverged(c.Hosts...)
	ids := c.verifyUUIDs(t)

	t.Run("clean", func(t *testing.T) { c.verifyCheckClean(t) })
	cases := slices.Concat(verifyKeyCases(c, ids), verifySSHDCases(c),
		verifyCertCases(c, ids), verifyFileCases(c), verifyDaemonCases(c),
		verifyHostCases(c))
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { c.runVerifyCase(t, tc) })
	}
	t.Run("clean again", func(t *testing.T) { c.waitVerifyClean(t) })
	t.Run("refused on a normal node", func(t *testing.T) {
		_, stderr, err := c.Run(c.Hosts[3], "cluster", "verify")
		if err == nil || !strings.Contains(stderr, "not a master candidate") {
			t.Fatalf("verify on node4: got err %v, stderr %q; want a "+
				"refusal", err, stderr)
		}
	})
}

// verifyCheckClean checks that a clean cluster verifies without
// findings, in JSON and in text, and exits 0.
func (c *Cluster) verifyCheckClean(t *testing.T) {
	run := c.runVerify(t, c.Leader())
	if got := run.res.codes(); len(got) != 0 || run.err != nil {
		t.Fatalf("clean cluster: got %q, err %v, want nothing", got, run.err)
	}
	out := c.MustRun(c.Leader(), "cluster", "verify")
	if want := "cluster verify: no errors, no warnings\n"; out != want {
		t.Fatalf("text output: got %q, want %q", out, want)
	}
}

// verifyKeyCases break authorized_keys and ganeti_pub_keys.
func verifyKeyCases(c *Cluster, ids map[string]string) []verifyCase {
	n1, n2, n3, n4, n5 := c.Hosts[0], c.Hosts[1], c.Hosts[2], c.Hosts[3],
		c.Hosts[4]
	return []verifyCase{
		{name: "normal node key in authorized_keys",
			break_: func(t *testing.T) func() {
				p := n2.path("root/.ssh/authorized_keys")
				restore := verifyKeep(t, p)
				pub, err := os.ReadFile(n4.path("root/.ssh/id_ed25519.pub"))
				if err != nil {
					t.Fatal(err)
				}
				verifyAppend(t, p, string(pub))
				return restore
			}, want: []string{"AUTHKEYS_NORMAL_NODE_KEY node2"}},
		{name: "stale line in ganeti_pub_keys",
			break_: func(t *testing.T) func() {
				p := n3.LibPath("ganeti_pub_keys")
				restore := verifyKeep(t, p)
				first, _, _ := strings.Cut(readLib(t, n1, "ganeti_pub_keys"),
					"\n")
				_, key, _ := strings.Cut(first, " ")
				verifyAppend(t, p, "0badc0de-0000-4000-8000-000000000001 "+
					key+"\n")
				return restore
			}, want: []string{"PUBKEYS_STALE_ENTRY node3"}},
		{name: "candidate key missing from authorized_keys",
			break_: func(t *testing.T) func() {
				p := n5.path("root/.ssh/authorized_keys")
				restore := verifyKeep(t, p)
				verifyDropLines(t, p, "ganeti-node:"+ids["node2"])
				return restore
			}, want: []string{"SSH_LOGIN_FAILED node5"}},
	}
}

// verifySSHDCases break a host's sshd: its host key and its
// configuration.
func verifySSHDCases(c *Cluster) []verifyCase {
	n4, n5 := c.Hosts[3], c.Hosts[4]
	return []verifyCase{
		{name: "host key changed",
			break_: func(t *testing.T) func() {
				p := n5.path("etc/ssh/ssh_host_ed25519_key")
				rk, rp := verifyKeep(t, p), verifyKeep(t, p+".pub")
				c.RegenerateHostKey(n5)
				c.RestartSSHD(n5)
				return func() { rk(); rp(); c.RestartSSHD(n5) }
			}, want: []string{"SSH_HOST_KEY_MISMATCH node5"}, settle: true},
		{name: "sshd reads another authorized_keys",
			break_: func(t *testing.T) func() {
				p := n4.path("etc/ssh/sshd_config")
				restore := verifyKeep(t, p)
				verifyDropLines(t, p, "AuthorizedKeysFile ")
				verifyAppend(t, p, "AuthorizedKeysFile .ssh/authorized_keys\n")
				return restore
			}, want: []string{"SSHD_AUTHKEYS_FILE node4"}},
	}
}

// verifyCertCases break client certificates.
func verifyCertCases(c *Cluster, ids map[string]string) []verifyCase {
	n3, n4 := c.Hosts[2], c.Hosts[3]
	return []verifyCase{
		{name: "client certificates swapped",
			break_: func(t *testing.T) func() {
				a, b := n3.LibPath("client.pem"), n4.LibPath("client.pem")
				ra, rb := verifyKeep(t, a), verifyKeep(t, b)
				da, db := readLib(t, n3, "client.pem"),
					readLib(t, n4, "client.pem")
				verifyWrite(t, a, []byte(db))
				verifyWrite(t, b, []byte(da))
				return func() { ra(); rb() }
			}, want: []string{"CERT_DIGEST_MISMATCH node3",
				"CERT_NOT_LOADED node3", "CERT_NOT_LOADED node4",
				"CERT_WRONG_NODE node3", "CERT_WRONG_NODE node4"}},
		{name: "self-signed client certificate",
			break_: func(t *testing.T) func() {
				p := n4.LibPath("client.pem")
				restore := verifyKeep(t, p)
				verifyWrite(t, p, verifySelfSignedPEM(t, "node4", ids["node4"]))
				return restore
			}, want: []string{"CERT_NOT_LOADED node4",
				"CERT_SELF_SIGNED node4"}},
	}
}

// verifyFileCases leak and expose secret files.
func verifyFileCases(c *Cluster) []verifyCase {
	n1, n5 := c.Hosts[0], c.Hosts[4]
	return []verifyCase{
		{name: "private key readable by all",
			break_: func(t *testing.T) func() {
				p := n5.path("root/.ssh/id_ed25519")
				os.Chmod(p, 0o644)
				return func() { os.Chmod(p, 0o600) }
			}, want: []string{"FILE_MODE node5",
				"SSH_OWN_KEY_MISSING node5"}},
		{name: "CA key on a normal node",
			break_: func(t *testing.T) func() {
				p := n5.LibPath("ca-key.pem")
				verifyWrite(t, p, []byte(readLib(t, n1, "ca-key.pem")))
				return func() { os.Remove(p) }
			}, want: []string{"FILE_CA_KEY_LEAK node5"}},
	}
}

// verifyDaemonCases stop daemons, and run verify on a candidate that
// is not the master, which forwards it.
func verifyDaemonCases(c *Cluster) []verifyCase {
	n4, n5 := c.Hosts[3], c.Hosts[4]
	return []verifyCase{
		{name: "daemon stopped",
			break_: func(t *testing.T) func() {
				c.Stop(n4)
				return func() { c.Start(n4) }
			}, want: []string{"NODE_RPC_UNREACHABLE node4"}, settle: true},
		{name: "verify forwarded by a candidate",
			on: func() *Host { return c.verifyOtherCandidate(c.Hosts[:3]...) },
			break_: func(t *testing.T) func() {
				c.Stop(n5)
				return func() { c.Start(n5) }
			}, want: []string{"NODE_RPC_UNREACHABLE node5"}, settle: true},
	}
}

// verifyHostCases take whole hosts away: killed (connections are
// refused) and frozen with SIGSTOP (connections are accepted and never
// answered). Either is one NODE_UNREACHABLE line, and the frozen one
// costs the longest per-node time-out (15 s), not a hang.
func verifyHostCases(c *Cluster) []verifyCase {
	n4, n5 := c.Hosts[3], c.Hosts[4]
	return []verifyCase{
		{name: "host down",
			break_: func(t *testing.T) func() {
				c.Kill(n5)
				n5.sshd.cmd.Process.Kill()
				n5.sshd.wait(stopTimeout)
				return func() { c.startSSHD(n5); c.Start(n5) }
			}, want: []string{"NODE_UNREACHABLE node5"}, settle: true},
		{name: "host frozen",
			break_: func(t *testing.T) func() {
				verifySignalHost(n4, syscall.SIGSTOP)
				return func() { verifySignalHost(n4, syscall.SIGCONT) }
			}, want: []string{"NODE_UNREACHABLE node4"}, settle: true,
			maxTook: 45 * time.Second},
	}
}

// verifyWrite replaces the content of the file at p, which keeps its
// mode (0600 when it is new).
func verifyWrite(t testing.TB, p string, data []byte) {
	t.Helper()
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatalf("writing %s: %v", p, err)
	}
}

// verifyOtherCandidate returns a candidate of mcs that is not the
// master.
func (c *Cluster) verifyOtherCandidate(mcs ...*Host) *Host {
	leader := c.Leader()
	for _, h := range mcs {
		if h != leader {
			return h
		}
	}
	c.t.Fatalf("no candidate other than the master %s", leader.Name)
	return nil
}

// verifyDropLines removes every line of the file at p that contains sub.
func verifyDropLines(t testing.TB, p, sub string) {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	for _, line := range strings.SplitAfter(string(data), "\n") {
		if !strings.Contains(line, sub) {
			out.WriteString(line)
		}
	}
	if out.Len() == len(data) {
		t.Fatalf("no line of %s contains %q", p, sub)
	}
	if err := os.WriteFile(p, out.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
}
