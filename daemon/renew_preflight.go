package daemon

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"ganeti-node/fsm"
	"ganeti-node/rpcsec"
	"ganeti-node/sshdist"
)

// daemonCheckTimeout bounds the preflight's status call to one daemon.
const daemonCheckTimeout = 5 * time.Second

// preflight reaches every node once over SSH, opening the connection
// every later phase reuses. It asks for a report (the node's current
// SSH key) and, when certificates are renewed, for new TLS keys and
// CSRs, which stay pending and are worthless until signed, so nothing
// that is in use changes. With certificates it also checks that each
// online node's daemon answers: a daemon that misses the new candidate
// map would refuse the master's new certificate for good.
//
// A node that fails either check is skipped with --force and stops the
// run otherwise; an offline node never stops it.
func (r *renewRun) preflight(ctx context.Context) error {
	start := time.Now()
	resps := r.fanOut(ctx, "renew preflight", r.s.SortedNodes(),
		r.preflightRequest)
	if r.a.certs() {
		r.checkDaemons(ctx)
	}
	for uuid, resp := range resps {
		r.status[uuid].oldKey = resp.SSHPublicKey
		r.status[uuid].csr = resp
	}
	down := r.skipFailed()
	r.d.log.Info("renew preflight", "nodes", len(r.s.Nodes),
		"unreachable", len(down), "took", time.Since(start))
	if st := r.status[r.me.UUID]; st.skipped != nil {
		return fmt.Errorf("the master cannot reach itself: %w; nothing "+
			"was changed", st.skipped)
	}
	if len(down) > 0 && !r.a.Force {
		return fmt.Errorf("cannot reach %s; nothing was changed. Bring "+
			"them back and retry, or add --force to renew the others "+
			"and leave them behind (they keep their old keys and must "+
			"be re-added with `ganeti-node join --readd`)",
			strings.Join(down, "; "))
	}
	return nil
}

func (r *renewRun) preflightRequest(n *fsm.Node) *sshdist.Request {
	req := &sshdist.Request{Cluster: r.s.Cluster.Name, Report: true}
	if r.a.certs() {
		req.GenerateTLS = &sshdist.TLSGen{NodeName: n.Name}
	}
	return req
}

// skipFailed turns the preflight's failures into skips and describes
// the online nodes among them; offline nodes are skipped silently.
func (r *renewRun) skipFailed() []string {
	var down []string
	for _, n := range r.s.SortedNodes() {
		st := r.status[n.UUID]
		if st.failed == nil {
			continue
		}
		st.skipped, st.failed = st.failed, nil
		if !n.Offline {
			down = append(down, fmt.Sprintf("%s (%v)", n.Name, st.skipped))
		}
	}
	return down
}

// checkDaemons asks every other online node's daemon for its status
// over the secured RPC, all at once, and marks those that do not
// answer as failed.
func (r *renewRun) checkDaemons(ctx context.Context) {
	client := rpcsec.HTTPClient(r.id, daemonCheckTimeout)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, n := range r.s.SortedNodes() {
		if n.UUID == r.me.UUID || n.Offline || r.status[n.UUID].failed != nil {
			continue
		}
		wg.Go(func() {
			_, err := fetchStatus(ctx, client, n.RPCAddr())
			if err == nil {
				return
			}
			mu.Lock()
			r.status[n.UUID].failed = fmt.Errorf("its daemon does not "+
				"answer at %s: %w", n.RPCAddr(), err)
			mu.Unlock()
		})
	}
	wg.Wait()
}
