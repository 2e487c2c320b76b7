package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"ganeti-node/atomicfile"
	"ganeti-node/rpcsec"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"ganeti-node/fsm"
	"ganeti-node/sshdist"
)

// sshClient builds the master's SSH client: its own key, the cluster's
// known_hosts (required: trust is never optional), bounded parallelism.
func (d *Daemon) sshClient() (*sshdist.Client, error) {
	return d.sshClientWith(5*time.Second, sshdist.DefaultClientConfig().OpTimeout)
}

// sshClientWith is sshClient with the given connect and per-request
// time-outs.
func (d *Daemon) sshClientWith(connect, op time.Duration) (*sshdist.Client, error) {
	cfg := sshdist.DefaultClientConfig()
	cfg.KeyDir = d.paths.SSHDir()
	cfg.KnownHostsPath = d.paths.KnownHosts()
	cfg.RemoteCommand = d.cfg.RemoteCommand
	cfg.ConnectTimeout, cfg.OpTimeout = connect, op
	cfg.Concurrency = d.cfg.SSHConcurrency
	cfg.Log = d.log.With("component", "ssh")
	return sshdist.NewClient(cfg)
}

func target(n *fsm.Node) sshdist.Target {
	return sshdist.Target{Name: n.Name, Addr: n.SSHAddr()}
}

// keySet is what the master knows about SSH keys for one operation:
// its ganeti_pub_keys, read from its own disk.
type keySet struct {
	entries []sshdist.PubKeyEntry
}

func (d *Daemon) readKeySet() (*keySet, error) {
	e, err := sshdist.ReadPubKeys(d.paths.PubKeys())
	if errors.Is(err, sshdist.ErrNoPubKeysFile) {
		return &keySet{}, nil
	}
	if err != nil {
		return nil, err
	}
	return &keySet{entries: e}, nil
}

// candidateKeys returns the keys that belong in every authorized_keys:
// those in the master's ganeti_pub_keys whose node is a current master
// candidate in s (invariant 2, checked here where the SSH work is done).
func (k *keySet) candidateKeys(s *fsm.State) []sshdist.KeyEntry {
	var out []sshdist.KeyEntry
	for _, e := range k.entries {
		if n := s.Nodes[e.UUID]; n != nil && n.MasterCandidate {
			out = append(out, keyEntry(e))
		}
	}
	return out
}

// potentialKeys returns the entries of potential master candidates:
// the content of ganeti_pub_keys on every potential candidate.
func (k *keySet) potentialKeys(s *fsm.State) []sshdist.KeyEntry {
	var out []sshdist.KeyEntry
	for _, e := range k.entries {
		if n := s.Nodes[e.UUID]; n != nil && s.PotentialCandidate(n) {
			out = append(out, keyEntry(e))
		}
	}
	return out
}

func keyEntry(e sshdist.PubKeyEntry) sshdist.KeyEntry {
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(e.Key)))
	return sshdist.KeyEntry{UUID: e.UUID, Key: line}
}

// desired returns the ssh-update request that brings node n to what
// the configuration s says: the candidates' keys authorised, the
// pub-key file on potential candidates only, the CA key on candidates
// only, and the cluster's known_hosts and CA certificate.
func (d *Daemon) desired(s *fsm.State, k *keySet, n *fsm.Node) (*sshdist.Request, error) {
	req := &sshdist.Request{Cluster: s.Cluster.Name}
	kh, err := os.ReadFile(d.paths.KnownHosts())
	if err != nil {
		return nil, fmt.Errorf("reading known_hosts: %w", err)
	}
	ca, err := os.ReadFile(d.paths.CACert())
	if err != nil {
		return nil, fmt.Errorf("reading CA certificate: %w", err)
	}
	req.KnownHosts = string(kh)
	req.Files = []sshdist.File{{Name: "ca.pem", Data: string(ca)}}
	if n.MasterCandidate {
		// A master that never got the CA key (it missed its promotion's
		// fan-out) still updates everything else; the key is held back.
		key, err := os.ReadFile(d.paths.CAKey())
		if err == nil {
			req.Files = append(req.Files, sshdist.File{Name: "ca-key.pem", Data: string(key)})
		} else {
			d.log.Warn("no CA key on the master to hand to a candidate",
				"node", n.Name, "err", err)
		}
	} else {
		req.RemoveFiles = []string{"ca-key.pem"}
	}
	files, remove, err := d.rapiFiles(n)
	if err != nil {
		return nil, err
	}
	req.Files = append(req.Files, files...)
	req.RemoveFiles = append(req.RemoveFiles, remove...)
	if s.Cluster.ModifySSHSetup {
		req.AuthorizedKeys = &sshdist.AuthKeysOp{
			File: s.Cluster.AuthorizedKeysFile, Keys: k.candidateKeys(s)}
		if s.PotentialCandidate(n) {
			req.PubKeys = &sshdist.PubKeysOp{Entries: k.potentialKeys(s)}
		} else {
			req.PubKeys = &sshdist.PubKeysOp{Remove: true}
		}
	}
	return req, nil
}

