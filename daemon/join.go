package daemon

import (
	"context"
	"errors"
	"fmt"
	"ganeti-node/raftnode"
	"net"
	"os"
	"time"

	"golang.org/x/crypto/ssh"

	"ganeti-node/fsm"
	"ganeti-node/rpcsec"
	"ganeti-node/sshdist"
)

// planJoin validates a join against the configuration and returns the
// node record it will commit (roles not decided yet).
func (d *Daemon) planJoin(s *fsm.State, a JoinArgs) (*fsm.Node, *fsm.Node, error) {
	if !fsm.ValidName(a.Name) {
		return nil, nil, fmt.Errorf("invalid node name %q: use a host-style name", a.Name)
	}
	if net.ParseIP(a.PrimaryIP) == nil {
		return nil, nil, fmt.Errorf("invalid primary IP %q: give --primary-ip", a.PrimaryIP)
	}
	old := s.NodeByName(a.Name)
	switch {
	case a.Readd && old == nil:
		return nil, nil, fmt.Errorf("node %q is not in the cluster; join it without --readd", a.Name)
	case !a.Readd && old != nil:
		return nil, nil, fmt.Errorf("node %q is already in the cluster; use --readd "+
			"to re-install it", a.Name)
	}
	for _, n := range s.Nodes {
		if n.PrimaryIP == a.PrimaryIP && n.Name != a.Name {
			return nil, nil, fmt.Errorf("primary IP %s already belongs to node %q", a.PrimaryIP, n.Name)
		}
	}
	if old != nil && old.UUID == s.Cluster.MasterNode {
		return nil, nil, errors.New("cannot re-add the master; fail over to another candidate first")
	}
	n := &fsm.Node{UUID: newUUID(), Name: a.Name, PrimaryIP: a.PrimaryIP,
		RPCPort: orDefault(a.RPCPort, DefaultRPCPort), SSHPort: orDefault(a.SSHPort, DefaultSSHPort),
		GossipPort: orDefault(a.GossipPort, DefaultGossipPort), MasterCapable: true, VMCapable: true}
	if old != nil {
		n.UUID, n.MasterCapable = old.UUID, old.MasterCapable
	}
	if a.MasterCapable != nil {
		n.MasterCapable = *a.MasterCapable
	}
	return n, old, nil
}

