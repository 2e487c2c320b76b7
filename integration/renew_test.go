package integration

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// renewSnapshot is what a renewal must replace on one host: its own
// key pair, its client certificate and its CA file, as they were.
type renewSnapshot struct {
	keyFile    string // copy of the private key, for old-key logins
	pub        string
	clientPEM  []byte
	caPEM      []byte
	authorized string
}

// snapshot copies h's key and certificates aside for later checks.
func renewSnap(t testing.TB, h *Host) renewSnapshot {
	t.Helper()
	priv, err := os.ReadFile(h.path("root/.ssh/id_ed25519"))
	if err != nil {
		t.Fatalf("reading key of %s: %v", h.Name, err)
	}
	keyFile := filepath.Join(t.TempDir(), h.Name+"-old-key")
	if err := os.WriteFile(keyFile, priv, 0o600); err != nil {
		t.Fatalf("saving key of %s: %v", h.Name, err)
	}
	auth, _ := os.ReadFile(h.path("root/.ssh/authorized_keys"))
	pub, _ := os.ReadFile(h.path("root/.ssh/id_ed25519.pub"))
	return renewSnapshot{keyFile: keyFile, pub: string(pub),
		clientPEM:  []byte(readLib(t, h, "client.pem")),
		caPEM:      []byte(readLib(t, h, "ca.pem")),
		authorized: string(auth)}
}

// renewSnaps snapshots every host of c.
func renewSnaps(t testing.TB, c *Cluster) map[*Host]renewSnapshot {
	t.Helper()
	m := map[*Host]renewSnapshot{}
	for _, h := range c.Hosts {
		m[h] = renewSnap(t, h)
	}
	return m
}

// renew runs `cluster renew-crypto args...` on h and returns stdout.
func (c *Cluster) renew(h *Host, args ...string) string {
	c.t.Helper()
	return c.MustRun(h, append([]string{"cluster", "renew-crypto"}, args...)...)
}

// byRole splits c's hosts into master candidates (the master
// included) and the others, as h lists them.
func (c *Cluster) byRole(h *Host) (mcs, normals []*Host) {
	c.t.Helper()
	for _, n := range c.List(h) {
		switch n.Role {
		case "master", "candidate":
			mcs = append(mcs, c.Host(n.Name))
		default:
			normals = append(normals, c.Host(n.Name))
		}
	}
	return mcs, normals
}

// checkBoundary checks the security rule after a renewal, with real
// ssh and real TLS from every host to every other: master candidates
// reach every node, normal nodes reach none.
func (c *Cluster) checkBoundary(t testing.TB, what string) {
	t.Helper()
	mcs, normals := c.byRole(c.Hosts[0])
	want := map[[2]*Host]bool{}
	for _, to := range c.Hosts {
		for _, from := range mcs {
			want[[2]*Host{from, to}] = true
		}
		for _, from := range normals {
			if from != to {
				want[[2]*Host{from, to}] = false
			}
		}
	}
	c.checkPowers(t, what, want)
}

// checkOldRefused checks that the keys and certificates in old no
// longer open any host: old SSH keys are refused by every sshd and
// old client certificates by every daemon.
func (c *Cluster) checkOldRefused(t testing.TB, what string,
	old map[*Host]renewSnapshot, ssh, tls bool) {
	t.Helper()
	for from, snap := range old {
		for _, to := range c.Hosts {
			if ssh && sshWithKey(from, to, snap.keyFile) == nil {
				t.Errorf("%s: old key of %s still logs in to %s",
					what, from.Name, to.Name)
			}
			if tls {
				err := rpcWithCert(snap.clientPEM, readLibBytes(t, from, "ca.pem"),
					to, from.Name)
				if err == nil {
					t.Errorf("%s: old certificate of %s still accepted by %s",
						what, from.Name, to.Name)
				}
			}
		}
	}
}