// reconcileAll brings the given nodes (all nodes when uuids is nil) in
// line with the committed configuration over SSH, in parallel. Nodes
// that fail are remembered and retried by the leader; their names are
// returned.
func (d *Daemon) reconcileAll(ctx context.Context, uuids []string) []string {
	s := d.fsm.State()
	nodes := s.SortedNodes()
	if uuids != nil {
		nodes = nil
		for _, id := range uuids {
			if n := s.Nodes[id]; n != nil {
				nodes = append(nodes, n)
			}
			d.clearPending(id)
		}
	}
	return d.pushTo(ctx, nil, s, nodes)
}

// pushTo sends each node its desired state, reusing sess when given.
func (d *Daemon) pushTo(ctx context.Context, sess *sshdist.Session,
	s *fsm.State, nodes []*fsm.Node) []string {
	if len(nodes) == 0 {
		return nil
	}
	k, err := d.readKeySet()
	if err != nil {
		d.log.Error("reading ganeti_pub_keys failed", "err", err)
		return d.markPending(nodes)
	}
	if sess == nil {
		sess, err = d.opSession()
		if err != nil {
			d.log.Error("ssh client unavailable", "err", err)
			return d.markPending(nodes)
		}
		defer sess.Close()
	}
	d.ensureCAKey(ctx, sess, s)
	d.ensurePins(ctx, sess, s, nodes)
	reqs := map[string]*sshdist.Request{}
	var targets []sshdist.Target
	var failed []*fsm.Node
	var sent []*fsm.Node
	me := d.self(s)
	for _, n := range nodes {
		req, err := d.desired(s, k, n)
		if err != nil {
			// One node's trouble holds back only that node.
			d.log.Error("building node update failed", "node", n.Name, "err", err)
			failed = append(failed, n)
			continue
		}
		if me != nil && n.UUID == me.UUID {
			// The master's own files are set locally: it cannot count
			// on its own key being authorised on itself (a promotion
			// whose fan-out it missed).
			if err := d.updateSelf(req); err != nil {
				d.log.Warn("own files not updated; will retry", "err", err)
				failed = append(failed, n)
			}
			continue
		}
		reqs[n.Name] = req
		targets = append(targets, target(n))
		sent = append(sent, n)
	}
	rep := reportFrom(ctx)
	rep.watch(sess, "update", len(targets))
	results := sess.FanOut(ctx, "reconcile", targets,
		func(t sshdist.Target) *sshdist.Request { return reqs[t.Name] })
	rep.add(results)
	for i, r := range results {
		if r.Err != nil {
			d.log.Warn("node not updated; will retry", "node", sent[i].Name, "err", r.Err)
			failed = append(failed, sent[i])
		}
	}
	return d.markPending(failed)
}

func (d *Daemon) markPending(nodes []*fsm.Node) []string {
	d.pendingMu.Lock()
	defer d.pendingMu.Unlock()
	var names []string
	for _, n := range nodes {
		d.pending[n.UUID] = true
		names = append(names, n.Name)
	}
	sort.Strings(names)
	return names
}

func (d *Daemon) clearPending(uuid string) {
	d.pendingMu.Lock()
	delete(d.pending, uuid)
	d.pendingMu.Unlock()
}

func (d *Daemon) pendingCount() int {
	d.pendingMu.Lock()
	defer d.pendingMu.Unlock()
	return len(d.pending)
}

func (d *Daemon) pendingNodes() []string {
	d.pendingMu.Lock()
	defer d.pendingMu.Unlock()
	out := make([]string, 0, len(d.pending))
	for id := range d.pending {
		out = append(out, id)
	}
	return out
}

// reconcileRaft makes Raft membership follow the configuration:
// candidates are voters, other online nodes non-voters, offline and
// removed nodes out.
func (d *Daemon) reconcileRaft(s *fsm.State) {
	servers, err := d.raft.Servers()
	if err != nil {
		d.log.Warn("reading raft configuration failed", "err", err)
		return
	}
	for _, n := range s.SortedNodes() {
		want := wantSuffrage(n)
		if servers[n.UUID] == want {
			continue
		}
		if err := d.setSuffrage(n, want); err != nil {
			d.log.Warn("raft membership change failed", "node", n.Name, "err", err)
		}
	}
	for id := range servers {
		if s.Nodes[id] == nil {
			if err := d.raft.Remove(id); err != nil {
				d.log.Warn("removing stale raft server failed", "id", id, "err", err)
			}
		}
	}
}

func wantSuffrage(n *fsm.Node) string {
	switch {
	case n.MasterCandidate:
		return "voter"
	case n.Offline:
		return "none"
	}
	return "nonvoter"
}

