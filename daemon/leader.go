package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"ganeti-node/fsm"
)

// opTimeout bounds one cluster operation end to end.
const opTimeout = 5 * time.Minute

// retryInterval is how often the master retries nodes it could not
// bring in line with the configuration.
const retryInterval = 5 * time.Second

// leaderState is what the node knows about its own leadership. Ready
// is set once a new leader has recorded itself and reconciled the
// nodes, so role changes never start from a half-finished state.
type leaderState struct {
	mu     sync.Mutex
	ready  bool
	cancel context.CancelFunc
	change chan struct{}
}

func (d *Daemon) isLeader() bool {
	d.mu.Lock()
	r := d.raft
	d.mu.Unlock()
	return r != nil && r.IsLeader()
}

// onLeader is called by raftnode when leadership changes.
func (d *Daemon) onLeader(isLeader bool) {
	l := &d.leader
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cancel != nil {
		l.cancel()
		l.cancel = nil
	}
	l.ready = false
	d.rapiLeader(isLeader)
	if !isLeader {
		d.closeSSHPool()
		d.log.Info("no longer master")
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	l.cancel = cancel
	go d.takeOver(ctx)
}

// takeOver runs on a new leader: it records itself as master, brings
// Raft membership and every reachable node's files in line with the
// committed configuration, and then keeps retrying unreachable nodes.
func (d *Daemon) takeOver(ctx context.Context) {
	start := time.Now()
	if err := d.raft.Barrier(); err != nil {
		d.log.Warn("takeover barrier failed", "err", err)
		return
	}
	// Right after init the cluster entry follows leadership by a few
	// milliseconds.
	s, err := d.waitInitialised(ctx)
	if err != nil {
		return
	}
	me := d.self(s)
	if me == nil {
		d.log.Error("leader is not in the configuration")
		return
	}
	if s.Cluster.MasterNode != me.UUID {
		cmd := &fsm.Command{Changes: []fsm.Change{{Op: fsm.OpSetMaster, UUID: me.UUID}}}
		if _, err := d.raft.Apply(cmd); err != nil {
			d.log.Warn("recording new master failed", "err", err)
			return
		}
	}
	d.log.Info("became master", "node", me.Name, "took", time.Since(start))

	// Finishing what a previous master left half-done happens under the
	// operation lock, so role changes wait for it. When the previous
	// master had finished (no reconcile pending), there is nothing to
	// finish and operations are accepted at once.
	d.opMu.Lock()
	d.setReady(true)
	d.reconcileRaft(d.fsm.State())
	d.takePins(ctx)
	if s.Cluster.ReconcilePending {
		d.log.Info("finishing the previous master's reconciliation")
		d.reconcileAll(ctx, nil)
		d.clearReconcilePending()
	}
	d.opMu.Unlock()
	d.retryLoop(ctx)
}

func (d *Daemon) setReady(v bool) {
	d.leader.mu.Lock()
	d.leader.ready = v
	d.leader.mu.Unlock()
}

func (d *Daemon) ready() bool {
	d.leader.mu.Lock()
	defer d.leader.mu.Unlock()
	return d.leader.ready
}

func (d *Daemon) retryLoop(ctx context.Context) {
	t := time.NewTicker(retryInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if d.pendingCount() == 0 {
				continue
			}
			d.opMu.Lock()
			d.reconcileAll(ctx, d.pendingNodes())
			d.clearReconcilePending()
			d.opMu.Unlock()
		}
	}
}

// routeOp decides where an operation from the local CLI runs.
func (d *Daemon) routeOp(ctx context.Context, req OpRequest) (*OpResult, error) {
	leaderAddr, local, err := d.route("change the cluster")
	if err != nil {
		return nil, err
	}
	if local {
		return d.runOp(ctx, req)
	}
	if req.Op == OpFailover {
		d.mu.Lock()
		name := d.node.Name
		d.mu.Unlock()
		req.Args, _ = json.Marshal(NodeArgs{Node: name})
	}
	return d.forward(ctx, leaderAddr, req)
}

