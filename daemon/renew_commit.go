package daemon

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"ganeti-node/fsm"
	"ganeti-node/sshdist"
)

// recordKeys takes the new public keys from the install answers and
// makes them the master's ganeti_pub_keys entries of the potential
// candidates. A node that got no new key keeps its entries, so the
// push keeps authorising the key it still has.
func (r *renewRun) recordKeys() error {
	k, err := r.d.readKeySet()
	if err != nil {
		return err
	}
	fresh := map[string]ssh.PublicKey{}
	for _, n := range r.s.SortedNodes() {
		st := r.status[n.UUID]
		if st.installed == nil {
			continue
		}
		key, _, _, _, err := ssh.ParseAuthorizedKey([]byte(st.installed.SSHPublicKey))
		if err != nil {
			st.failed = fmt.Errorf("it sent an unusable key: %w", err)
			continue
		}
		st.newKey, fresh[n.UUID] = key, key
		r.mark(n.UUID, "new "+r.a.SSHKeyType+" SSH key")
	}
	var next []sshdist.PubKeyEntry
	for _, e := range k.entries {
		if fresh[e.UUID] == nil {
			next = append(next, e)
		}
	}
	for _, n := range r.s.SortedNodes() {
		if key := fresh[n.UUID]; key != nil && r.s.PotentialCandidate(n) {
			next = append(next, sshdist.PubKeyEntry{UUID: n.UUID, Key: key})
		}
	}
	return sshdist.WritePubKeys(r.d.paths.PubKeys(), next)
}

// commit writes the run's outcome as one Raft entry: the new digest
// of every candidate whose daemon uses its new certificate (the others
// keep theirs), the key type, SSH management, and the reconcile flag
// so that a new master finishes the push if this one dies.
func (r *renewRun) commit() (uint64, error) {
	var ch []fsm.Change
	if c := r.clusterChange(); c != nil {
		ch = append(ch, fsm.Change{Op: fsm.OpPutCluster, Cluster: c})
	}
	for _, n := range r.s.SortedNodes() {
		if d := r.status[n.UUID].digest; n.MasterCandidate && d != "" {
			ch = append(ch, fsm.Change{Op: fsm.OpSetCert, UUID: n.UUID, Digest: d})
		}
	}
	ch = append(ch, fsm.Change{Op: fsm.OpSetReconcilePending, Pending: true})
	return r.d.raft.Apply(&fsm.Command{Changes: ch})
}

// clusterChange returns the new cluster record, or nil when the run
// does not change it.
func (r *renewRun) clusterChange() *fsm.Cluster {
	c := r.s.Cluster
	if !r.a.NewSSHKeys {
		return nil
	}
	c.SSHKeyType = r.a.SSHKeyType
	c.ModifySSHSetup = c.ModifySSHSetup || r.a.EnableSSHManagement
	if c == r.s.Cluster {
		return nil
	}
	return &c
}

// adopt makes the master, then the other candidates, present their new
// certificates right after the commit (followers drop the old
// connections as they apply the entry), and waits until every online
// node has applied the new map; it returns the nodes that did not
// answer.
func (r *renewRun) adopt(ctx context.Context, index uint64) []string {
	if !r.a.certs() || r.certsOff {
		return nil
	}
	if st := r.status[r.me.UUID]; st.digest != "" {
		if err := r.d.reloadIdentity(); err != nil {
			r.d.log.Error("master could not load its new certificates",
				"err", err)
			st.certErr = err
		} else {
			r.mark(r.me.UUID, "new certificates")
		}
	}
	r.reloadCandidates(ctx)
	return r.d.waitApplied(ctx, r.d.fsm.State(), index)
}

// push brings every active node's files to the committed state, over
// the run's connections: authorized_keys with the new candidate keys
// alone, ganeti_pub_keys, and, to end a CA rotation in which every node
// took its new certificates, ca.pem without the old CA (each daemon
// reloads it). Nodes that fail are retried by the master later.
func (r *renewRun) push(ctx context.Context) []string {
	start := time.Now()
	rotate := r.a.NewClusterCertificate && !r.certsOff
	dropCA := rotate && r.allAdopted()
	if !r.a.NewSSHKeys && !rotate {
		return r.pendSkipped()
	}
	if dropCA {
		if err := r.dropOldCA(); err != nil {
			r.status[r.me.UUID].certErr = fmt.Errorf("dropping the old CA: %w", err)
			dropCA = false
		}
	}
	s := r.d.fsm.State()
	k, err := r.d.readKeySet()
	if err != nil {
		r.status[r.me.UUID].failed = err
		return r.pendSkipped()
	}
	nodes := r.active()
	r.fanOut(ctx, "renew push", nodes, func(n *fsm.Node) *sshdist.Request {
		return r.pushRequest(s, k, n, dropCA)
	})
	var lagging []string
	if dropCA {
		lagging = r.d.waitApplied(ctx, s, s.Index)
	}
	r.markPushed(nodes, dropCA)
	r.d.log.Info("renew push", "nodes", len(nodes), "old_ca_dropped", dropCA,
		"took", time.Since(start))
	return mergeNames(lagging, r.pendSkipped())
}

func (r *renewRun) pushRequest(s *fsm.State, k *keySet, n *fsm.Node,
	dropCA bool) *sshdist.Request {
	req, err := r.d.desired(s, k, n)
	if err != nil {
		r.status[n.UUID].failed = err
		return nil
	}
	req.Activate = dropCA && n.UUID != r.me.UUID && !n.Offline
	if req.AuthorizedKeys != nil {
		req.AuthorizedKeys.Revoke = r.replacedKeys()
	}
	return req
}

// replacedKeys lists the old keys of the nodes that got a new key pair
// in this run: they are revoked from every authorized_keys line, the
// admin's included, so neither an old generation nor a shared key of a
// migrated cluster keeps opening anything.
func (r *renewRun) replacedKeys() []string {
	var out []string
	seen := map[string]bool{}
	for _, st := range r.status {
		f := strings.Fields(st.oldKey)
		if st.newKey == nil || len(f) < 2 || seen[f[0]+" "+f[1]] {
			continue
		}
		seen[f[0]+" "+f[1]] = true
		out = append(out, f[0]+" "+f[1])
	}
	sort.Strings(out)
	return out
}

// allAdopted reports whether every active node uses its new
// certificates, which is what dropping the old CA needs.
func (r *renewRun) allAdopted() bool {
	for _, n := range r.s.SortedNodes() {
		if st := r.status[n.UUID]; st.skipped == nil && st.digest == "" {
			return false
		}
	}
	return true
}

func (r *renewRun) markPushed(nodes []*fsm.Node, dropCA bool) {
	var failed []*fsm.Node
	for _, n := range nodes {
		switch {
		case r.status[n.UUID].failed != nil:
			failed = append(failed, n)
		case dropCA:
			r.mark(n.UUID, "old CA dropped")
		}
		if r.a.NewSSHKeys && r.status[n.UUID].failed == nil {
			r.mark(n.UUID, "authorized_keys rebuilt")
		}
	}
	r.d.markPending(failed)
}

// pendSkipped hands the nodes left behind to the master's retry loop
// and returns their names.
func (r *renewRun) pendSkipped() []string {
	var skipped []*fsm.Node
	for _, n := range r.s.SortedNodes() {
		if r.status[n.UUID].skipped != nil {
			skipped = append(skipped, n)
		}
	}
	return r.d.markPending(skipped)
}
