package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"ganeti-node/fsm"
	"ganeti-node/rpcsec"
	"ganeti-node/sshdist"
)

// OpRenewCrypto renews the cluster's keys and certificates.
const OpRenewCrypto = "renew-crypto"

// RenewArgs are the arguments of `cluster renew-crypto`. At least one
// of the three New* fields must be set; they combine.
type RenewArgs struct {
	// NewNodeCertificates re-issues every node's server and client
	// certificate (new keys made on the node) under the current CA and
	// rewrites the candidate map in one committed change.
	NewNodeCertificates bool `json:"new_node_certificates,omitempty"`
	// NewClusterCertificate makes a new CA and re-issues every node's
	// certificates under it; the old CA stays trusted until every node
	// holds its new certificates.
	NewClusterCertificate bool `json:"new_cluster_certificate,omitempty"`
	// NewSSHKeys gives every node a new SSH key pair (the old one is
	// backed up) and rebuilds authorized_keys and ganeti_pub_keys.
	NewSSHKeys bool `json:"new_ssh_keys,omitempty"`
	// SSHKeyType and SSHKeyBits choose the new keys; empty and 0 keep
	// the cluster's type and its default size.
	SSHKeyType string `json:"ssh_key_type,omitempty"`
	SSHKeyBits int    `json:"ssh_key_bits,omitempty"`
	// EnableSSHManagement switches SSH management on for a cluster set
	// up with --no-ssh-init (shared root key pair); with NewSSHKeys it
	// converts the cluster to per-node keys.
	EnableSSHManagement bool `json:"enable_ssh_management,omitempty"`
	// Force renews the reachable nodes when some are not, and lists
	// the others instead of refusing.
	Force bool `json:"force,omitempty"`
}

// certs reports whether node certificates are re-issued.
func (a RenewArgs) certs() bool {
	return a.NewNodeCertificates || a.NewClusterCertificate
}

// check refuses argument combinations that cannot be run on s.
func (a *RenewArgs) check(s *fsm.State) error {
	if !a.certs() && !a.NewSSHKeys {
		return errors.New("nothing to renew: give --new-node-certificates, " +
			"--new-cluster-certificate or --new-ssh-keys")
	}
	if !a.NewSSHKeys && (a.SSHKeyType != "" || a.SSHKeyBits != 0 ||
		a.EnableSSHManagement) {
		return errors.New("--ssh-key-type, --ssh-key-bits and " +
			"--enable-ssh-management only go with --new-ssh-keys")
	}
	if !a.NewSSHKeys {
		return nil
	}
	if !s.Cluster.ModifySSHSetup && !a.EnableSSHManagement {
		return errors.New("SSH management is off in this cluster " +
			"(init --no-ssh-init), so no SSH file is touched; add " +
			"--enable-ssh-management to give every node its own key " +
			"pair (see the README: migrating from a shared key)")
	}
	if a.SSHKeyType == "" {
		a.SSHKeyType = s.Cluster.SSHKeyType
	}
	return checkKeyGen(a.SSHKeyType, a.SSHKeyBits)
}

// checkKeyGen refuses a key type or size before any node is asked to
// make one, so a typo cannot fail the renewal half way.
func checkKeyGen(keyType string, bits int) error {
	if _, err := sshdist.KeyFileName(keyType); err != nil {
		return fmt.Errorf("--ssh-key-type: %w", err)
	}
	if keyType == "rsa" {
		if bits != 0 && (bits < 2048 || bits > 16384) {
			return fmt.Errorf("--ssh-key-bits %d: use 2048 to 16384 "+
				"for rsa", bits)
		}
		return nil
	}
	// Other types are cheap to make: try one.
	if _, _, err := sshdist.GenerateKeyPair(keyType, bits, ""); err != nil {
		return fmt.Errorf("--ssh-key-bits: %w", err)
	}
	return nil
}

// renewRun is one renew-crypto operation on the master: the nodes it
// works on, one SSH connection per node reused by every phase, and
// what each phase produced.
type renewRun struct {
	d      *Daemon
	a      RenewArgs
	s      *fsm.State
	me     *fsm.Node
	sess   *sshdist.Session
	id     *rpcsec.Identity
	start  time.Time
	nodes  []*fsm.Node // taking part, in name order
	status map[string]*nodeRenewal

	// TLS material made by the run.
	ca        *rpcsec.CA // the CA that signs this run's certificates
	caKey     []byte     // PEM key of a new CA; nil when not renewed
	bundle    []byte     // ca.pem trusting old and new CA meanwhile
	certsOf   map[string]*sshdist.Certs
	newDigest map[string]string
	// certsOff is set when the canary could not reload: the run goes
	// on with SSH keys only.
	certsOff bool
}

// nodeRenewal is what happened to one node, for the reply.
type nodeRenewal struct {
	node      *fsm.Node
	skipped   error // unreachable in the preflight (with --force)
	failed    error // a later phase failed; the push leaves it out
	certErr   error // its new certificates are not in use
	oldKey    string
	newKey    ssh.PublicKey
	csr       *sshdist.Response // preflight answer: CSRs, old key
	installed *sshdist.Response // install answer with the new key
	digest    string            // new client digest, once in use
	done      []string
}

