package sshdist

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// helperEnv switches the test binary into the ssh-update helper, so
// that the real sshd hosts of the tests can run it as their remote
// command.
const helperEnv = "GN_TEST_SSH_UPDATE"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		env := Env{Root: os.Getenv("GANETI_ROOT"), NewCSR: testNewCSR}
		serve := ServeUpdate
		if slices.Contains(os.Args[1:], "--serve") {
			serve = func(env Env, in io.Reader, out io.Writer) error {
				return ServeUpdates(env, in, out, 0)
			}
		}
		if err := serve(env, os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// helperCommand is the RemoteCommand that runs this test binary as
// the ssh-update helper.
func helperCommand(t testing.TB) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// A race-enabled binary otherwise sleeps a second at exit.
	return "GORACE=atexit_sleep_ms=0 " + helperEnv + "=1 " + exe
}

const (
	sshdPath      = "/usr/sbin/sshd"
	sshKeygenPath = "/usr/bin/ssh-keygen"
	sshdWait      = 10 * time.Second
)

// nextHostIP numbers the hosts' loopback addresses 127.0.0.10 and up.
var nextHostIP atomic.Uint32

// sshdHost is a simulated host: a root directory and a real OpenSSH
// sshd on its own loopback address that logs root in with the keys of
// <root>/root/.ssh/authorized_keys and runs commands with GANETI_ROOT
// set to the root.
type sshdHost struct {
	t    testing.TB
	Name string
	Root string // the host's root prefix
	Addr string // "ip:port" of its sshd
	dir  string // sshd's own files: config, host key, pid file

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
	log  *lockedBuffer
}

// newSSHDHost starts a host with a fresh host key; it is stopped when
// the test ends. Tests skip when not run as root or without sshd.
func newSSHDHost(t testing.TB, name string) *sshdHost {
	t.Helper()
	requireSSHD(t)
	n := nextHostIP.Add(1)
	ip := fmt.Sprintf("127.0.0.%d", 10+n%240)
	h := &sshdHost{t: t, Name: name, Root: t.TempDir(), dir: t.TempDir()}
	h.generateHostKey()
	h.Addr = net.JoinHostPort(ip, freePort(t, ip))
	h.Start()
	t.Cleanup(h.Stop)
	return h
}

func requireSSHD(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("sshd tests need root: sshd logs in as root")
	}
	if _, err := os.Stat(sshdPath); err != nil {
		t.Skipf("sshd tests need %s: %v", sshdPath, err)
	}
	// Privilege separation needs this directory to exist.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatal(err)
	}
}

// freePort asks the kernel for a port on ip that is free right now.
func freePort(t testing.TB, ip string) string {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatalf("finding a free port on %s: %v", ip, err)
	}
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port
}

func (h *sshdHost) path(rel string) string { return filepath.Join(h.Root, rel) }

func (h *sshdHost) hostKeyPath() string {
	return filepath.Join(h.dir, "ssh_host_ed25519_key")
}

func (h *sshdHost) generateHostKey() {
	h.t.Helper()
	os.Remove(h.hostKeyPath())
	os.Remove(h.hostKeyPath() + ".pub")
	out, err := exec.Command(sshKeygenPath, "-q", "-t", "ed25519", "-N", "",
		"-C", h.Name, "-f", h.hostKeyPath()).CombinedOutput()
	if err != nil {
		h.t.Fatalf("ssh-keygen for %s: %v: %s", h.Name, err, out)
	}
}

// HostKey returns the public host key sshd presents.
func (h *sshdHost) HostKey() ssh.PublicKey {
	h.t.Helper()
	data, err := os.ReadFile(h.hostKeyPath() + ".pub")
	if err != nil {
		h.t.Fatal(err)
	}
	key, _, _, _, err := ssh.ParseAuthorizedKey(data)
	if err != nil {
		h.t.Fatal(err)
	}
	return key
}

func (h *sshdHost) config() string {
	lines := []string{
		"ListenAddress " + h.Addr,
		"HostKey " + h.hostKeyPath(),
		"PidFile " + filepath.Join(h.dir, "sshd.pid"),
		"AuthorizedKeysFile " + h.path(DefaultAuthorizedKeysFile),
		"SetEnv GANETI_ROOT=" + h.Root,
		"StrictModes no",
		"PermitRootLogin prohibit-password",
		"PubkeyAuthentication yes",
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"UsePAM no",
		"AllowTcpForwarding no",
		"X11Forwarding no",
		"PrintMotd no",
		"PrintLastLog no",
		"UseDNS no",
	}
	return strings.Join(lines, "\n") + "\n"
}