// route is the rule for every cluster command from the local CLI: the
// leader runs it (local), a candidate forwards it to leaderAddr, and a
// normal node refuses it, naming the master; what says what the
// command would do, for that message.
func (d *Daemon) route(what string) (leaderAddr string, local bool, err error) {
	d.mu.Lock()
	r, nf := d.raft, d.node
	d.mu.Unlock()
	if r == nil {
		return "", false, ErrNoIdentity
	}
	if r.IsLeader() {
		return "", true, nil
	}
	s := d.fsm.State()
	leaderAddr, leaderID := r.Leader()
	if me := s.Nodes[nf.UUID]; me == nil || !me.MasterCandidate {
		master := "unknown"
		if m := s.Nodes[leaderID]; m != nil {
			master = m.Name
		}
		return "", false, fmt.Errorf("node %q is not a master candidate, so it "+
			"cannot %s; run the command on the master (%s)", nf.Name, what, master)
	}
	if leaderAddr == "" {
		return "", false, errors.New("no master is elected right now; retry in a few seconds")
	}
	return leaderAddr, false, nil
}

// runOp runs an operation on the leader, one at a time.
func (d *Daemon) runOp(ctx context.Context, req OpRequest) (*OpResult, error) {
	if err := d.waitReady(ctx); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	d.opMu.Lock()
	defer d.opMu.Unlock()
	if !d.isLeader() {
		return nil, errNotLeaderNow
	}
	d.log.Info("operation started", "op", req.Op)
	rep := reportFrom(ctx)
	ctx = withReport(ctx, rep)
	res, err := d.dispatch(ctx, req)
	if err != nil {
		d.log.Error("operation failed", "op", req.Op, "err", err)
		return nil, err
	}
	res.Summary = rep.summary()
	d.log.Info("operation done", "op", req.Op, "result", res.Message,
		"unreachable", len(res.Unreachable))
	return res, nil
}

func (d *Daemon) waitReady(ctx context.Context) error {
	deadline := time.Now().Add(30 * time.Second)
	for !d.ready() {
		if !d.isLeader() {
			return errNotLeaderNow
		}
		if time.Now().After(deadline) {
			return errors.New("the new master is still reconciling the " +
				"cluster; retry in a few seconds")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

func (d *Daemon) dispatch(ctx context.Context, req OpRequest) (*OpResult, error) {
	switch req.Op {
	case OpJoin:
		var a JoinArgs
		if err := strictUnmarshal(req.Args, &a); err != nil {
			return nil, err
		}
		return d.opJoin(ctx, a)
	case OpPromote, OpDemote, OpOffline, OpOnline, OpRemove, OpModify, OpFailover,
		OpDrain, OpUndrain:
		var a NodeArgs
		if err := strictUnmarshal(req.Args, &a); err != nil {
			return nil, err
		}
		return d.nodeOp(ctx, req.Op, a)
	case OpRenewCrypto:
		return d.renewCrypto(ctx, req.Args)
	}
	if req.Op == OpClusterModify {
		var a ClusterModifyArgs
		if err := strictUnmarshal(req.Args, &a); err != nil {
			return nil, err
		}
		return d.clusterModify(ctx, a)
	}
	return nil, fmt.Errorf("unknown operation %q", req.Op)
}

func strictUnmarshal(data []byte, v any) error {
	dec := json.NewDecoder(bytesReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("bad operation arguments: %w", err)
	}
	return nil
}

func (d *Daemon) waitInitialised(ctx context.Context) (*fsm.State, error) {
	d.applied.waitUntil(ctx, func() bool { return d.fsm.State().Initialised() })
	if s := d.fsm.State(); s.Initialised() {
		return s, nil
	}
	return nil, ctx.Err()
}

// clearReconcilePending records that every node matches the
// configuration, once no node is left to retry. Called under opMu.
func (d *Daemon) clearReconcilePending() {
	if d.pendingCount() > 0 || !d.fsm.State().Cluster.ReconcilePending {
		return
	}
	cmd := &fsm.Command{Changes: []fsm.Change{{Op: fsm.OpSetReconcilePending}}}
	if _, err := d.raft.Apply(cmd); err != nil {
		d.log.Warn("clearing reconcile flag failed", "err", err)
	}
}