func orDefault(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

// joinRun holds what a join has done so far, so that a failure can
// undo it in reverse order.
type joinRun struct {
	d     *Daemon
	sess  *sshdist.Session
	node  *fsm.Node
	old   *fsm.Node
	undos []func()
}

func (j *joinRun) undo() {
	for i := len(j.undos) - 1; i >= 0; i-- {
		j.undos[i]()
	}
}

// opJoin adds a host to the cluster (DESIGN "join NODE"). The master
// does every step over SSH with its own key; a failure at any step
// undoes the earlier ones.
func (d *Daemon) opJoin(ctx context.Context, a JoinArgs) (*OpResult, error) {
	s := d.fsm.State()
	node, old, err := d.planJoin(s, a)
	if err != nil {
		return nil, err
	}
	sess, err := d.opSession()
	if err != nil {
		return nil, err
	}
	j := &joinRun{d: d, sess: sess, node: node, old: old}
	defer j.sess.Close()
	setupSSH := s.Cluster.ModifySSHSetup && !a.NoNodeSetup

	// 1-2. Reach the host (recording its host key if new), and have it
	// make its own SSH key pair and TLS keys; we get public parts only.
	resp, err := j.generate(ctx, s, a.Readd && setupSSH, setupSSH)
	if err != nil {
		return nil, fmt.Errorf("join %s: contacting the host: %w", node.Name, err)
	}
	certs, digest, err := d.signFor(node, resp)
	if err != nil {
		return nil, fmt.Errorf("join %s: signing certificates: %w", node.Name, err)
	}

	// 3. Record its SSH key if it may ever become a candidate.
	if err := j.recordKey(s, resp.SSHPublicKey); err != nil {
		return nil, fmt.Errorf("join %s: recording its SSH key: %w", node.Name, err)
	}

	// 4. Commit the node; a master-capable node becomes a candidate at
	// once while the pool is not full.
	node.MasterCandidate = node.MasterCapable &&
		otherCandidates(s, node.UUID) < s.Cluster.CandidatePoolSize
	if err := j.commit(digest); err != nil {
		j.undo()
		if errors.Is(err, raftnode.ErrNotLeader) {
			return nil, fmt.Errorf("join %s: %w", node.Name, errNotLeaderNow)
		}
		return nil, fmt.Errorf("join %s: committing: %w", node.Name, err)
	}

	// 5. Install certificates, cluster files and keys on the host and
	// start its daemon.
	if err := j.install(ctx, certs); err != nil {
		j.undo()
		return nil, fmt.Errorf("join %s: installing the node: %w", node.Name, err)
	}

	// 6. Raft membership: voter for a candidate, non-voter otherwise.
	if err := d.setSuffrage(node, wantSuffrage(node)); err != nil {
		if errors.Is(err, raftnode.ErrNotLeader) {
			// The node is committed; undoing needs the leader. The new
			// master finishes Raft membership; the host's files need a
			// re-add.
			return nil, fmt.Errorf("join %s was interrupted by a change of "+
				"master after it was committed; run `ganeti-node join --readd "+
				"--primary-ip %s %s` on the new master", node.Name, node.PrimaryIP, node.Name)
		}
		j.undo()
		return nil, fmt.Errorf("join %s: adding to raft: %w", node.Name, err)
	}

	// 7. Everybody else: new pub-key file, known_hosts, and the new
	// candidate's key if it became one.
	s = d.fsm.State()
	var others []*fsm.Node
	for _, n := range s.SortedNodes() {
		if n.UUID != node.UUID {
			others = append(others, n)
		}
	}
	unreachable := d.pushTo(ctx, j.sess, s, others)
	d.clearReconcilePending()
	role := "regular node"
	if node.MasterCandidate {
		role = "master candidate"
	}
	return &OpResult{Message: fmt.Sprintf("node %s joined as %s", node.Name, role),
		Unreachable: unreachable}, nil
}

func (j *joinRun) generate(ctx context.Context, s *fsm.State, reset, genSSH bool) (*sshdist.Response, error) {
	req := &sshdist.Request{Cluster: s.Cluster.Name, Reset: reset,
		GenerateTLS: &sshdist.TLSGen{NodeName: j.node.Name}}
	if genSSH {
		req.GenerateSSHKey = &sshdist.KeyGen{Type: s.Cluster.SSHKeyType}
	}
	return j.sess.UpdateRecordingHostKey(ctx, target(j.node), req)
}

// signFor signs the host's CSRs with the CA key, which only candidates
// (and so the master) hold. SANs come from the configuration.
func (d *Daemon) signFor(n *fsm.Node, resp *sshdist.Response) (*sshdist.Certs, string, error) {
	ca, err := d.loadCA()
	if err != nil {
		return nil, "", err
	}
	now := time.Now()
	sc, err := ca.SignServer([]byte(resp.ServerCSR), n.Name, net.ParseIP(n.PrimaryIP), now, certValidity)
	if err != nil {
		return nil, "", err
	}
	cc, err := ca.SignClient([]byte(resp.ClientCSR), n.Name, n.UUID, now, certValidity)
	if err != nil {
		return nil, "", err
	}
	digest, err := rpcsec.DigestPEM(cc)
	if err != nil {
		return nil, "", err
	}
	return &sshdist.Certs{Server: string(sc), Client: string(cc)}, digest, nil
}

func (d *Daemon) loadCA() (*rpcsec.CA, error) {
	cert, err := os.ReadFile(d.paths.CACert())
	if err != nil {
		return nil, err
	}
	key, err := os.ReadFile(d.paths.CAKey())
	if err != nil {
		return nil, fmt.Errorf("this node holds no CA key (%w); only master candidates sign", err)
	}
	return rpcsec.LoadCA(cert, key)
}

// recordKey puts the new key in the master's ganeti_pub_keys, replacing
// older keys of the same node, and registers the undo.
func (j *joinRun) recordKey(s *fsm.State, line string) error {
	if line == "" || !(j.node.MasterCapable || s.Cluster.MasterCapabilityRapiModifiable) {
		return j.d.setOwnPubKeys(j.node.UUID, nil, &j.undos)
	}
	key, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		return fmt.Errorf("host sent an unusable key: %w", err)
	}
	return j.d.setOwnPubKeys(j.node.UUID, key, &j.undos)
}

