// Package integration starts simulated hosts on loopback — each a root
// directory, its own 127.A.B.x address, a real OpenSSH sshd and a real
// ganeti-node daemon process — and drives them through the CLI, real
// ssh and real TLS clients. Nothing here reaches beyond 127.0.0.0/8.
package integration

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Paths and ports every simulated host uses.
const (
	sshdPath    = "/usr/sbin/sshd"
	sshPath     = "/usr/bin/ssh"
	sshPort     = 2222
	rpcPort     = 1811
	clusterName = "cluster1.example"
	sockRel     = "var/run/ganeti/socket/ganeti-node.sock"
	libRel      = "var/lib/ganeti"
)

// Bounds for the harness's polls. They are generous on purpose: they
// only decide how long a broken cluster takes to be reported.
const (
	cmdTimeout     = 60 * time.Second
	startTimeout   = 60 * time.Second
	stopTimeout    = 60 * time.Second
	leaderTimeout  = 60 * time.Second
	convergeWithin = 60 * time.Second
	pollEvery      = 100 * time.Millisecond
	logTailLines   = 40
)

// productBin is the ganeti-node binary TestMain built; buildErr says
// why there is none. Tests that only need sshd run without it.
var (
	productBin string
	buildErr   error
)

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		fmt.Println("integration: skipped: needs root for sshd")
		os.Exit(0)
	}
	if _, err := os.Stat(sshdPath); err != nil {
		fmt.Printf("integration: skipped: %s missing\n", sshdPath)
		os.Exit(0)
	}
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		fmt.Printf("integration: creating /run/sshd: %v\n", err)
		os.Exit(1)
	}
	dir, err := os.MkdirTemp("", "gn-bin")
	if err != nil {
		fmt.Printf("integration: %v\n", err)
		os.Exit(1)
	}
	productBin, buildErr = buildProduct(dir)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// buildProduct builds the module root into dir as a static binary.
func buildProduct(dir string) (string, error) {
	bin := filepath.Join(dir, "ganeti-node")
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = "/usr/local/go/bin/go"
	}
	cmd := exec.Command(goTool, "build", "-o", bin, ".")
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %w\n%s", err, out)
	}
	return bin, nil
}

// Host is one simulated host. Name, IP and Root never change; Env is
// added to the daemon's environment on every Start.
type Host struct {
	Name    string
	IP      string
	Root    string
	SSHPort int
	Env     []string

	sshd   *proc
	daemon *proc
}

// proc is a child process with a channel closed when it has exited.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// start runs cmd and reaps it in the background.
func startProc(cmd *exec.Cmd) (*proc, error) {
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// running reports whether p has been started and not yet exited.
func (p *proc) running() bool {
	if p == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// wait waits up to d for p to exit and reports whether it did.
func (p *proc) wait(d time.Duration) bool {
	select {
	case <-p.done:
		return true
	case <-time.After(d):
		return false
	}
}

// Options changes what NewClusterWith starts.
type Options struct {
	// NoDaemon starts only the hosts' sshd; Start starts daemons later.
	NoDaemon bool
	// Env is given to every host's daemon (see Host.Env).
	Env []string
}

// Cluster is a set of simulated hosts sharing one random 127.A.B.0/24.
type Cluster struct {
	Hosts []*Host
	Bin   string

	t testing.TB
}

// clusters maps a test to its live clusters so that WaitFor can show
// their logs when a poll runs out.
var clusters sync.Map // testing.TB -> *[]*Cluster

// NewCluster starts n hosts node1..nodeN with sshd and daemon running.
// Everything is killed when the test ends; the roots are removed unless
// the test failed, in which case their paths are logged.
func NewCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	return NewClusterWith(t, n, Options{})
}

// NewClusterWith is NewCluster with options.
func NewClusterWith(t testing.TB, n int, o Options) *Cluster {
	t.Helper()
	if !o.NoDaemon && buildErr != nil {
		t.Fatalf("no product binary: %v", buildErr)
	}
	c := &Cluster{Bin: productBin, t: t}
	register(t, c)
	t.Cleanup(c.cleanup)
	a, b := pickSubnet(t)
	for i := 1; i <= n; i++ {
		h := c.newHost(fmt.Sprintf("node%d", i),
			fmt.Sprintf("127.%d.%d.%d", a, b, i))
		h.Env = append(h.Env, o.Env...)
		c.startSSHD(h)
	}
	if !o.NoDaemon {
		for _, h := range c.Hosts {
			c.Start(h)
		}
	}
	return c
}

func register(t testing.TB, c *Cluster) {
	v, _ := clusters.LoadOrStore(t, &[]*Cluster{})
	l := v.(*[]*Cluster)
	*l = append(*l, c)
	t.Cleanup(func() { clusters.Delete(t) })
}

// pickSubnet picks 127.A.B.0/24 with nothing listening on its .1 sshd
// port, so that parallel runs do not collide.
func pickSubnet(t testing.TB) (int, int) {
	t.Helper()
	for range 20 {
		a, b := 100+rand.IntN(100), 1+rand.IntN(254)
		addr := fmt.Sprintf("127.%d.%d.1:%d", a, b, sshPort)
		if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			conn.Close()
			continue
		}
		return a, b
	}
	t.Fatalf("no free 127.A.B.0/24 found")
	return 0, 0
}

