package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"

	"sync"
	"time"

	"ganeti-node/atomicfile"
	"ganeti-node/fsm"
	"ganeti-node/raftnode"
	"ganeti-node/rpcsec"
)

// ErrNoIdentity is returned when an operation needs the node to be
// part of a cluster and it is not yet.
var ErrNoIdentity = errors.New("this node is not part of a cluster yet; " +
	"run init here or join it from the master")

// activate loads the node identity and starts the network side: the
// TLS port (RPC and Raft), Raft itself and gossip. It is idempotent.
func (d *Daemon) activate() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.raft != nil {
		// Already serving: new certificates on disk (renewal, re-add)
		// take effect for new handshakes.
		return d.reloadIdentityLocked()
	}
	nf, err := loadNodeFile(d.paths.NodeJSON())
	if err != nil {
		return fmt.Errorf("loading node identity: %w", err)
	}
	id, err := rpcsec.LoadIdentity(d.paths.StateDir())
	if err != nil {
		return fmt.Errorf("loading certificates: %w", err)
	}

	// Admission starts from the last map this node applied, so a
	// restart never admits by an older one; a fresh node starts from
	// the map the master gave it at join.
	idx, m, err := d.loadAdmission()
	if err != nil {
		return err
	}
	d.applied.setFloor(idx)
	d.adm.Set(m)
	d.admitted.Store(idx)

	mux, err := rpcsec.Listen(nf.Addr(), id, d.adm,
		d.log.With("component", "rpcsec"))
	if err != nil {
		return fmt.Errorf("listening on %s: %w", nf.Addr(), err)
	}
	srv := &http.Server{Handler: d.rpcHandler(),
		ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(mux.RPCListener())

	rn, err := d.openRaft(nf, id, mux)
	if err != nil {
		srv.Close()
		mux.Close()
		return err
	}
	d.node, d.id, d.mux, d.rpcSrv, d.raft = nf, id, mux, srv, rn
	d.startGossip(nf)
	d.rapiActivate()
	d.log.Info("node active", "node", nf.Name, "uuid", nf.UUID,
		"addr", nf.Addr())
	return nil
}

func (d *Daemon) openRaft(nf *NodeFile, id *rpcsec.Identity,
	mux *rpcsec.Mux) (*raftnode.Node, error) {
	adv, err := net.ResolveTCPAddr("tcp", nf.Addr())
	if err != nil {
		return nil, fmt.Errorf("resolving %q: %w", nf.Addr(), err)
	}
	rc := d.cfg.Raft
	rc.ID, rc.Dir, rc.Advertise = nf.UUID, d.paths.RaftDir(), adv
	rc.Log = d.log.With("component", "raft")
	stream := rpcsec.NewStreamLayer(mux, id, adv)
	return raftnode.Open(rc, d.fsm, stream, d.onLeader)
}

func (d *Daemon) startGossip(nf *NodeFile) {
	raw, err := os.ReadFile(d.paths.GossipKey())
	var key []byte
	if err == nil {
		key, err = parseGossipKey(raw)
	}
	if err == nil {
		var g *raftnode.Gossip
		g, err = raftnode.StartGossip(raftnode.GossipConfig{
			Name: nf.Name, BindIP: nf.PrimaryIP, Port: nf.GossipPort,
			Key: key, Log: d.log.With("component", "gossip")})
		if err == nil {
			d.gossip = g
			go d.joinGossip(nf.Seeds)
			return
		}
	}
	// Gossip only feeds the alive column; the node works without it.
	d.log.Warn("gossip not started", "err", err)
}

// joinGossip contacts the seeds, then keeps contacting the nodes of
// the configuration that gossip does not see alive: after a restart the
// configuration is only known once Raft has replayed it, and a node
// that was down when others started must be found again.
func (d *Daemon) joinGossip(seeds []string) {
	if _, err := d.gossip.Join(seeds); err != nil {
		d.log.Debug("gossip join", "err", err)
	}
	t := time.NewTicker(gossipRejoin)
	defer t.Stop()
	for range t.C {
		d.mu.Lock()
		g, r := d.gossip, d.raft
		d.mu.Unlock()
		if g == nil || r == nil || r.State() == "Shutdown" {
			return
		}
		alive := g.Alive()
		var missing []string
		for _, n := range d.fsm.State().Nodes {
			if !alive[n.Name] && !n.Offline {
				missing = append(missing, n.GossipAddr())
			}
		}
		if _, err := g.Join(missing); err != nil {
			d.log.Debug("gossip rejoin", "err", err)
		}
	}
}

// gossipRejoin is how often a node looks for members gossip lost.
const gossipRejoin = 3 * time.Second

// admissionRecord is admission.json.
type admissionRecord struct {
	Index uint64            `json:"index"`
	Map   map[string]string `json:"map"`
}

func (d *Daemon) loadAdmission() (uint64, map[string]string, error) {
	data, err := os.ReadFile(d.paths.AdmissionFile())
	if err == nil {
		var r admissionRecord
		if err := json.Unmarshal(data, &r); err != nil {
			return 0, nil, fmt.Errorf("parsing %q: %w", d.paths.AdmissionFile(), err)
		}
		return r.Index, r.Map, nil
	}
	seed, err := os.ReadFile(d.paths.StateDir() + "/" + fsm.SsconfPrefix +
		"master_candidates_certs")
	if err != nil {
		return 0, nil, fmt.Errorf("no candidate map: neither %q nor ssconf: %w",
			d.paths.AdmissionFile(), err)
	}
	m, err := fsm.ParseCandidateCerts(string(seed))
	return 0, m, err
}

// observe runs on Raft's apply goroutine after every applied entry or
// restore. Older states (a snapshot restored at start-up before the
// log is replayed) never replace newer admission data or ssconf.
func (d *Daemon) observe(s *fsm.State) {
	if !d.applied.advance(s.Index) {
		return
	}
	if s.Initialised() {
		d.adm.Set(s.CandidateMap)
		// Only now does status report this index as applied: the master
		// waits on it before it calls a revocation done.
		d.admitted.Store(s.Index)
		rec, _ := json.Marshal(admissionRecord{Index: s.Index, Map: s.CandidateMap})
		if err := atomicfile.Write(d.paths.AdmissionFile(), rec, 0o644); err != nil {
			d.log.Error("writing admission record failed", "err", err)
		}
		if err := fsm.WriteSsconf(d.paths.StateDir(), fsm.Ssconf(s)); err != nil {
			d.log.Error("writing ssconf failed", "err", err)
		}
	}
	d.applied.broadcast()
}

// appliedIndex tracks the highest index observed and wakes waiters.
type appliedIndex struct {
	mu    sync.Mutex
	index uint64
	ch    chan struct{}
}

func (a *appliedIndex) init() { a.ch = make(chan struct{}) }

func (a *appliedIndex) setFloor(i uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if i > a.index {
		a.index = i
	}
}

// advance records i and reports whether it is not older than what was
// seen; equal counts, so re-applying the same state is harmless.
func (a *appliedIndex) advance(i uint64) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if i < a.index {
		return false
	}
	a.index = i
	return true
}

func (a *appliedIndex) broadcast() {
	a.mu.Lock()
	defer a.mu.Unlock()
	close(a.ch)
	a.ch = make(chan struct{})
}

// waitUntil returns once done reports true, checked after every
// applied entry, or when ctx ends.
func (a *appliedIndex) waitUntil(ctx context.Context, done func() bool) {
	for {
		_, ch := a.get()
		if done() {
			return
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return
		}
	}
}

func (a *appliedIndex) get() (uint64, <-chan struct{}) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.index, a.ch
}
