// Package daemon is the node daemon: it serves the CLI on a Unix
// socket, runs Raft and gossip once the node has an identity, and, on
// the master, performs every operation that changes roles.
//
// Security role: the daemon is where the rules meet. Its TLS port
// admits only certificates in the candidate map it has applied (via
// rpcsec); cluster-changing commands run only on the leader, arrive
// either from the local socket (root only) or from a candidate over
// mutual TLS, and a normal node refuses them. The master's SSH work
// builds every authorized_keys from its own ganeti_pub_keys and the
// committed candidate set (invariant 2), never from a request.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"ganeti-node/fsm"
	"ganeti-node/raftnode"
	"ganeti-node/rpcsec"
)

// Config configures a daemon.
type Config struct {
	// Root is the root prefix of every path ("/" in production).
	Root string
	// Raft holds the Raft timings; ID, Dir and Advertise are filled in
	// from the node identity.
	Raft raftnode.Config
	// RemoteCommand is what the master runs over SSH on other nodes;
	// the default is this executable followed by "ssh-update".
	RemoteCommand string
	// SSHConcurrency bounds parallel SSH connections of a fan-out.
	SSHConcurrency int
	// Log is the daemon's logger.
	Log *slog.Logger
}

// DefaultConfig returns the production configuration for root.
func DefaultConfig(root string) Config {
	exe, err := os.Executable()
	if err != nil {
		exe = "ganeti-node"
	}
	return Config{Root: root, Raft: raftnode.DefaultConfig(),
		RemoteCommand: exe + " ssh-update", SSHConcurrency: 8,
		Log: slog.Default()}
}

// Daemon is one node's daemon. Create it with New and run it with Run.
type Daemon struct {
	cfg   Config
	paths Paths
	log   *slog.Logger
	fsm   *fsm.FSM
	adm   *rpcsec.Admission

	// mu guards the fields set by activation.
	mu     sync.Mutex
	node   *NodeFile
	id     *rpcsec.Identity
	mux    *rpcsec.Mux
	raft   *raftnode.Node
	gossip *raftnode.Gossip
	rpcSrv *http.Server

	applied   appliedIndex
	admitted  atomic.Uint64 // index whose candidate map admission uses
	leader    leaderState
	opMu      sync.Mutex
	pendingMu sync.Mutex
	pending   map[string]bool
	sshPool   sshPool
}

// New prepares a daemon; nothing listens until Run.
func New(cfg Config) *Daemon {
	d := &Daemon{cfg: cfg, paths: NewPaths(cfg.Root), log: cfg.Log,
		pending: map[string]bool{}}
	d.adm = rpcsec.NewAdmission(cfg.Log.With("component", "rpcsec"))
	d.applied.init()
	d.fsm = fsm.New(d.observe)
	return d
}

// Run serves until ctx is cancelled, then shuts down gracefully: a
// leader hands leadership to another candidate before it exits.
func (d *Daemon) Run(ctx context.Context) error {
	// The Unix socket comes first: the CLI and the ssh-update helper
	// need it even before the node has an identity.
	ln, err := listenUnix(d.paths.Socket())
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: d.localHandler(),
		ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()

	// A node that already has an identity starts its network side now;
	// a fresh one waits for init or for the master's join.
	if _, err := os.Stat(d.paths.NodeJSON()); err == nil {
		if err := d.activate(); err != nil {
			return err
		}
	}
	d.log.Info("daemon started", "root", d.paths.Root,
		"socket", d.paths.Socket())

	<-ctx.Done()
	d.shutdown()
	return nil
}

// listenUnix opens the CLI socket with mode 0600 from the start: the
// umask is tightened around the bind so no other user can connect.
func listenUnix(path string) (net.Listener, error) {
	if err := os.MkdirAll(dirOf(path), 0o755); err != nil {
		return nil, fmt.Errorf("creating socket directory: %w", err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("removing stale socket %q: %w", path, err)
	}
	old := setUmask(0o177)
	ln, err := net.Listen("unix", path)
	setUmask(old)
	if err != nil {
		return nil, fmt.Errorf("listening on %q: %w", path, err)
	}
	return ln, nil
}

func (d *Daemon) shutdown() {
	d.mu.Lock()
	r, g, srv, mux := d.raft, d.gossip, d.rpcSrv, d.mux
	d.mu.Unlock()
	if r != nil && r.IsLeader() {
		// A planned stop costs a transfer (milliseconds), not an
		// election.
		if err := r.TransferLeadership("", ""); err != nil {
			d.log.Warn("leadership transfer before shutdown failed", "err", err)
		} else {
			d.log.Info("leadership handed over before shutdown")
		}
	}
	if g != nil {
		g.Leave()
	}
	if r != nil {
		r.Shutdown()
	}
	d.closeSSHPool()
	if srv != nil {
		srv.Close()
	}
	if mux != nil {
		mux.Close()
	}
	d.log.Info("daemon stopped")
}
