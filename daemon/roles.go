package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"ganeti-node/fsm"
	"ganeti-node/rpcsec"
	"ganeti-node/sshdist"
)

// nodeOp runs the operations that change one node's role.
func (d *Daemon) nodeOp(ctx context.Context, op string, a NodeArgs) (*OpResult, error) {
	s := d.fsm.State()
	n := s.Lookup(a.Node)
	if n == nil {
		return nil, fmt.Errorf("unknown node %q; see `ganeti-node list`", a.Node)
	}
	switch op {
	case OpPromote:
		return d.promote(ctx, s, n)
	case OpDemote, OpOffline, OpRemove, OpDrain:
		return d.revoke(ctx, op, s, n, a.AutoPromote)
	case OpUndrain:
		return d.undrain(ctx, n)
	case OpOnline:
		return d.online(ctx, s, n)
	case OpModify:
		return d.modify(ctx, s, n, a)
	case OpFailover:
		return d.failover(s, n)
	}
	return nil, fmt.Errorf("unknown operation %q", op)
}

// promote makes n a master candidate: commit the flag and its
// certificate digest, make it a Raft voter, then authorise its key
// everywhere and give it the candidate-only files.
func (d *Daemon) promote(ctx context.Context, s *fsm.State, n *fsm.Node) (*OpResult, error) {
	if n.MasterCandidate {
		return &OpResult{Message: fmt.Sprintf("node %s is already a master candidate", n.Name)}, nil
	}
	changes, err := d.promotionChanges(ctx, s, n)
	if err != nil {
		return nil, err
	}
	return d.commitRoles(ctx, changes, fmt.Sprintf("node %s promoted to master candidate", n.Name))
}

// promotionChanges checks that n may be promoted and returns the
// changes that do it. The digest comes from the node itself, over SSH.
func (d *Daemon) promotionChanges(ctx context.Context, s *fsm.State, n *fsm.Node) ([]fsm.Change, error) {
	switch {
	case !n.MasterCapable:
		return nil, fmt.Errorf("node %s is not master-capable; run "+
			"`ganeti-node modify %s --master-capable=true` first", n.Name, n.Name)
	case n.Offline:
		return nil, fmt.Errorf("node %s is offline; run `ganeti-node online %s` first", n.Name, n.Name)
	case n.Drained:
		return nil, fmt.Errorf("node %s is drained and cannot be a master candidate", n.Name)
	}
	if s.Cluster.ModifySSHSetup {
		k, err := d.readKeySet()
		if err != nil {
			return nil, err
		}
		if len(sshdist.KeysFor(k.entries, n.UUID)) == 0 {
			return nil, fmt.Errorf("the SSH key of node %s is not in the master's "+
				"ganeti_pub_keys; re-add it with `ganeti-node join --readd %s`", n.Name, n.Name)
		}
	}
	digest, err := d.fetchClientDigest(ctx, n)
	if err != nil {
		return nil, fmt.Errorf("reading the client certificate of %s: %w", n.Name, err)
	}
	p := *n
	p.MasterCandidate, p.WasCandidate = true, false
	return []fsm.Change{{Op: fsm.OpPutNode, Node: &p},
		{Op: fsm.OpSetCert, UUID: n.UUID, Digest: digest}}, nil
}

// fetchClientDigest asks the node, over SSH, for its client certificate.
func (d *Daemon) fetchClientDigest(ctx context.Context, n *fsm.Node) (string, error) {
	sess, err := d.opSession()
	if err != nil {
		return "", err
	}
	defer sess.Close()
	resp, err := sess.Update(ctx, target(n), &sshdist.Request{
		Cluster: d.fsm.State().Cluster.Name, Report: true})
	if err != nil {
		return "", err
	}
	if resp.Report == nil || resp.Report.ClientCert == "" {
		return "", errors.New("the node reported no client certificate")
	}
	return rpcsec.DigestPEM([]byte(resp.Report.ClientCert))
}

// revoke demotes, offlines or removes n: revocation is committed and
// applied everywhere reachable before any clean-up (DESIGN invariant 5).
func (d *Daemon) revoke(ctx context.Context, op string, s *fsm.State, n *fsm.Node,
	autoPromote bool) (*OpResult, error) {
	if n.UUID == s.Cluster.MasterNode {
		return nil, fmt.Errorf("node %s is the master; run `ganeti-node cluster "+
			"failover` on another candidate first", n.Name)
	}
	if (op == OpDemote && !n.MasterCandidate) || (op == OpOffline && n.Offline) ||
		(op == OpDrain && n.Drained) {
		// An earlier attempt may have committed and been cut off: the
		// answer waits, like a fresh one, until every reachable node
		// has applied the configuration.
		msg := fmt.Sprintf("node %s is not a master candidate", n.Name)
		switch op {
		case OpOffline:
			msg = fmt.Sprintf("node %s is already offline", n.Name)
		case OpDrain:
			msg = fmt.Sprintf("node %s is already drained", n.Name)
		}
		return &OpResult{Message: msg, Unreachable: d.waitApplied(ctx, s, s.Index)}, nil
	}
	changes := revokeChanges(op, n)
	if n.MasterCandidate {
		extra, err := d.replacement(ctx, s, n, autoPromote)
		if err != nil {
			return nil, err
		}
		changes = append(changes, extra...)
	}
	if op == OpRemove {
		var undos []func()
		if err := d.setOwnPubKeys(n.UUID, nil, &undos); err != nil {
			return nil, err
		}
	}
	res, err := d.commitRoles(ctx, changes, revokeMessage(op, n))
	if err == nil && op == OpRemove {
		d.wipeRemoved(ctx, s, n)
	}
	return res, err
}