func (d *Daemon) setSuffrage(n *fsm.Node, want string) error {
	servers, err := d.raft.Servers()
	if err != nil {
		return err
	}
	have := servers[n.UUID]
	switch {
	case want == "voter":
		return d.raft.AddVoter(n.UUID, n.RPCAddr())
	case want == "nonvoter" && have == "voter":
		return d.raft.Demote(n.UUID)
	case want == "nonvoter":
		return d.raft.AddNonvoter(n.UUID, n.RPCAddr())
	case have != "":
		return d.raft.Remove(n.UUID)
	}
	return nil
}

// ensureCAKey gives a master that lacks the CA key (it missed the
// fan-out of its own promotion) a copy from another candidate, over
// SSH, checked against the cluster CA certificate before it is kept.
func (d *Daemon) ensureCAKey(ctx context.Context, sess *sshdist.Session, s *fsm.State) {
	if _, err := os.Stat(d.paths.CAKey()); err == nil {
		return
	}
	cert, err := os.ReadFile(d.paths.CACert())
	if err != nil {
		return
	}
	me := d.self(s)
	for _, n := range s.Candidates() {
		if me != nil && n.UUID == me.UUID {
			continue
		}
		resp, err := sess.Update(ctx, target(n),
			&sshdist.Request{Cluster: s.Cluster.Name, ReadCAKey: true})
		if err != nil || resp.CAKey == "" {
			continue
		}
		if _, err := rpcsec.LoadCA(cert, []byte(resp.CAKey)); err != nil {
			d.log.Warn("candidate's CA key does not match the CA", "node", n.Name, "err", err)
			continue
		}
		if err := atomicfile.Write(d.paths.CAKey(), []byte(resp.CAKey), 0o600); err == nil {
			d.log.Info("took the CA key from another candidate", "node", n.Name)
			return
		}
	}
}

// updateSelf applies an ssh-update request to this node in-process,
// through the same code the remote helper runs.
func (d *Daemon) updateSelf(req *sshdist.Request) error {
	data, err := json.Marshal(req)
	if err != nil {
		return err
	}
	env := sshdist.Env{Root: d.paths.Root, Now: time.Now, NewCSR: rpcsec.NewKeyAndCSR}
	return sshdist.ServeUpdate(env, bytes.NewReader(data), io.Discard)
}

// ensurePins takes from other candidates the known_hosts pins this
// master lacks for nodes it is about to update. A master that lost
// leadership between committing a join and pushing known_hosts leaves
// the new host pinned on itself alone; without this its successor
// could never reach that host. Candidates are trusted with pins as
// they are with the CA key; a pin the master has is never replaced.
func (d *Daemon) ensurePins(ctx context.Context, sess *sshdist.Session,
	s *fsm.State, nodes []*fsm.Node) {
	own, err := os.ReadFile(d.paths.KnownHosts())
	if err != nil {
		return
	}
	pins := sshdist.ParsePins(own)
	me := d.self(s)
	var missing []*fsm.Node
	skip := map[string]bool{}
	for _, n := range nodes {
		if (me == nil || n.UUID != me.UUID) && len(pins.Keys(n.SSHAddr())) == 0 {
			missing = append(missing, n)
			skip[n.UUID] = true
		}
	}
	for _, c := range s.Candidates() {
		if len(missing) == 0 {
			return
		}
		if (me != nil && c.UUID == me.UUID) || c.Offline || skip[c.UUID] {
			continue
		}
		resp, err := sess.Update(ctx, target(c),
			&sshdist.Request{Cluster: s.Cluster.Name, ReadKnownHosts: true})
		if err != nil {
			continue
		}
		theirs := sshdist.ParsePins([]byte(resp.KnownHosts))
		var still []*fsm.Node
		for _, n := range missing {
			keys := theirs.Keys(n.SSHAddr())
			if len(keys) != 1 {
				still = append(still, n)
				continue
			}
			if err := sshdist.AddKnownHost(d.paths.KnownHosts(), n.SSHAddr(), keys[0]); err != nil {
				d.log.Warn("recording a candidate's host key pin failed",
					"node", n.Name, "from", c.Name, "err", err)
				still = append(still, n)
				continue
			}
			d.log.Info("took a missing host key pin from another candidate",
				"node", n.Name, "from", c.Name,
				"fingerprint", ssh.FingerprintSHA256(keys[0]))
		}
		missing = still
	}
}

// takePins runs ensurePins for every node, for a new master: the pins
// it missed as a candidate are taken before any operation needs them.
func (d *Daemon) takePins(ctx context.Context) {
	s := d.fsm.State()
	sess, err := d.opSession()
	if err != nil {
		return
	}
	defer sess.Close()
	d.ensurePins(ctx, sess, s, s.SortedNodes())
}