// renewCrypto runs `cluster renew-crypto` (issue 7) on the leader, in
// phases that each reuse the connection opened by the preflight:
// preflight, make and sign, install and reload, commit, push, verify.
func (d *Daemon) renewCrypto(ctx context.Context,
	raw json.RawMessage) (*OpResult, error) {
	var a RenewArgs
	if err := strictUnmarshal(raw, &a); err != nil {
		return nil, err
	}
	r, err := d.newRenewRun(a)
	if err != nil {
		return nil, err
	}
	defer r.sess.Close()

	// Reach every node before changing anything. A node that cannot
	// be reached would be locked out by the rest, so it stops the run
	// here unless --force says to leave it behind.
	if err := r.preflight(ctx); err != nil {
		return nil, err
	}

	// New keys on every node, certificates signed and installed, and
	// each daemon made to load them (the master's own comes after the
	// commit, so it never presents a certificate the map lacks).
	if err := r.install(ctx); err != nil {
		return nil, err
	}

	// One committed change: new digests for every candidate that
	// uses its new certificate, the new key type, SSH management.
	index, err := r.commit()
	if err != nil {
		return nil, fmt.Errorf("committing the renewal: %w; the nodes "+
			"hold new keys that are not in use yet: run renew-crypto "+
			"again", err)
	}
	lagging := r.adopt(ctx, index)

	// Everybody gets the final files: the new candidate keys alone in
	// authorized_keys, and after a CA rotation the old CA dropped.
	unreached := r.push(ctx)
	d.clearReconcilePending()
	return r.result(mergeNames(lagging, unreached))
}

func (d *Daemon) newRenewRun(a RenewArgs) (*renewRun, error) {
	s := d.fsm.State()
	if err := a.check(s); err != nil {
		return nil, err
	}
	me := d.self(s)
	if me == nil {
		return nil, errors.New("the master is not in the configuration")
	}
	sess, err := d.opSession()
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	id := d.id
	d.mu.Unlock()
	r := &renewRun{d: d, a: a, s: s, me: me, sess: sess,
		id: id, start: time.Now(), status: map[string]*nodeRenewal{},
		certsOf:   map[string]*sshdist.Certs{},
		newDigest: map[string]string{}}
	for _, n := range s.SortedNodes() {
		r.status[n.UUID] = &nodeRenewal{node: n}
	}
	return r, nil
}

// active returns the nodes that were reached and have not failed.
func (r *renewRun) active() []*fsm.Node {
	var out []*fsm.Node
	for _, n := range r.s.SortedNodes() {
		st := r.status[n.UUID]
		if st.skipped == nil && st.failed == nil {
			out = append(out, n)
		}
	}
	return out
}

// fanOut sends build(n) to every node of nodes over the run's session
// and returns the responses; a node that fails is marked failed.
func (r *renewRun) fanOut(ctx context.Context, op string, nodes []*fsm.Node,
	build func(*fsm.Node) *sshdist.Request) map[string]*sshdist.Response {
	byName := map[string]*fsm.Node{}
	var targets []sshdist.Target
	for _, n := range nodes {
		byName[n.Name] = n
		targets = append(targets, target(n))
	}
	out := map[string]*sshdist.Response{}
	rep := reportFrom(ctx)
	rep.watch(r.sess, op, len(targets))
	results := r.sess.FanOut(ctx, op, targets,
		func(t sshdist.Target) *sshdist.Request { return build(byName[t.Name]) })
	rep.add(results)
	for _, res := range results {
		n := byName[res.Target.Name]
		switch {
		case res.Skipped:
		case res.Err != nil:
			// A helper that failed part way may still have made a
			// new key; its answer says so.
			r.status[n.UUID].failed = res.Err
			if res.Resp != nil {
				out[n.UUID] = res.Resp
			}
		default:
			out[n.UUID] = res.Resp
		}
	}
	return out
}

// mark records that step was done on node uuid.
func (r *renewRun) mark(uuid, step string) {
	st := r.status[uuid]
	st.done = append(st.done, step)
}

// result renders the per-node report. A node that failed after the
// preflight makes the operation fail, naming it, although what worked
// is committed.
func (r *renewRun) result(unreachable []string) (*OpResult, error) {
	var lines, failed []string
	for _, n := range r.s.SortedNodes() {
		st := r.status[n.UUID]
		switch {
		case st.skipped != nil:
			lines = append(lines, fmt.Sprintf("  %s: skipped: %v", n.Name, st.skipped))
			unreachable = append(unreachable, n.Name)
		case st.failed != nil || st.certErr != nil:
			failed = append(failed, fmt.Sprintf("%s (%v)", n.Name,
				errors.Join(st.failed, st.certErr)))
		default:
			lines = append(lines, fmt.Sprintf("  %s: %s", n.Name,
				strings.Join(st.done, ", ")))
		}
	}
	took := time.Since(r.start).Round(time.Millisecond)
	r.d.log.Info("renew-crypto finished", "nodes", len(r.s.Nodes),
		"failed", len(failed), "unreachable", len(unreachable), "took", took)
	if len(failed) > 0 {
		msg := strings.ReplaceAll(strings.Join(failed, "; "), "\n", " ")
		return nil, fmt.Errorf("renew-crypto failed on %s; what worked "+
			"is committed: fix them and run it again", msg)
	}
	sort.Strings(unreachable)
	msg := fmt.Sprintf("renewed %s on %d nodes in %v\n%s", r.what(),
		len(r.s.Nodes)-len(unreachable), took, strings.Join(lines, "\n"))
	if w := r.sharedKeyWarning(); w != "" {
		msg += "\n" + w
	}
	return &OpResult{Message: msg, Unreachable: mergeNames(unreachable, nil)}, nil
}

func (r *renewRun) what() string {
	var parts []string
	if r.a.NewClusterCertificate {
		parts = append(parts, "the cluster CA and node certificates")
	} else if r.a.NewNodeCertificates {
		parts = append(parts, "node certificates")
	}
	if r.a.NewSSHKeys {
		parts = append(parts, r.a.SSHKeyType+" SSH keys")
	}
	return strings.Join(parts, " and ")
}
