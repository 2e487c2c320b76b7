package raftnode

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/hashicorp/raft"

	"ganeti-node/fsm"
)

var (
	// ErrNotLeader is returned when an operation needs the leader and
	// this node is not it.
	ErrNotLeader = errors.New("raftnode: this node is not the leader")
)

// Bootstrap makes this node the only voter of a new cluster. It is
// called once, by init.
func (n *Node) Bootstrap() error {
	cfg := raft.Configuration{Servers: []raft.Server{{
		ID: raft.ServerID(n.cfg.ID), Suffrage: raft.Voter,
		Address: raft.ServerAddress(n.cfg.Advertise.String())}}}
	if err := n.raft.BootstrapCluster(cfg).Error(); err != nil {
		return fmt.Errorf("raftnode: bootstrap: %w", err)
	}
	return nil
}

// Apply commits cmd and waits until this node has applied it. It
// returns the entry's index, and the FSM's refusal if the command was
// refused (then nothing changed).
func (n *Node) Apply(cmd *fsm.Command) (uint64, error) {
	f := n.raft.Apply(cmd.Encode(), n.cfg.ApplyTimeout)
	if err := f.Error(); err != nil {
		return 0, n.leaderErr(err)
	}
	if resp, ok := f.Response().(error); ok && resp != nil {
		return f.Index(), resp
	}
	return f.Index(), nil
}

func (n *Node) leaderErr(err error) error {
	if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
		return fmt.Errorf("%w: %v", ErrNotLeader, err)
	}
	return fmt.Errorf("raftnode: %w", err)
}

// Barrier waits until every entry committed before it is applied here.
func (n *Node) Barrier() error {
	return n.leaderErr0(n.raft.Barrier(n.cfg.ApplyTimeout).Error())
}

func (n *Node) leaderErr0(err error) error {
	if err == nil {
		return nil
	}
	return n.leaderErr(err)
}

// IsLeader reports whether this node is the Raft leader.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// State is the Raft state name: Leader, Follower, Candidate, Shutdown.
func (n *Node) State() string { return n.raft.State().String() }

// Leader returns the leader's address and ID ("" when unknown).
func (n *Node) Leader() (addr, id string) {
	a, i := n.raft.LeaderWithID()
	return string(a), string(i)
}

// AppliedIndex is the index of the last entry applied to the FSM.
func (n *Node) AppliedIndex() uint64 { return n.raft.AppliedIndex() }

// AddVoter makes id a voter at addr (adding or promoting it).
func (n *Node) AddVoter(id, addr string) error {
	return n.leaderErr0(n.raft.AddVoter(raft.ServerID(id),
		raft.ServerAddress(addr), 0, n.cfg.ApplyTimeout).Error())
}

// AddNonvoter adds id as a non-voter; a voter is left a voter.
func (n *Node) AddNonvoter(id, addr string) error {
	return n.leaderErr0(n.raft.AddNonvoter(raft.ServerID(id),
		raft.ServerAddress(addr), 0, n.cfg.ApplyTimeout).Error())
}

// Demote turns voter id into a non-voter; it keeps receiving the log.
func (n *Node) Demote(id string) error {
	return n.leaderErr0(n.raft.DemoteVoter(raft.ServerID(id), 0,
		n.cfg.ApplyTimeout).Error())
}

// Remove takes id out of the Raft configuration.
func (n *Node) Remove(id string) error {
	return n.leaderErr0(n.raft.RemoveServer(raft.ServerID(id), 0,
		n.cfg.ApplyTimeout).Error())
}

// Servers returns the current configuration: ID -> "voter"/"nonvoter".
func (n *Node) Servers() (map[string]string, error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, fmt.Errorf("raftnode: reading configuration: %w", err)
	}
	out := map[string]string{}
	for _, s := range f.Configuration().Servers {
		kind := "nonvoter"
		if s.Suffrage == raft.Voter {
			kind = "voter"
		}
		out[string(s.ID)] = kind
	}
	return out, nil
}

// TransferLeadership hands leadership to id at addr, or to the most
// up-to-date voter when id is "". It returns once the transfer is done.
func (n *Node) TransferLeadership(id, addr string) error {
	var f raft.Future
	if id == "" {
		f = n.raft.LeadershipTransfer()
	} else {
		f = n.raft.LeadershipTransferToServer(raft.ServerID(id),
			raft.ServerAddress(addr))
	}
	return n.leaderErr0(f.Error())
}

// Shutdown stops Raft and closes the log store. A leader should call
// TransferLeadership first so the cluster does not wait for an election.
func (n *Node) Shutdown() error {
	err := n.raft.Shutdown().Error()
	close(n.done)
	n.trans.Close()
	if cerr := n.store.Close(); err == nil {
		err = cerr
	}
	return err
}

// Snapshot forces a snapshot now (used by tests and before upgrades).
func (n *Node) Snapshot() error {
	return n.leaderErr0(n.raft.Snapshot().Error())
}

// Term returns the current Raft term; it grows only with elections.
func (n *Node) Term() uint64 {
	t, _ := strconv.ParseUint(n.raft.Stats()["term"], 10, 64)
	return t
}