// newHost makes the host's root with its sshd directories and key.
func (c *Cluster) newHost(name, ip string) *Host {
	c.t.Helper()
	root, err := os.MkdirTemp("/tmp", "gn")
	if err != nil {
		c.t.Fatalf("creating root: %v", err)
	}
	h := &Host{Name: name, IP: ip, Root: root, SSHPort: sshPort}
	c.Hosts = append(c.Hosts, h)
	for _, d := range []string{"etc/ssh", "root/.ssh", "run"} {
		if err := os.MkdirAll(h.path(d), 0o700); err != nil {
			c.t.Fatalf("creating %s: %v", h.path(d), err)
		}
	}
	c.RegenerateHostKey(h)
	if err := os.WriteFile(h.path("etc/ssh/sshd_config"),
		[]byte(h.sshdConfig()), 0o600); err != nil {
		c.t.Fatalf("writing sshd config: %v", err)
	}
	return h
}

// path is rel under h's root.
func (h *Host) path(rel string) string { return filepath.Join(h.Root, rel) }

// LibPath is rel under h's /var/lib/ganeti.
func (h *Host) LibPath(rel string) string {
	return filepath.Join(h.Root, libRel, rel)
}

func (h *Host) sshdConfig() string {
	lines := []string{
		fmt.Sprintf("ListenAddress %s:%d", h.IP, h.SSHPort),
		"HostKey " + h.path("etc/ssh/ssh_host_ed25519_key"),
		"AuthorizedKeysFile " + h.path("root/.ssh/authorized_keys"),
		"SetEnv GANETI_ROOT=" + h.Root,
		"StrictModes no",
		"PermitRootLogin prohibit-password",
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"UsePAM no",
		"PidFile " + h.path("run/sshd.pid"),
		"LogLevel VERBOSE",
	}
	return strings.Join(lines, "\n") + "\n"
}

// RegenerateHostKey replaces h's sshd host key with a new one; a
// running sshd uses it after RestartSSHD.
func (c *Cluster) RegenerateHostKey(h *Host) {
	c.t.Helper()
	key := h.path("etc/ssh/ssh_host_ed25519_key")
	os.Remove(key)
	os.Remove(key + ".pub")
	out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519",
		"-N", "", "-C", h.Name, "-f", key).CombinedOutput()
	if err != nil {
		c.t.Fatalf("ssh-keygen for %s: %v: %s", h.Name, err, out)
	}
}

