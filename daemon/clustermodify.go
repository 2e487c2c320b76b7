package daemon

import (
	"context"
	"fmt"
	"strings"

	"ganeti-node/fsm"
)

// OpClusterModify changes cluster-wide settings.
const OpClusterModify = "cluster-modify"

// ClusterModifyArgs are the arguments of `cluster modify`; nil fields
// are left unchanged.
type ClusterModifyArgs struct {
	MasterCapabilityRapiModifiable *bool `json:"master_capability_rapi_modifiable,omitempty"`
	CandidatePoolSize              *int  `json:"candidate_pool_size,omitempty"`
	ModifySSHSetup                 *bool `json:"modify_ssh_setup,omitempty"`
}

// clusterModify applies cluster-wide settings. A change of the rapi
// flag changes who is a potential candidate, so the master first
// rebuilds its ganeti_pub_keys from keys fetched over SSH and pushes it
// to the new set of potential candidates, and only then commits.
func (d *Daemon) clusterModify(ctx context.Context, a ClusterModifyArgs) (*OpResult, error) {
	s := d.fsm.State()
	next := s.Cluster
	var msgs []string
	if v := a.MasterCapabilityRapiModifiable; v != nil && *v != next.MasterCapabilityRapiModifiable {
		next.MasterCapabilityRapiModifiable = *v
		msgs = append(msgs, fmt.Sprintf("master_capability_rapi_modifiable=%t", *v))
	}
	if v := a.CandidatePoolSize; v != nil && *v != next.CandidatePoolSize {
		if *v < 1 {
			return nil, fmt.Errorf("candidate pool size %d is below 1", *v)
		}
		next.CandidatePoolSize = *v
		msgs = append(msgs, fmt.Sprintf("candidate_pool_size=%d", *v))
	}
	if v := a.ModifySSHSetup; v != nil && *v != next.ModifySSHSetup {
		if *v {
			// Management starts from keys only the nodes can make.
			return nil, fmt.Errorf("switching SSH management on gives " +
				"every node its own key pair: run `ganeti-node cluster " +
				"renew-crypto --new-ssh-keys --enable-ssh-management`; " +
				"nothing was changed")
		}
		next.ModifySSHSetup = false
		msgs = append(msgs, "modify_ssh_setup=false (SSH keys and "+
			"authorized_keys are no longer managed; lines marked "+
			"ganeti-node:<uuid> stay until removed by hand)")
	}
	if len(msgs) == 0 {
		return &OpResult{Message: "cluster unchanged"}, nil
	}
	if next.MasterCapabilityRapiModifiable != s.Cluster.MasterCapabilityRapiModifiable {
		if err := d.rebuildPubKeys(ctx, s, next); err != nil {
			return nil, err
		}
	}
	changes := []fsm.Change{{Op: fsm.OpPutCluster, Cluster: &next}}
	fill, err := d.fillPool(ctx, s, next.CandidatePoolSize)
	if err != nil {
		return nil, err
	}
	changes = append(changes, fill...)
	return d.commitRoles(ctx, changes, "cluster modified: "+strings.Join(msgs, ", "))
}

// rebuildPubKeys makes the master's ganeti_pub_keys hold exactly the
// potential candidates of the cluster as it will be with settings c,
// fetching keys it lacks from the nodes themselves, and pushes the file
// to every potential candidate before anything is committed.
func (d *Daemon) rebuildPubKeys(ctx context.Context, s *fsm.State, c fsm.Cluster) error {
	if !s.Cluster.ModifySSHSetup {
		return nil
	}
	future := s.Clone()
	future.Cluster = c
	k, err := d.readKeySet()
	if err != nil {
		return err
	}
	for _, n := range future.SortedNodes() {
		potential := future.PotentialCandidate(n)
		has := false
		for _, e := range k.entries {
			has = has || e.UUID == n.UUID
		}
		if potential && !has {
			if err := d.refreshPubKey(ctx, future, n, true); err != nil {
				return err
			}
		} else if !potential && has {
			var undos []func()
			if err := d.setOwnPubKeys(n.UUID, nil, &undos); err != nil {
				return err
			}
		}
	}
	if failed := d.pushTo(ctx, nil, future, future.SortedNodes()); len(failed) > 0 {
		return fmt.Errorf("could not update ganeti_pub_keys on %s; nothing was "+
			"committed, retry when they are reachable", strings.Join(failed, ", "))
	}
	return nil
}

// fillPool returns the changes that promote master-capable regular
// nodes until the cluster has size candidates (if it can).
func (d *Daemon) fillPool(ctx context.Context, s *fsm.State, size int) ([]fsm.Change, error) {
	var out []fsm.Change
	missing := size - len(s.Candidates())
	for _, n := range s.SortedNodes() {
		if missing <= 0 {
			break
		}
		if n.MasterCandidate || !n.MasterCapable || n.Offline || n.Drained {
			continue
		}
		ch, err := d.promotionChanges(ctx, s, n)
		if err != nil {
			return nil, fmt.Errorf("filling the candidate pool with %s: %w", n.Name, err)
		}
		out = append(out, ch...)
		missing--
	}
	return out, nil
}