// checkRenewed checks that every host's key pair, client certificate
// (and, with ca, CA file) differ from old, and that the admin's own
// authorized_keys lines are still there.
func (c *Cluster) checkRenewed(t testing.TB, old map[*Host]renewSnapshot,
	ssh, certs, ca bool) {
	t.Helper()
	for h, snap := range old {
		now := renewSnap(t, h)
		if ssh == (now.pub == snap.pub) {
			t.Errorf("%s: public key changed %v, want %v", h.Name,
				now.pub != snap.pub, ssh)
		}
		if certs == (string(now.clientPEM) == string(snap.clientPEM)) {
			t.Errorf("%s: client certificate changed %v, want %v", h.Name,
				!certs, certs)
		}
		if ca == (string(now.caPEM) == string(snap.caPEM)) {
			t.Errorf("%s: ca.pem changed %v, want %v", h.Name, !ca, ca)
		}
		if !strings.Contains(now.authorized, adminLine) {
			t.Errorf("%s: admin line lost from authorized_keys:\n%s",
				h.Name, now.authorized)
		}
	}
}

// adminLine is an authorized_keys line of the admin's own, which no
// renewal may touch.
const adminLine = "# admin: keep this line and the key below\n" +
	"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHhyEyKeUdKW3jFvNsvdEefSZW" +
	"5iVAPwrKQZTxCnh4oK admin@example\n"

// addAdminLines appends adminLine to every host's authorized_keys.
func addAdminLines(t testing.TB, c *Cluster) {
	t.Helper()
	for _, h := range c.Hosts {
		appendAuthorized(t, h, adminLine)
	}
}

// onAdminLine reports whether to's authorized_keys holds the key of
// pubLine on a line the tool does not manage.
func onAdminLine(t testing.TB, to *Host, pubLine string) bool {
	t.Helper()
	f := strings.Fields(pubLine)
	data, _ := os.ReadFile(to.path("root/.ssh/authorized_keys"))
	for _, l := range strings.Split(string(data), "\n") {
		if len(f) > 1 && strings.Contains(l, f[1]) &&
			!strings.Contains(l, "ganeti-node:") {
			return true
		}
	}
	return false
}

func readLibBytes(t testing.TB, h *Host, rel string) []byte {
	t.Helper()
	return []byte(readLib(t, h, rel))
}