// startSSHD starts h's sshd and waits until its port accepts.
func (c *Cluster) startSSHD(h *Host) {
	c.t.Helper()
	log, err := os.OpenFile(h.path("sshd.log"),
		os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		c.t.Fatalf("opening sshd log: %v", err)
	}
	defer log.Close()
	cmd := exec.Command(sshdPath, "-D", "-e",
		"-f", h.path("etc/ssh/sshd_config"))
	cmd.Stdout, cmd.Stderr = log, log
	if h.sshd, err = startProc(cmd); err != nil {
		c.t.Fatalf("starting sshd of %s: %v", h.Name, err)
	}
	// On a real cluster a host's sshd and the commands it runs use that
	// host's CPUs. Here every host shares this machine's few cores, and
	// a fan-out to 80 hosts would starve the daemons' Raft heartbeats
	// of CPU for longer than the 200 ms timeouts (nice 10 was not
	// enough: 80 niced sessions still outweigh one daemon). SCHED_IDLE,
	// inherited by every session and remote command, gives the daemons
	// the CPU first, as separate machines would; the work is unchanged
	// and runs at full speed whenever the daemons leave a core free.
	if err := unix.SchedSetAttr(h.sshd.cmd.Process.Pid,
		&unix.SchedAttr{Policy: unix.SCHED_IDLE}, 0); err != nil {
		c.t.Fatalf("setting SCHED_IDLE on sshd of %s: %v", h.Name, err)
	}
	addr := net.JoinHostPort(h.IP, strconv.Itoa(h.SSHPort))
	WaitFor(c.t, "sshd of "+h.Name+" to accept on "+addr, startTimeout,
		func() (bool, string) {
			if !h.sshd.running() {
				return false, "sshd exited: " + tail(h.path("sshd.log"), 10)
			}
			conn, err := net.DialTimeout("tcp", addr, time.Second)
			if err != nil {
				return false, err.Error()
			}
			conn.Close()
			return true, ""
		})
}

// RestartSSHD kills h's sshd and starts it again (to pick up a new
// host key, for example).
func (c *Cluster) RestartSSHD(h *Host) {
	c.t.Helper()
	if !h.stopSSHD() {
		c.t.Fatalf("sshd of %s did not exit after SIGKILL", h.Name)
	}
	c.startSSHD(h)
}

// Start (re)starts h's daemon, appending to <root>/daemon.log, and
// waits until its socket exists and `status` answers.
func (c *Cluster) Start(h *Host) {
	c.t.Helper()
	if buildErr != nil {
		c.t.Fatalf("no product binary: %v", buildErr)
	}
	if h.daemon.running() {
		c.t.Fatalf("starting %s: daemon already running", h.Name)
	}
	log, err := os.OpenFile(h.path("daemon.log"),
		os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		c.t.Fatalf("opening daemon log: %v", err)
	}
	defer log.Close()
	fmt.Fprintf(log, "=== harness: starting daemon %s\n", time.Now())
	cmd := exec.Command(c.Bin, "--root", h.Root, "daemon")
	cmd.Env = append(cleanEnv(), h.Env...)
	cmd.Stdout, cmd.Stderr = log, log
	// Its own process group, so Kill takes anything it spawned too,
	// like a host that loses power.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if h.daemon, err = startProc(cmd); err != nil {
		c.t.Fatalf("starting daemon of %s: %v", h.Name, err)
	}
	c.waitDaemonUp(h)
}

func (c *Cluster) waitDaemonUp(h *Host) {
	c.t.Helper()
	sock := h.path(sockRel)
	WaitFor(c.t, "daemon of "+h.Name+" to answer status", startTimeout,
		func() (bool, string) {
			if !h.daemon.running() {
				return false, "daemon exited: " + fmt.Sprint(h.daemon.err)
			}
			if _, err := os.Stat(sock); err != nil {
				return false, err.Error()
			}
			if _, err := c.TryStatus(h); err != nil {
				return false, err.Error()
			}
			return true, ""
		})
}

// cleanEnv is the test's environment without GANETI_* variables, so
// that only --root and Host.Env decide what a process acts on.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GANETI_") {
			env = append(env, kv)
		}
	}
	return env
}

