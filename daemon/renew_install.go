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
	if r.bundle != nil {
		r.trustFirst(ctx)
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

// installOrder picks the canary, a regular online node that is sent
// its certificates first (none without certificates or without such a
// node), and returns the other active nodes.
func (r *renewRun) installOrder() (*fsm.Node, []*fsm.Node) {
	var canary *fsm.Node
	var rest []*fsm.Node
	for _, n := range r.active() {
		if canary == nil && r.a.certs() && r.reloadsEarly(n) {
			canary = n
			continue
		}
		rest = append(rest, n)
	}
	return canary, rest
}

// reloadsEarly reports whether n's daemon loads its new certificates
// in the install phase: regular online nodes, whose client
// certificate is in no map. Candidates load theirs right after the
// commit, so that they never present a certificate the map lacks; the
// master does so itself.
func (r *renewRun) reloadsEarly(n *fsm.Node) bool {
	return n.UUID != r.me.UUID && !n.Offline && !n.MasterCandidate
}

// trustFirst makes every other candidate trust the new CA next to the
// old one before anything it signed is in use: right after the commit
// the master presents a certificate from the new CA to them.
func (r *renewRun) trustFirst(ctx context.Context) {
	var mcs []*fsm.Node
	for _, n := range r.active() {
		if n.MasterCandidate && n.UUID != r.me.UUID {
			mcs = append(mcs, n)
		}
	}
	r.fanOut(ctx, "renew trust", mcs, func(n *fsm.Node) *sshdist.Request {
		return &sshdist.Request{Cluster: r.s.Cluster.Name, Activate: true,
			Files: []sshdist.File{{Name: "ca.pem", Data: string(r.bundle)}}}
	})
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
		req.Activate = r.reloadsEarly(n)
		empty = false
	}
	if empty {
		return nil
	}
	return req
}

// adoptCerts decides, per node that was sent certificates, whether
// its new client certificate goes into the candidate map: the master's
// once its files load, a regular node's once its daemon presents the
// new server certificate, and the others' once installed (candidates
// load them after the commit, offline nodes at their next start).
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
			case r.reloadsEarly(n):
				err = r.presentsServerCert(ctx, n, c.Server)
			}
			if err != nil {
				st.certErr = fmt.Errorf("new certificates installed "+
					"but not in use: %w", err)
				return
			}
			st.digest = r.newDigest[n.UUID]
			if r.reloadsEarly(n) || n.Offline {
				r.mark(n.UUID, "new certificates")
			}
		})
	}
	wg.Wait()
}

// reloadCandidates makes the other candidates' daemons load their new
// certificates, right after the commit put them in the map, and
// checks that each presents its new server certificate.
func (r *renewRun) reloadCandidates(ctx context.Context) {
	var mcs []*fsm.Node
	for _, n := range r.s.SortedNodes() {
		st := r.status[n.UUID]
		if n.MasterCandidate && n.UUID != r.me.UUID && st.digest != "" {
			mcs = append(mcs, n)
		}
	}
	r.fanOut(ctx, "renew reload", mcs, func(n *fsm.Node) *sshdist.Request {
		return &sshdist.Request{Cluster: r.s.Cluster.Name, Activate: true}
	})
	for _, n := range mcs {
		st := r.status[n.UUID]
		err := st.failed
		if err == nil {
			err = r.presentsServerCert(ctx, n, r.certsOf[n.UUID].Server)
		}
		if err != nil {
			st.failed, st.certErr = nil, fmt.Errorf("its new certificates "+
				"are committed but its daemon did not load them (%w); "+
				"restart its daemon", err)
			continue
		}
		r.mark(n.UUID, "new certificates")
	}
}