// sshWithKey runs `true` on to with real ssh and the private key file
// key, verifying to's host key against from's known_hosts.
func sshWithKey(from, to *Host, key string) error {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, sshPath, "-i", key,
		"-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
		"-o", "StrictHostKeyChecking=yes",
		"-o", "UserKnownHostsFile="+from.LibPath("known_hosts"),
		"-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "ConnectTimeout=5", "-F", "/dev/null",
		"-p", strconv.Itoa(to.SSHPort), "root@"+to.IP, "true")
	cmd.Env = cleanEnv()
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// rpcWithCert pings to's daemon with a real TLS 1.3 client holding
// certPEM (certificate and key) and trusting caPEM.
func rpcWithCert(certPEM, caPEM []byte, to *Host, who string) error {
	cert, err := tls.X509KeyPair(certPEM, certPEM)
	if err != nil {
		return fmt.Errorf("client.pem of %s: %w", who, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return errors.New("no CA certificate")
	}
	conf := &tls.Config{Certificates: []tls.Certificate{cert},
		RootCAs: pool, ServerName: to.IP, MinVersion: tls.VersionTLS13,
		NextProtos: []string{"ganeti-rpc/1"}}
	addr := net.JoinHostPort(to.IP, strconv.Itoa(rpcPort))
	d := &net.Dialer{Timeout: 10 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", addr, conf)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	req, _ := http.NewRequest("GET", "https://"+addr+"/v1/ping", nil)
	if err := req.Write(conn); err != nil {
		return err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %s", resp.Status)
	}
	return nil
}

// certDigest is the candidate-map digest of the first certificate in
// pemData.
func certDigest(t testing.TB, pemData []byte) string {
	t.Helper()
	block, _ := pem.Decode(pemData)
	if block == nil {
		t.Fatalf("no certificate in %q", pemData)
	}
	sum := sha256.Sum256(block.Bytes)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// checkCandidateMap checks that ssconf_master_candidates_certs on
// every host names exactly the candidates' current client
// certificates.
func (c *Cluster) checkCandidateMap(t testing.TB) {
	t.Helper()
	mcs, _ := c.byRole(c.Hosts[0])
	var want []string
	for _, h := range mcs {
		want = append(want, certDigest(t, readLibBytes(t, h, "client.pem")))
	}
	WaitFor(t, "every host to hold the candidates' new digests",
		convergeWithin, func() (bool, string) {
			for _, h := range c.Hosts {
				got := readLib(t, h, "ssconf_master_candidates_certs")
				for _, d := range want {
					if !strings.Contains(got, d) {
						return false, fmt.Sprintf("%s lacks %s: %q", h.Name, d, got)
					}
				}
				if n := strings.Count(got, "sha256:"); n != len(want) {
					return false, fmt.Sprintf("%s has %d digests, want %d",
						h.Name, n, len(want))
				}
			}
			return true, ""
		})
}

// checkVerify runs `cluster verify` when it exists and wants it clean.
func (c *Cluster) checkVerify(t testing.TB, what string) {
	t.Helper()
	stdout, stderr, err := c.Run(c.Leader(), "cluster", "verify", "--output", "json")
	if strings.Contains(stderr, "not implemented") {
		return
	}
	var res struct {
		Errors []json.RawMessage `json:"errors"`
	}
	if jerr := json.Unmarshal([]byte(stdout), &res); err != nil || jerr != nil ||
		len(res.Errors) > 0 {
		t.Errorf("%s: cluster verify: %v %s %s", what, err, stdout, stderr)
	}
}

// renewOutputNames checks that the renewal output has a line for
// every host.
func checkPerNode(t testing.TB, c *Cluster, out string) {
	t.Helper()
	for _, h := range c.Hosts {
		if !strings.Contains(out, "  "+h.Name+": ") {
			t.Errorf("renew-crypto output lacks a line for %s:\n%s", h.Name, out)
		}
	}
}

// TestRenewCrypto_EachOptionThenAll renews node certificates, then SSH
// keys, then everything at once on one 4-host cluster (3 candidates,
// 1 regular node) and checks the boundary after each.
func TestRenewCrypto_EachOptionThenAll(t *testing.T) {
	c := newCluster(t, 4, 4, Options{})
	addAdminLines(t, c)
	master := c.Leader()

	old := renewSnaps(t, c)
	out := c.renew(master, "--new-node-certificates")
	checkPerNode(t, c, out)
	c.waitConverged(c.Hosts...)
	c.checkRenewed(t, old, false, true, false)
	c.checkCandidateMap(t)
	c.checkBoundary(t, "after --new-node-certificates")
	c.checkOldRefused(t, "after --new-node-certificates", old, false, true)
	c.checkVerify(t, "after --new-node-certificates")

	old = renewSnaps(t, c)
	out = c.renew(master, "--new-ssh-keys")
	checkPerNode(t, c, out)
	c.waitConverged(c.Hosts...)
	c.checkRenewed(t, old, true, false, false)
	c.checkBoundary(t, "after --new-ssh-keys")
	c.checkOldRefused(t, "after --new-ssh-keys", old, true, false)
	checkBackups(t, c)
	c.checkVerify(t, "after --new-ssh-keys")

	old = renewSnaps(t, c)
	master = c.Leader()
	c.renew(master, "--new-node-certificates", "--new-cluster-certificate",
		"--new-ssh-keys")
	c.waitConverged(c.Hosts...)
	c.checkRenewed(t, old, true, true, true)
	c.checkCandidateMap(t)
	c.checkBoundary(t, "after renewing everything")
	c.checkOldRefused(t, "after renewing everything", old, true, true)
	checkSingleCA(t, c)
	c.checkVerify(t, "after renewing everything")
}

// checkBackups checks that every host kept its old key pairs.
func checkBackups(t testing.TB, c *Cluster) {
	t.Helper()
	for _, h := range c.Hosts {
		baks, _ := filepath.Glob(h.path("root/.ssh/id_ed25519.bak-*"))
		if len(baks) == 0 {
			t.Errorf("%s: no backup of the old private key", h.Name)
		}
	}
}

// checkSingleCA checks that every host trusts exactly one CA, the
// same on all, after a rotation ended.
func checkSingleCA(t testing.TB, c *Cluster) {
	t.Helper()
	first := readLib(t, c.Hosts[0], "ca.pem")
	for _, h := range c.Hosts {
		ca := readLib(t, h, "ca.pem")
		if n := strings.Count(ca, "BEGIN CERTIFICATE"); n != 1 || ca != first {
			t.Errorf("%s: ca.pem has %d certificates (same as node1: %v), "+
				"want the one new CA", h.Name, n, ca == first)
		}
	}
}

// TestRenewCrypto_CARotationUnderLoad rotates the cluster CA while a
// candidate keeps committing changes through the master over RPC, and
// checks that every change that was acknowledged is in the end state
// and that the cluster kept or quickly re-found a leader.
func TestRenewCrypto_CARotationUnderLoad(t *testing.T) {
	c := newCluster(t, 4, 4, Options{})
	addAdminLines(t, c)
	master := c.Leader()
	mcs, normals := c.byRole(master)
	var client *Host
	for _, h := range mcs {
		if h != master {
			client = h
		}
	}
	old := renewSnaps(t, c)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var acked []bool
	var refusals []string
	wg.Go(func() {
		v := false
		for {
			select {
			case <-stop:
				return
			default:
			}
			_, stderr, err := c.Run(client, "modify",
				"--master-capable="+strconv.FormatBool(v), normals[0].Name)
			mu.Lock()
			if err == nil {
				acked = append(acked, v)
				v = !v
			} else {
				refusals = append(refusals, strings.TrimSpace(stderr))
			}
			mu.Unlock()
		}
	})
	start := time.Now()
	out := c.renew(master, "--new-cluster-certificate")
	took := time.Since(start)
	// Let the loop run on the new CA for a few more commits.
	mu.Lock()
	before := len(acked)
	mu.Unlock()
	WaitFor(t, "two commits after the rotation", convergeWithin,
		func() (bool, string) {
			mu.Lock()
			defer mu.Unlock()
			return len(acked) >= before+2, fmt.Sprintf("%d acked, "+
				"refusals %q", len(acked), refusals)
		})
	close(stop)
	wg.Wait()
	t.Logf("rotation took %v; %d changes acked, %d refused (%q); %s",
		took, len(acked), len(refusals), refusals, out)

	nodes := c.waitConverged(c.Hosts...)
	last := acked[len(acked)-1]
	for _, n := range nodes {
		if n.Name == normals[0].Name && n.MasterCapable != last {
			t.Errorf("%s master_capable %v, want the last acked %v",
				n.Name, n.MasterCapable, last)
		}
	}
	c.checkRenewed(t, old, false, true, true)
	checkSingleCA(t, c)
	c.checkCandidateMap(t)
	c.checkBoundary(t, "after the CA rotation")
	c.checkOldRefused(t, "after the CA rotation", old, false, true)
	c.checkVerify(t, "after the CA rotation")
}

// TestRenewCrypto_NodeDownRefused stops a regular node's sshd (which
// matters for SSH keys) and then its daemon (which matters for
// certificates: a daemon that misses the new map would refuse the
// master's new certificate for good) and checks that each renewal is
// refused, changing nothing, unless --force.
func TestRenewCrypto_NodeDownRefused(t *testing.T) {
	c := newCluster(t, 4, 4, Options{})
	master := c.Leader()
	_, normals := c.byRole(master)
	down := normals[0]
	addAdminLines(t, c)

	// The daemon, not sshd, is what certificates need.
	old := renewSnaps(t, c)
	c.Stop(down)
	c.refusedRenew(master, "daemon does not answer", "--new-node-certificates")
	c.checkRenewed(t, old, false, false, false)
	c.Start(down)
	c.waitConverged(c.Hosts...)

	// sshd is what SSH keys need (and certificates too, to install).
	down.stopSSHD()
	c.refusedRenew(master, down.Name+" (", "--new-ssh-keys")
	c.refusedRenew(master, down.Name+" (", "--new-node-certificates")
	c.checkRenewed(t, old, false, false, false)

	// With --force the others are renewed and the node is listed.
	out := c.renew(master, "--new-ssh-keys", "--force")
	if !strings.Contains(out, "unreachable: "+down.Name) {
		t.Errorf("forced renewal output lacks %s as unreachable:\n%s",
			down.Name, out)
	}
	delete(old, down)
	c.checkRenewed(t, old, true, false, false)
}

// refusedRenew runs renew-crypto args on h, wanting a one-line refusal
// that contains want.
func (c *Cluster) refusedRenew(h *Host, want string, args ...string) {
	c.t.Helper()
	args = append([]string{"cluster", "renew-crypto"}, args...)
	_, stderr, err := c.Run(h, args...)
	line := strings.TrimSuffix(stderr, "\n")
	if err == nil || strings.Contains(line, "\n") || !strings.Contains(line, want) ||
		!strings.Contains(line, "nothing was changed") {
		c.t.Errorf("%s: err %v, stderr %q; want one line refusing with %q",
			strings.Join(args, " "), err, stderr, want)
	}
}

// BenchmarkRenewCrypto times `renew-crypto --new-ssh-keys` and
// `--new-node-certificates` on RENEW_HOSTS hosts (default 20) with
// real sshd, once with root's login shell skipping ~/.bashrc (HOME
// pointed into the host's root, so the figure is the product's own
// cost) and once as the machine is set up. Run it with -benchtime 1x;
// scripts/bench-renew.sh does.
func BenchmarkRenewCrypto(b *testing.B) {
	n := 20
	if v, err := strconv.Atoi(os.Getenv("RENEW_HOSTS")); err == nil {
		n = v
	}
	c := NewClusterWith(b, n, Options{})
	setBashrc(b, c, false)
	start := time.Now()
	c.Init(c.Hosts[0])
	for _, h := range c.Hosts[1:] {
		c.joinRetrying(h)
	}
	c.waitConverged(c.Hosts...)
	b.Logf("%d hosts joined in %v", n, time.Since(start))
	master := c.Leader()
	b.ResetTimer()
	for _, bashrc := range []bool{false, true} {
		setBashrc(b, c, bashrc)
		for _, opt := range []string{"--new-ssh-keys", "--new-node-certificates"} {
			start := time.Now()
			c.renew(master, opt)
			took := time.Since(start)
			b.ReportMetric(took.Seconds(), fmt.Sprintf("s%s/bashrc=%v", opt, bashrc))
		}
	}
	b.StopTimer()
	for _, l := range strings.Split(master.LogTail(400), "\n") {
		if strings.Contains(l, `msg="renew`) {
			b.Log(l)
		}
	}
	c.checkPowers(b, "after the benchmark", map[[2]*Host]bool{
		{master, c.Hosts[n-1]}: true, {c.Hosts[n-1], master}: false})
}

// joinRetrying joins h from whichever host is master, retrying while
// a loaded machine makes Raft re-elect (the tight test timeouts).
func (c *Cluster) joinRetrying(h *Host) {
	c.t.Helper()
	var last string
	for range 10 {
		m := c.Leader()
		c.TrustMaster(m, h)
		_, stderr, err := c.Run(m, "join", "--primary-ip", h.IP,
			"--ssh-port", strconv.Itoa(h.SSHPort), h.Name)
		if err == nil || strings.Contains(stderr, "already in the cluster") {
			return
		}
		last = stderr
	}
	c.t.Fatalf("joining %s: %s", h.Name, last)
}

// setBashrc restarts every host's sshd so that remote commands read
// root's real ~/.bashrc (on) or none (off: HOME inside the host root).
func setBashrc(t testing.TB, c *Cluster, on bool) {
	t.Helper()
	for _, h := range c.Hosts {
		conf := h.sshdConfig()
		if !on {
			conf = strings.Replace(conf, "SetEnv GANETI_ROOT="+h.Root,
				"SetEnv GANETI_ROOT="+h.Root+" HOME="+h.path("root"), 1)
		}
		if err := os.WriteFile(h.path("etc/ssh/sshd_config"), []byte(conf),
			0o600); err != nil {
			t.Fatalf("writing sshd config of %s: %v", h.Name, err)
		}
		c.RestartSSHD(h)
	}
}

// TestRenewCrypto_SharedKeyMigration builds a cluster the old way by
// hand, one root key pair on every host and authorised everywhere,
// initialised with --no-ssh-init, and converts it to per-node keys.
func TestRenewCrypto_SharedKeyMigration(t *testing.T) {
	c := NewClusterWith(t, 4, Options{})
	shared := newUserKey(t, c.Hosts[0])
	priv := readFileBytes(t, c.Hosts[0].path("root/.ssh/id_ed25519"))
	for _, h := range c.Hosts {
		if h != c.Hosts[0] {
			writeKeyPair(t, h, priv, shared)
		}
		appendAuthorized(t, h, shared)
	}
	n1 := c.Hosts[0]
	c.MustRun(n1, "init", "--no-ssh-init", "--node-name", n1.Name,
		"--primary-ip", n1.IP, "--ssh-port", strconv.Itoa(n1.SSHPort),
		clusterName)
	c.waitMaster(n1)
	for _, h := range c.Hosts[1:] {
		c.Join(n1, h)
	}
	c.waitConverged(c.Hosts...)

	// SSH management is off: the flag that switches it on is needed.
	_, stderr, err := c.Run(n1, "cluster", "renew-crypto", "--new-ssh-keys")
	if err == nil || !strings.Contains(stderr, "--enable-ssh-management") {
		t.Errorf("renew-crypto --new-ssh-keys with SSH management off: "+
			"err %v, stderr %q; want a refusal naming the flag", err, stderr)
	}
	out := c.renew(n1, "--new-ssh-keys", "--enable-ssh-management")
	if !strings.Contains(out, "4 nodes shared the key pair") {
		t.Errorf("migration output lacks the shared-key warning:\n%s", out)
	}
	c.waitConverged(c.Hosts...)

	// Every node has its own key now and backed the shared one up.
	seen := map[string]string{}
	for _, h := range c.Hosts {
		pubFile := readFileBytes(t, h.path("root/.ssh/id_ed25519.pub"))
		pub := strings.Fields(string(pubFile))[1]
		if pub == strings.Fields(shared)[1] || seen[pub] != "" {
			t.Errorf("%s: key not its own (shared %v, same as %s)", h.Name,
				pub == strings.Fields(shared)[1], seen[pub])
		}
		seen[pub] = h.Name
	}
	checkBackups(t, c)
	c.checkBoundary(t, "after the migration")
	// The shared key was revoked from every line, the admin's included.
	for _, h := range c.Hosts {
		if onAdminLine(t, h, shared) {
			t.Errorf("%s: the shared key is still authorised", h.Name)
		}
	}
}

func readFileBytes(t testing.TB, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading %s: %v", path, err)
	}
	return data
}

// writeKeyPair installs priv and pub as h's own key pair.
func writeKeyPair(t testing.TB, h *Host, priv []byte, pub string) {
	t.Helper()
	if err := os.WriteFile(h.path("root/.ssh/id_ed25519"), priv, 0o600); err != nil {
		t.Fatalf("writing key of %s: %v", h.Name, err)
	}
	if err := os.WriteFile(h.path("root/.ssh/id_ed25519.pub"), []byte(pub), 0o644); err != nil {
		t.Fatalf("writing key of %s: %v", h.Name, err)
	}
}