// Stop sends SIGTERM to h's daemon and waits for it to exit.
func (c *Cluster) Stop(h *Host) {
	c.t.Helper()
	if !h.daemon.running() {
		c.t.Fatalf("stopping %s: daemon not running", h.Name)
	}
	h.daemon.cmd.Process.Signal(syscall.SIGTERM)
	if !h.daemon.wait(stopTimeout) {
		c.t.Fatalf("daemon of %s still running %v after SIGTERM\n%s",
			h.Name, stopTimeout, c.tails())
	}
}

// Kill sends SIGKILL to h's daemon and its process group and waits
// for it to exit.
func (c *Cluster) Kill(h *Host) {
	c.t.Helper()
	if !h.daemon.running() {
		c.t.Fatalf("killing %s: daemon not running", h.Name)
	}
	syscall.Kill(-h.daemon.cmd.Process.Pid, syscall.SIGKILL)
	if !h.daemon.wait(stopTimeout) {
		c.t.Fatalf("daemon of %s survived SIGKILL", h.Name)
	}
}

// Restart stops h's daemon gracefully and starts it again.
func (c *Cluster) Restart(h *Host) {
	c.t.Helper()
	c.Stop(h)
	c.Start(h)
}

// Alive reports whether h's daemon process is running.
func (h *Host) Alive() bool { return h.daemon.running() }

func (c *Cluster) cleanup() {
	for _, h := range c.Hosts {
		if h.daemon.running() {
			syscall.Kill(-h.daemon.cmd.Process.Pid, syscall.SIGKILL)
			h.daemon.wait(stopTimeout)
		}
		h.stopSSHD()
	}
	for _, h := range c.Hosts {
		if c.t.Failed() {
			c.t.Logf("kept root of %s (%s): %s", h.Name, h.IP, h.Root)
			continue
		}
		os.RemoveAll(h.Root)
	}
}

// Host returns the host called name, or nil.
func (c *Cluster) Host(name string) *Host {
	for _, h := range c.Hosts {
		if h.Name == name {
			return h
		}
	}
	return nil
}

// Run runs `<bin> --root <root> args...` for h, bounded by cmdTimeout.
// err is non-nil when the command failed or ran out of time.
func (c *Cluster) Run(h *Host, args ...string) (string, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	argv := append([]string{"--root", h.Root}, args...)
	cmd := exec.CommandContext(ctx, c.Bin, argv...)
	cmd.Env = cleanEnv()
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("%w after %v", ctx.Err(), cmdTimeout)
	}
	return stdout.String(), stderr.String(), err
}

// MustRun is Run that fails the test, showing stderr and h's daemon
// log tail, when the command fails. It returns stdout.
func (c *Cluster) MustRun(h *Host, args ...string) string {
	c.t.Helper()
	stdout, stderr, err := c.Run(h, args...)
	if err != nil {
		c.t.Fatalf("on %s: ganeti-node %s: %v\nstderr: %s\n"+
			"--- %s daemon.log tail:\n%s",
			h.Name, strings.Join(args, " "), err, stderr,
			h.Name, h.LogTail(logTailLines))
	}
	return stdout
}

// Init initialises the cluster on h and waits until h lists itself as
// master.
func (c *Cluster) Init(h *Host) {
	c.t.Helper()
	c.MustRun(h, "init", "--node-name", h.Name, "--primary-ip", h.IP,
		"--ssh-port", strconv.Itoa(h.SSHPort), clusterName)
	WaitFor(c.t, h.Name+" to list itself as master", convergeWithin,
		func() (bool, string) {
			nodes, err := c.TryList(h)
			if err != nil {
				return false, err.Error()
			}
			m := MasterOf(nodes)
			return m == h.Name, "master " + strconv.Quote(m)
		})
}

