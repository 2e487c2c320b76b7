package daemon

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"ganeti-node/fsm"
	"ganeti-node/sshdist"
)

// errNotReloaded is returned when a node's daemon still presents its
// old certificate after it was asked to load the new one: it runs a
// ganeti-node that cannot reload its identity while running.
var errNotReloaded = errors.New("its daemon kept its old certificate " +
	"after the reload request (it needs a ganeti-node that reloads " +
	"certificates on activate); restart that daemon so it reads the " +
	"new files, then run renew-crypto again")

// install is the phase that makes new material take effect on the
// nodes: the master signs the CSRs, then every node installs its new
// SSH key pair, its certificates and (during a CA rotation) a ca.pem
// that trusts both CAs, and its daemon reloads them. The master's own
// daemon reloads only after the commit.
//
// With certificates, one node goes first as a canary: if its daemon
// cannot reload, the certificate part is called off before any other
// node holds certificates that are not in use.
func (r *renewRun) install(ctx context.Context) error {
	start := time.Now()
	if r.a.certs() {
		if err := r.prepareCA(); err != nil {
			return err
		}
		r.signAll()
	}
	canary, rest := r.installOrder()
	if canary != nil {
		r.installOn(ctx, []*fsm.Node{canary})
		if errors.Is(r.status[canary.UUID].certErr, errNotReloaded) {
			r.certsOff = true
		}
	}
	r.installOn(ctx, rest)
	if r.a.NewSSHKeys {
		if err := r.recordKeys(); err != nil {
			return err
		}
	}
	r.d.log.Info("renew install", "nodes", len(r.active()),
		"certificates", r.a.certs() && !r.certsOff,
		"ssh_keys", r.a.NewSSHKeys, "took", time.Since(start))
	return nil
}

// installOrder picks the canary (a regular online node if there is
// one, else another candidate; none without certificates) and returns
// the other active nodes.
func (r *renewRun) installOrder() (*fsm.Node, []*fsm.Node) {
	var canary *fsm.Node
	nodes := r.active()
	if r.a.certs() {
		for _, n := range nodes {
			if n.UUID == r.me.UUID || n.Offline {
				continue
			}
			if canary == nil || canary.MasterCandidate && !n.MasterCandidate {
				canary = n
			}
		}
	}
	var rest []*fsm.Node
	for _, n := range nodes {
		if n != canary {
			rest = append(rest, n)
		}
	}
	return canary, rest
}

// installOn sends each node its install request and checks, for the
// nodes that reloaded, that their daemon now presents the new
// certificate.
func (r *renewRun) installOn(ctx context.Context, nodes []*fsm.Node) {
	resps := r.fanOut(ctx, "renew install", nodes, r.installRequest)
	for uuid, resp := range resps {
		if resp.SSHPublicKey != "" && r.a.NewSSHKeys {
			r.status[uuid].installed = resp
		}
	}
	if r.a.certs() && !r.certsOff {
		r.adoptCerts(ctx, nodes)
	}
}

// installRequest is what one node does in the install phase, or nil
// when it has nothing to do.
func (r *renewRun) installRequest(n *fsm.Node) *sshdist.Request {
	req := &sshdist.Request{Cluster: r.s.Cluster.Name}
	empty := true
	if r.a.NewSSHKeys {
		req.GenerateSSHKey = &sshdist.KeyGen{Type: r.a.SSHKeyType,
			Bits: r.a.SSHKeyBits}
		empty = false
	}
	if c := r.certsOf[n.UUID]; c != nil && !r.certsOff {
		req.InstallCerts = c
		if r.bundle != nil {
			req.Files = []sshdist.File{{Name: "ca.pem", Data: string(r.bundle)}}
		}
		req.Activate = n.UUID != r.me.UUID && !n.Offline
		empty = false
	}
	if empty {
		return nil
	}
	return req
}

// adoptCerts decides, per node that was sent certificates, whether
// its new client certificate goes into the candidate map: the master
// once its files load, offline nodes at their next start, and every
// other node once its daemon presents the new server certificate.
func (r *renewRun) adoptCerts(ctx context.Context, nodes []*fsm.Node) {
	var wg sync.WaitGroup
	for _, n := range nodes {
		st := r.status[n.UUID]
		c := r.certsOf[n.UUID]
		if c == nil || st.failed != nil || st.certErr != nil {
			continue
		}
		wg.Go(func() {
			var err error
			switch {
			case n.UUID == r.me.UUID:
				err = r.d.checkIdentityFiles()
			case !n.Offline:
				err = r.presentsServerCert(ctx, n, c.Server)
			}
			if err != nil {
				st.certErr = fmt.Errorf("new certificates installed "+
					"but not in use: %w", err)
				return
			}
			st.digest = r.newDigest[n.UUID]
			r.mark(n.UUID, "new certificates")
		})
	}
	wg.Wait()
}