func revokeChanges(op string, n *fsm.Node) []fsm.Change {
	if op == OpRemove {
		return []fsm.Change{{Op: fsm.OpRemoveNode, UUID: n.UUID}}
	}
	p := *n
	if op == OpOffline {
		p.Offline, p.WasCandidate = true, n.MasterCandidate
	}
	if op == OpDrain {
		p.Drained = true
	}
	p.MasterCandidate = false
	return []fsm.Change{{Op: fsm.OpPutNode, Node: &p},
		{Op: fsm.OpSetCert, UUID: n.UUID}}
}

func revokeMessage(op string, n *fsm.Node) string {
	switch op {
	case OpDemote:
		return fmt.Sprintf("node %s demoted to regular node", n.Name)
	case OpOffline:
		return fmt.Sprintf("node %s is offline", n.Name)
	case OpDrain:
		return fmt.Sprintf("node %s is drained", n.Name)
	}
	return fmt.Sprintf("node %s removed", n.Name)
}

// replacement returns the changes that keep the pool filled when n
// stops being a candidate, or an error if that is needed and not
// allowed.
func (d *Daemon) replacement(ctx context.Context, s *fsm.State, n *fsm.Node,
	autoPromote bool) ([]fsm.Change, error) {
	left := len(s.Candidates()) - 1
	if left >= s.Cluster.CandidatePoolSize {
		return nil, nil
	}
	var pick *fsm.Node
	for _, c := range s.SortedNodes() {
		if c.UUID != n.UUID && !c.MasterCandidate && c.MasterCapable && !c.Offline && !c.Drained {
			pick = c
			break
		}
	}
	if pick == nil {
		return nil, nil
	}
	if !autoPromote {
		return nil, fmt.Errorf("this would leave %d master candidates, fewer than the "+
			"pool size %d, while %s could be promoted; add --auto-promote",
			left, s.Cluster.CandidatePoolSize, pick.Name)
	}
	return d.promotionChanges(ctx, s, pick)
}

// commitRoles commits changes in one entry, waits until every
// reachable node applied it, fixes Raft membership, and then brings
// every node's SSH files in line.
func (d *Daemon) commitRoles(ctx context.Context, changes []fsm.Change, msg string) (*OpResult, error) {
	changes = append(changes, fsm.Change{Op: fsm.OpSetReconcilePending, Pending: true})
	index, err := d.raft.Apply(&fsm.Command{Changes: changes})
	if err != nil {
		return nil, err
	}
	s := d.fsm.State()
	lagging := d.waitApplied(ctx, s, index)
	d.reconcileRaft(s)
	unreachable := d.reconcileAll(ctx, nil)
	d.clearReconcilePending()
	return &OpResult{Message: msg, Unreachable: mergeNames(lagging, unreachable)}, nil
}