// TrustMaster does what the admin does before a join: it appends the
// master's `authorized-keys` lines to h's authorized_keys.
func (c *Cluster) TrustMaster(master, h *Host) {
	c.t.Helper()
	keys := c.MustRun(master, "authorized-keys")
	if strings.TrimSpace(keys) == "" {
		c.t.Fatalf("authorized-keys on %s printed nothing", master.Name)
	}
	if !strings.HasSuffix(keys, "\n") {
		keys += "\n"
	}
	if err := os.MkdirAll(h.path("root/.ssh"), 0o700); err != nil {
		c.t.Fatalf("creating .ssh of %s: %v", h.Name, err)
	}
	p := h.path("root/.ssh/authorized_keys")
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		c.t.Fatalf("opening %s: %v", p, err)
	}
	defer f.Close()
	if _, err := f.WriteString(keys); err != nil {
		c.t.Fatalf("appending to %s: %v", p, err)
	}
}

// Join makes the master trust-join h and waits until h's daemon says
// it is initialised.
func (c *Cluster) Join(master, h *Host, extra ...string) {
	c.t.Helper()
	c.TrustMaster(master, h)
	args := []string{"join", "--primary-ip", h.IP,
		"--ssh-port", strconv.Itoa(h.SSHPort)}
	args = append(append(args, extra...), h.Name)
	c.MustRun(master, args...)
	WaitFor(c.t, h.Name+" to be initialised after join", convergeWithin,
		func() (bool, string) {
			st, err := c.TryStatus(h)
			if err != nil {
				return false, err.Error()
			}
			return st.Initialised, fmt.Sprintf("%+v", st)
		})
}

// NodeInfo is one element of `list --output json`.
type NodeInfo struct {
	Name          string `json:"name"`
	UUID          string `json:"uuid"`
	PrimaryIP     string `json:"primary_ip"`
	Role          string `json:"role"`
	MasterCapable bool   `json:"master_capable"`
	Raft          string `json:"raft"`
	Alive         bool   `json:"alive"`
}

// MasterOf returns the name of the node with role master, or "".
func MasterOf(nodes []NodeInfo) string {
	for _, n := range nodes {
		if n.Role == "master" {
			return n.Name
		}
	}
	return ""
}

// TryList runs `list --output json` on h.
func (c *Cluster) TryList(h *Host) ([]NodeInfo, error) {
	stdout, stderr, err := c.Run(h, "list", "--output", "json")
	if err != nil {
		return nil, fmt.Errorf("list on %s: %w: %s",
			h.Name, err, strings.TrimSpace(stderr))
	}
	var nodes []NodeInfo
	if err := json.Unmarshal([]byte(stdout), &nodes); err != nil {
		return nil, fmt.Errorf("list on %s: bad JSON %q: %w",
			h.Name, stdout, err)
	}
	return nodes, nil
}

// List runs `list --output json` on h and fails the test if it fails.
func (c *Cluster) List(h *Host) []NodeInfo {
	c.t.Helper()
	nodes, err := c.TryList(h)
	if err != nil {
		c.t.Fatalf("%v\n--- %s daemon.log tail:\n%s",
			err, h.Name, h.LogTail(logTailLines))
	}
	return nodes
}

// Status is the local daemon status of `status --output json`.
type Status struct {
	Name         string `json:"name"`
	UUID         string `json:"uuid"`
	Initialised  bool   `json:"initialised"`
	RaftState    string `json:"raft_state"`
	AppliedIndex uint64 `json:"applied_index"`
	TLSDials     uint64 `json:"tls_dials"`
}

// TryStatus runs `status --output json` on h.
func (c *Cluster) TryStatus(h *Host) (Status, error) {
	var st Status
	stdout, stderr, err := c.Run(h, "status", "--output", "json")
	if err != nil {
		return st, fmt.Errorf("status on %s: %w: %s",
			h.Name, err, strings.TrimSpace(stderr))
	}
	if err := json.Unmarshal([]byte(stdout), &st); err != nil {
		return st, fmt.Errorf("status on %s: bad JSON %q: %w",
			h.Name, stdout, err)
	}
	return st, nil
}