// Start runs sshd in the foreground and waits until it greets on Addr.
func (h *sshdHost) Start() {
	h.t.Helper()
	cfg := filepath.Join(h.dir, "sshd_config")
	if err := os.WriteFile(cfg, []byte(h.config()), 0o600); err != nil {
		h.t.Fatal(err)
	}
	h.mu.Lock()
	h.log = &lockedBuffer{}
	h.cmd = exec.Command(sshdPath, "-D", "-e", "-f", cfg)
	h.cmd.Stdout, h.cmd.Stderr = h.log, h.log
	if err := h.cmd.Start(); err != nil {
		h.mu.Unlock()
		h.t.Fatalf("starting sshd of %s: %v", h.Name, err)
	}
	h.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) {
		cmd.Wait()
		close(done)
	}(h.cmd, h.done)
	h.mu.Unlock()
	h.waitReady()
}

// waitReady polls until sshd sends its SSH banner, failing with its
// log when it exits or the deadline passes.
func (h *sshdHost) waitReady() {
	h.t.Helper()
	deadline := time.Now().Add(sshdWait)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-h.done:
			h.t.Fatalf("sshd of %s exited: %s", h.Name, h.LogTail(10))
		default:
		}
		if last = probeBanner(h.Addr); last == nil {
			return
		}
		time.Sleep(10 * time.Millisecond) // poll interval
	}
	h.t.Fatalf("sshd of %s not greeting on %s after %v: %v; log: %s",
		h.Name, h.Addr, sshdWait, last, h.LogTail(10))
}

func probeBanner(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(time.Second))
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "SSH-2.0-") {
		return fmt.Errorf("got banner %q, want SSH-2.0-", line)
	}
	return nil
}

// Stop ends sshd: SIGTERM, then SIGKILL if it lingers.
func (h *sshdHost) Stop() {
	h.mu.Lock()
	cmd, done := h.cmd, h.done
	h.cmd = nil
	h.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(sshdWait):
		cmd.Process.Kill()
		<-done
	}
}

// RegenerateHostKey gives the host a new host key and restarts sshd,
// as a reinstall (or an impostor) would.
func (h *sshdHost) RegenerateHostKey() {
	h.t.Helper()
	h.Stop()
	h.generateHostKey()
	h.Start()
}

// Authorize writes lines as the host's authorized_keys, as an admin
// would before a join.
func (h *sshdHost) Authorize(lines ...string) {
	h.t.Helper()
	p := h.path(DefaultAuthorizedKeysFile)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		h.t.Fatal(err)
	}
	data := strings.Join(lines, "\n") + "\n"
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		h.t.Fatal(err)
	}
}

// LogTail returns the last n lines of sshd's output.
func (h *sshdHost) LogTail(n int) string {
	h.mu.Lock()
	log := h.log
	h.mu.Unlock()
	lines := strings.Split(strings.TrimSpace(log.String()), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// lockedBuffer is a bytes.Buffer safe for a process's output and the
// test reading it at once.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// testMaster is the master's side: its own key pair and the cluster's
// known_hosts.
type testMaster struct {
	keyDir     string
	knownHosts string
	pubLine    string // the key as an authorized_keys line
}

func newTestMaster(t testing.TB) *testMaster {
	t.Helper()
	dir := t.TempDir()
	m := &testMaster{keyDir: filepath.Join(dir, "ssh"),
		knownHosts: filepath.Join(dir, "known_hosts")}
	priv, pub, err := GenerateKeyPair("ed25519", 0, "master")
	if err != nil {
		t.Fatal(err)
	}
	if err := InstallKeyPair(m.keyDir, "ed25519", priv, pub, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(m.knownHosts, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	m.pubLine = strings.TrimSpace(string(pub))
	return m
}

// trust pins h's current host key in the master's known_hosts.
func (m *testMaster) trust(t testing.TB, h *sshdHost) {
	t.Helper()
	if err := AddKnownHost(m.knownHosts, h.Addr, h.HostKey()); err != nil {
		t.Fatal(err)
	}
}

// client returns a Client running the test helper; mod may adjust the
// configuration first.
func (m *testMaster) client(t testing.TB, mod func(*ClientConfig)) *Client {
	t.Helper()
	cfg := DefaultClientConfig()
	cfg.KeyDir, cfg.KnownHostsPath = m.keyDir, m.knownHosts
	cfg.RemoteCommand = helperCommand(t)
	cfg.ConnectTimeout, cfg.OpTimeout = 5*time.Second, 30*time.Second
	if mod != nil {
		mod(&cfg)
	}
	c, err := NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// session returns a Session of c closed when the test ends.
func session(t testing.TB, c *Client) *Session {
	t.Helper()
	s := c.NewSession()
	t.Cleanup(s.Close)
	return s
}

// newHosts starts n hosts that trust m, and that m trusts.
func newHosts(t testing.TB, m *testMaster, n int) []*sshdHost {
	t.Helper()
	hosts := make([]*sshdHost, n)
	for i := range hosts {
		hosts[i] = newSSHDHost(t, fmt.Sprintf("node%d", i+1))
		hosts[i].Authorize(m.pubLine)
		m.trust(t, hosts[i])
	}
	return hosts
}

func target(h *sshdHost) Target { return Target{Name: h.Name, Addr: h.Addr} }