func mergeNames(a, b []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, n := range append(a, b...) {
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// waitApplied polls every other online node over the secured RPC until
// it has applied index, and returns the nodes that did not answer in
// time. From then on their listeners use the new candidate map.
func (d *Daemon) waitApplied(ctx context.Context, s *fsm.State, index uint64) []string {
	d.mu.Lock()
	id, me := d.id, d.node.UUID
	d.mu.Unlock()
	client := rpcsec.HTTPClient(id, 2*time.Second)
	// A node outside the Raft configuration (being onlined) cannot
	// apply anything until it is added back, which comes next.
	members, err := d.raft.Servers()
	if err != nil {
		members = nil
	}
	var mu sync.Mutex
	var lagging []string
	var wg sync.WaitGroup
	for _, n := range s.SortedNodes() {
		if _, in := members[n.UUID]; n.UUID == me || n.Offline || (members != nil && !in) {
			continue
		}
		wg.Add(1)
		go func(n *fsm.Node) {
			defer wg.Done()
			if !pollApplied(ctx, client, n.RPCAddr(), index) {
				mu.Lock()
				lagging = append(lagging, n.Name)
				mu.Unlock()
			}
		}(n)
	}
	wg.Wait()
	return lagging
}

// pollApplied asks the node at addr to answer once it has applied
// index, for at most 5 s.
func pollApplied(ctx context.Context, c *http.Client, addr string, index uint64) bool {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		st, err := fetchStatusAt(ctx, c, addr, index)
		if err == nil && st.AppliedIndex >= index {
			return true
		}
		// Refused, or the node answered early: ask again shortly.
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
	return false
}

// online brings an offline node back; it becomes a candidate again if
// it was one and the pool has room.
func (d *Daemon) online(ctx context.Context, s *fsm.State, n *fsm.Node) (*OpResult, error) {
	if !n.Offline {
		return &OpResult{Message: fmt.Sprintf("node %s is already online", n.Name)}, nil
	}
	p := *n
	p.Offline = false
	changes := []fsm.Change{{Op: fsm.OpPutNode, Node: &p}}
	msg := fmt.Sprintf("node %s is online", n.Name)
	if n.WasCandidate && len(s.Candidates()) < s.Cluster.CandidatePoolSize {
		tmp := s.Clone()
		tmp.Nodes[n.UUID].Offline = false
		pc, err := d.promotionChanges(ctx, tmp, tmp.Nodes[n.UUID])
		if err != nil {
			return nil, err
		}
		changes = pc
		msg += " and a master candidate again"
	}
	return d.commitRoles(ctx, changes, msg)
}

// modify changes the master-capable flag. Potential candidates change
// with it, so ganeti_pub_keys is rebuilt before the change is
// committed and pushed after.
func (d *Daemon) modify(ctx context.Context, s *fsm.State, n *fsm.Node, a NodeArgs) (*OpResult, error) {
	if a.MasterCapable == nil {
		return nil, errors.New("nothing to modify: give --master-capable")
	}
	want := *a.MasterCapable
	if n.MasterCapable == want {
		return &OpResult{Message: fmt.Sprintf("node %s unchanged", n.Name)}, nil
	}
	if !want && n.MasterCandidate {
		return nil, fmt.Errorf("node %s is a master candidate; demote it first", n.Name)
	}
	if err := d.refreshPubKey(ctx, s, n, want); err != nil {
		return nil, err
	}
	p := *n
	p.MasterCapable = want
	return d.commitRoles(ctx, []fsm.Change{{Op: fsm.OpPutNode, Node: &p}},
		fmt.Sprintf("node %s: master_capable=%t", n.Name, want))
}

// refreshPubKey fetches n's SSH key over SSH (never from a request) and
// records or drops it in the master's ganeti_pub_keys.
func (d *Daemon) refreshPubKey(ctx context.Context, s *fsm.State, n *fsm.Node, potential bool) error {
	var undos []func()
	if !s.Cluster.ModifySSHSetup {
		return nil
	}
	if !potential && !s.Cluster.MasterCapabilityRapiModifiable {
		return d.setOwnPubKeys(n.UUID, nil, &undos)
	}
	sess, err := d.opSession()
	if err != nil {
		return err
	}
	defer sess.Close()
	resp, err := sess.Update(ctx, target(n), &sshdist.Request{Cluster: s.Cluster.Name, Report: true})
	if err != nil {
		return fmt.Errorf("fetching the SSH key of %s: %w", n.Name, err)
	}
	if resp.Report == nil || resp.Report.PublicKey == "" {
		return fmt.Errorf("node %s reported no SSH key", n.Name)
	}
	key, _, _, _, err := ssh.ParseAuthorizedKey([]byte(resp.Report.PublicKey))
	if err != nil {
		return fmt.Errorf("node %s sent an unusable key: %w", n.Name, err)
	}
	return d.setOwnPubKeys(n.UUID, key, &undos)
}

// failover hands leadership to n, which must be a candidate.
func (d *Daemon) failover(s *fsm.State, n *fsm.Node) (*OpResult, error) {
	if !n.MasterCandidate {
		return nil, fmt.Errorf("node %s is not a master candidate", n.Name)
	}
	if n.UUID == s.Cluster.MasterNode && d.isLeader() {
		return &OpResult{Message: fmt.Sprintf("node %s is already the master", n.Name)}, nil
	}
	if err := d.raft.TransferLeadership(n.UUID, n.RPCAddr()); err != nil {
		return nil, fmt.Errorf("handing leadership to %s: %w", n.Name, err)
	}
	return &OpResult{Message: fmt.Sprintf("node %s is the master now", n.Name)}, nil
}

// wipeRemoved clears a removed node's cluster files (best effort).
func (d *Daemon) wipeRemoved(ctx context.Context, s *fsm.State, n *fsm.Node) {
	sess, err := d.opSession()
	if err != nil {
		return
	}
	defer sess.Close()
	j := &joinRun{d: d, node: n, sess: sess}
	j.wipe(s.Cluster.Name)
	d.forgetSSHHost(n.SSHAddr())
}

// undrain clears the drained flag; like Ganeti it does not promote.
func (d *Daemon) undrain(ctx context.Context, n *fsm.Node) (*OpResult, error) {
	if !n.Drained {
		return &OpResult{Message: fmt.Sprintf("node %s is not drained", n.Name)}, nil
	}
	p := *n
	p.Drained = false
	return d.commitRoles(ctx, []fsm.Change{{Op: fsm.OpPutNode, Node: &p}},
		fmt.Sprintf("node %s is no longer drained", n.Name))
}