// Status runs `status --output json` on h and fails the test if it
// fails.
func (c *Cluster) Status(h *Host) Status {
	c.t.Helper()
	st, err := c.TryStatus(h)
	if err != nil {
		c.t.Fatalf("%v\n--- %s daemon.log tail:\n%s",
			err, h.Name, h.LogTail(logTailLines))
	}
	return st
}

// Leader returns the master: the host that a live host in from (all
// hosts when from is empty) lists as master, provided that host is
// alive and its Raft state is Leader. It polls until one is found.
func (c *Cluster) Leader(from ...*Host) *Host {
	c.t.Helper()
	if len(from) == 0 {
		from = c.Hosts
	}
	return c.waitLeader("a live master", from, nil)
}

// WaitForNewLeader polls until a live host other than old is listed
// as master by a live host other than old, and is the Raft leader.
func (c *Cluster) WaitForNewLeader(old *Host) *Host {
	c.t.Helper()
	var from []*Host
	for _, h := range c.Hosts {
		if h != old {
			from = append(from, h)
		}
	}
	return c.waitLeader("a new master other than "+old.Name, from, old)
}

func (c *Cluster) waitLeader(what string, from []*Host, not *Host) *Host {
	c.t.Helper()
	var leader *Host
	WaitFor(c.t, what, leaderTimeout, func() (bool, string) {
		var states []string
		for _, h := range from {
			l, state := c.leaderSeenBy(h, not)
			if l != nil {
				leader = l
				return true, ""
			}
			states = append(states, state)
		}
		return false, strings.Join(states, "; ")
	})
	return leader
}

// leaderSeenBy returns the master h lists if it is alive, not `not`,
// and says it is the Raft leader; otherwise it says why not.
func (c *Cluster) leaderSeenBy(h, not *Host) (*Host, string) {
	if !h.Alive() {
		return nil, h.Name + " down"
	}
	nodes, err := c.TryList(h)
	if err != nil {
		return nil, err.Error()
	}
	name := MasterOf(nodes)
	m := c.Host(name)
	switch {
	case m == nil:
		return nil, fmt.Sprintf("%s lists master %q", h.Name, name)
	case m == not || !m.Alive():
		return nil, fmt.Sprintf("%s lists old/dead master %s",
			h.Name, name)
	}
	st, err := c.TryStatus(m)
	if err != nil {
		return nil, err.Error()
	}
	if st.RaftState != "Leader" {
		return nil, fmt.Sprintf("%s lists master %s in raft state %s",
			h.Name, name, st.RaftState)
	}
	return m, ""
}

// SSH runs command on to with real ssh, as from's root with from's
// own key, verifying to's host key against from's known_hosts.
func (c *Cluster) SSH(from, to *Host, command string) error {
	_, err := c.SSHOutput(from, to, command)
	return err
}