// setOwnPubKeys sets the master's ganeti_pub_keys entries for uuid to
// key (none when nil) and appends an undo that restores the file.
func (d *Daemon) setOwnPubKeys(uuid string, key ssh.PublicKey, undos *[]func()) error {
	k, err := d.readKeySet()
	if err != nil {
		return err
	}
	before := append([]sshdist.PubKeyEntry(nil), k.entries...)
	var next []sshdist.PubKeyEntry
	for _, e := range k.entries {
		if e.UUID != uuid {
			next = append(next, e)
		}
	}
	if key != nil {
		next = append(next, sshdist.PubKeyEntry{UUID: uuid, Key: key})
	}
	if len(next) == len(before) && key == nil {
		return nil
	}
	if err := sshdist.WritePubKeys(d.paths.PubKeys(), next); err != nil {
		return err
	}
	*undos = append(*undos, func() { sshdist.WritePubKeys(d.paths.PubKeys(), before) })
	return nil
}

func (j *joinRun) commit(digest string) error {
	ch := []fsm.Change{{Op: fsm.OpPutNode, Node: j.node},
		{Op: fsm.OpSetReconcilePending, Pending: true}}
	if j.node.MasterCandidate {
		ch = append(ch, fsm.Change{Op: fsm.OpSetCert, UUID: j.node.UUID, Digest: digest})
	} else if j.old != nil {
		ch = append(ch, fsm.Change{Op: fsm.OpSetCert, UUID: j.node.UUID})
	}
	if _, err := j.d.raft.Apply(&fsm.Command{Changes: ch}); err != nil {
		return err
	}
	j.undos = append(j.undos, func() {
		undo := []fsm.Change{{Op: fsm.OpRemoveNode, UUID: j.node.UUID}}
		if j.old != nil {
			undo = []fsm.Change{{Op: fsm.OpSetCert, UUID: j.node.UUID},
				{Op: fsm.OpPutNode, Node: &fsm.Node{}}}
			*undo[1].Node = *j.old
			undo[1].Node.MasterCandidate = false
		}
		if _, err := j.d.raft.Apply(&fsm.Command{Changes: undo}); err != nil {
			j.d.log.Error("undoing join commit failed", "node", j.node.Name, "err", err)
		}
	})
	return nil
}

// install sends the host everything it needs and activates its daemon.
func (j *joinRun) install(ctx context.Context, certs *sshdist.Certs) error {
	s := j.d.fsm.State()
	k, err := j.d.readKeySet()
	if err != nil {
		return err
	}
	req, err := j.d.desired(s, k, j.node)
	if err != nil {
		return err
	}
	gk, err := os.ReadFile(j.d.paths.GossipKey())
	if err != nil {
		return err
	}
	d := j.d
	d.mu.Lock()
	seed := d.node.PrimaryIP
	d.mu.Unlock()
	nf := &NodeFile{Cluster: s.Cluster.Name, UUID: j.node.UUID, Name: j.node.Name,
		PrimaryIP: j.node.PrimaryIP, RPCPort: j.node.RPCPort, GossipPort: j.node.GossipPort,
		SSHPort: j.node.SSHPort, Seeds: []string{seedAddr(s, seed)}}
	ss := fsm.Ssconf(s)
	req.InstallCerts = certs
	req.Files = append(req.Files,
		sshdist.File{Name: "gossip.key", Data: string(gk)},
		sshdist.File{Name: "node.json", Data: string(nf.encode())},
		sshdist.File{Name: "ssconf_master_candidates_certs", Data: ss["master_candidates_certs"]})
	req.Activate = true
	if _, err := j.sess.Update(ctx, target(j.node), req); err != nil {
		return err
	}
	j.undos = append(j.undos, func() { j.wipe(s.Cluster.Name) })
	return nil
}

func seedAddr(s *fsm.State, masterIP string) string {
	for _, n := range s.Nodes {
		if n.PrimaryIP == masterIP {
			return n.GossipAddr()
		}
	}
	return masterIP
}

// wipe removes what install put on the host (best effort).
func (j *joinRun) wipe(cluster string) {
	req := &sshdist.Request{Cluster: cluster, Reset: true,
		RemoveFiles: []string{"node.json", "ca-key.pem", "gossip.key", "server.pem", "client.pem"}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := j.sess.Update(ctx, target(j.node), req); err != nil {
		j.d.log.Warn("cleaning up failed join on host", "node", j.node.Name, "err", err)
	}
}

// otherCandidates counts the candidates other than uuid: a re-added
// candidate does not take its own place in the pool.
func otherCandidates(s *fsm.State, uuid string) int {
	n := 0
	for _, c := range s.Candidates() {
		if c.UUID != uuid {
			n++
		}
	}
	return n
}