// SSHOutput is SSH that also returns the command's standard output.
func (c *Cluster) SSHOutput(from, to *Host, command string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, sshPath,
		"-i", from.path("root/.ssh/id_ed25519"),
		"-o", "IdentitiesOnly=yes",
		"-o", "BatchMode=yes",
		"-o", "StrictHostKeyChecking=yes",
		"-o", "UserKnownHostsFile="+from.LibPath("known_hosts"),
		"-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "ConnectTimeout=5",
		"-F", "/dev/null",
		"-p", strconv.Itoa(to.SSHPort),
		"root@"+to.IP, command)
	cmd.Env = cleanEnv()
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("ssh %s -> %s: %w: %s",
			from.Name, to.Name, err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// RPC makes a node RPC call from `from` to `to` with a real TLS 1.3
// client holding from's client certificate and trusting from's CA
// file: GET /v1/ping must answer 200.
func (c *Cluster) RPC(from, to *Host) error {
	conf, err := clientTLS(from, to.IP)
	if err != nil {
		return err
	}
	addr := net.JoinHostPort(to.IP, strconv.Itoa(rpcPort))
	d := &net.Dialer{Timeout: 10 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", addr, conf)
	if err != nil {
		return fmt.Errorf("rpc %s -> %s: handshake: %w",
			from.Name, to.Name, err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	req, _ := http.NewRequest("GET", "https://"+addr+"/v1/ping", nil)
	if err := req.Write(conn); err != nil {
		return fmt.Errorf("rpc %s -> %s: writing request: %w",
			from.Name, to.Name, err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		return fmt.Errorf("rpc %s -> %s: reading response: %w",
			from.Name, to.Name, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("rpc %s -> %s: status %s, want 200",
			from.Name, to.Name, resp.Status)
	}
	return nil
}

// clientTLS builds the TLS client config of h's client certificate.
func clientTLS(h *Host, serverName string) (*tls.Config, error) {
	pemFile, err := os.ReadFile(h.LibPath("client.pem"))
	if err != nil {
		return nil, err
	}
	cert, err := tls.X509KeyPair(pemFile, pemFile)
	if err != nil {
		return nil, fmt.Errorf("client.pem of %s: %w", h.Name, err)
	}
	caFile, err := os.ReadFile(h.LibPath("ca.pem"))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caFile) {
		return nil, errors.New("ca.pem of " + h.Name + ": no certificate")
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
		ServerName:   serverName,
		MinVersion:   tls.VersionTLS13,
		NextProtos:   []string{"ganeti-rpc/1"},
	}, nil
}

// LogTail returns the last n lines of h's daemon log.
func (h *Host) LogTail(n int) string { return tail(h.path("daemon.log"), n) }

// SSHDLogTail returns the last n lines of h's sshd log.
func (h *Host) SSHDLogTail(n int) string { return tail(h.path("sshd.log"), n) }

func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// tails shows the daemon log tail of every host of c.
func (c *Cluster) tails() string {
	var b strings.Builder
	for _, h := range c.Hosts {
		fmt.Fprintf(&b, "--- %s (%s, alive=%v) daemon.log tail:\n%s\n",
			h.Name, h.IP, h.Alive(), h.LogTail(logTailLines))
	}
	return b.String()
}

// WaitFor polls cond until it holds, for at most timeout. When time
// runs out it fails the test with what it waited for, cond's last
// state and the log tails of the test's clusters.
func WaitFor(t testing.TB, what string, timeout time.Duration,
	cond func() (ok bool, state string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s\nlast state: %s\n%s",
				timeout, what, state, tailsFor(t))
		}
		time.Sleep(pollEvery) // poll interval, not a wait for a state
	}
}

func tailsFor(t testing.TB) string {
	v, ok := clusters.Load(t)
	if !ok {
		return ""
	}
	var b strings.Builder
	for _, c := range *v.(*[]*Cluster) {
		b.WriteString(c.tails())
	}
	return b.String()
}

// newUserKey makes h's own SSH key pair as ssh-keygen would for an
// admin, and returns the public key line.
func newUserKey(t testing.TB, h *Host) string {
	t.Helper()
	key := h.path("root/.ssh/id_ed25519")
	out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "",
		"-C", "root@"+h.Name, "-f", key).CombinedOutput()
	if err != nil {
		t.Fatalf("ssh-keygen: %v: %s", err, out)
	}
	pub, err := os.ReadFile(key + ".pub")
	if err != nil {
		t.Fatalf("reading public key: %v", err)
	}
	return string(pub)
}

// recordHostKey writes to's current host key into from's known_hosts.
func recordHostKey(t testing.TB, from, to *Host) {
	t.Helper()
	pub, err := os.ReadFile(to.path("etc/ssh/ssh_host_ed25519_key.pub"))
	if err != nil {
		t.Fatalf("reading host key: %v", err)
	}
	fields := strings.Fields(string(pub))
	line := fmt.Sprintf("[%s]:%d %s %s\n", to.IP, to.SSHPort,
		fields[0], fields[1])
	if err := os.MkdirAll(from.LibPath(""), 0o700); err != nil {
		t.Fatalf("creating lib dir: %v", err)
	}
	if err := os.WriteFile(from.LibPath("known_hosts"), []byte(line),
		0o644); err != nil {
		t.Fatalf("writing known_hosts: %v", err)
	}
}

func appendAuthorized(t testing.TB, h *Host, line string) {
	t.Helper()
	p := h.path("root/.ssh/authorized_keys")
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatalf("opening %s: %v", p, err)
	}
	defer f.Close()
	if _, err := f.WriteString(line); err != nil {
		t.Fatalf("writing %s: %v", p, err)
	}
}

func TestHarness_SSHDLogin(t *testing.T) {
	c := NewClusterWith(t, 2, Options{NoDaemon: true})
	h1, h2 := c.Hosts[0], c.Hosts[1]
	appendAuthorized(t, h2, newUserKey(t, h1))
	recordHostKey(t, h1, h2)

	out, err := c.SSHOutput(h1, h2, "echo $GANETI_ROOT")
	if err != nil {
		t.Fatalf("trusted key: %v\nsshd log:\n%s", err, h2.SSHDLogTail(20))
	}
	if got, want := out, h2.Root+"\n"; got != want {
		t.Fatalf("GANETI_ROOT over ssh: got %q, want %q", got, want)
	}

	// h2's key is in no authorized_keys of h1.
	newUserKey(t, h2)
	recordHostKey(t, h2, h1)
	err = c.SSH(h2, h1, "true")
	if err == nil || !strings.Contains(err.Error(), "Permission denied") {
		t.Fatalf("unknown key: got %v, want permission denied", err)
	}

	// A changed host key is refused by the client.
	c.RegenerateHostKey(h2)
	c.RestartSSHD(h2)
	err = c.SSH(h1, h2, "true")
	if err == nil || !strings.Contains(err.Error(), "verification failed") {
		t.Fatalf("changed host key: got %v, want verification failure", err)
	}
}

// stopSSHD kills h's sshd and, first, every process it started, and
// reports whether all are gone. Each connection runs in its own
// session (setsid), so killing the listener alone would leave, say,
// an ssh-update helper writing into a root that is about to go. The
// processes are killed leaves first, so that every one is reaped by
// its own parent rather than left a zombie under init.
func (h *Host) stopSSHD() bool {
	if !h.sshd.running() {
		return true
	}
	pid := h.sshd.cmd.Process.Pid
	deadline := time.Now().Add(stopTimeout)
	for time.Now().Before(deadline) {
		leaves, n := liveLeaves(pid)
		if n == 0 {
			break
		}
		for _, k := range leaves {
			syscall.Kill(k, syscall.SIGKILL)
		}
		time.Sleep(pollEvery) // poll interval, not a wait for a state
	}
	h.sshd.cmd.Process.Kill()
	return h.sshd.wait(stopTimeout)
}

// liveLeaves returns the processes below pid that have no children
// and are not zombies, and how many processes are below pid at all.
func liveLeaves(pid int) ([]int, int) {
	children, zombie := procTree()
	var below, leaves []int
	for queue := children[pid]; len(queue) > 0; queue = queue[1:] {
		p := queue[0]
		below = append(below, p)
		queue = append(queue, children[p]...)
		if len(children[p]) == 0 && !zombie[p] {
			leaves = append(leaves, p)
		}
	}
	return leaves, len(below)
}

// procTree reads /proc: each process's children, and which are
// zombies.
func procTree() (map[int][]int, map[int]bool) {
	children, zombie := map[int][]int{}, map[int]bool{}
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, p := range stats {
		data, err := os.ReadFile(p)
		if err != nil {
			continue // exited meanwhile
		}
		// "pid (comm) state ppid ...": comm may hold spaces.
		f := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+1:]))
		if len(f) < 2 {
			continue
		}
		self, err1 := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		ppid, err2 := strconv.Atoi(f[1])
		if err1 == nil && err2 == nil {
			children[ppid] = append(children[ppid], self)
			zombie[self] = f[0] == "Z"
		}
	}
	return children, zombie
}
