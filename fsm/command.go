package fsm

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
)

// Op names a change to the state.
type Op string

// The changes a command can make. A Command holds one or more of them
// and is applied all-or-nothing.
const (
	// OpInit creates the cluster with its first node (Change.Node) as
	// master candidate and master, with Change.Digest in the map.
	OpInit Op = "init"
	// OpPutNode adds Change.Node or replaces the node with its UUID.
	OpPutNode Op = "put_node"
	// OpRemoveNode deletes node Change.UUID and its map entry.
	OpRemoveNode Op = "remove_node"
	// OpSetCert sets the map entry of Change.UUID to Change.Digest;
	// an empty digest deletes the entry.
	OpSetCert Op = "set_cert"
	// OpSetMaster records Change.UUID as the master node.
	OpSetMaster Op = "set_master"
	// OpSetReconcilePending sets Cluster.ReconcilePending to
	// Change.Pending.
	OpSetReconcilePending Op = "set_reconcile_pending"
	// OpPutCluster replaces the cluster record's modifiable fields
	// with those of Change.Cluster.
	OpPutCluster Op = "put_cluster"
)

// Change is one step of a Command.
type Change struct {
	Op      Op       `json:"op"`
	UUID    string   `json:"uuid,omitempty"`
	Digest  string   `json:"digest,omitempty"`
	Node    *Node    `json:"node,omitempty"`
	Cluster *Cluster `json:"cluster,omitempty"`
	Pending bool     `json:"pending,omitempty"`
}

// Command is the unit written to the Raft log. Its changes are applied
// in order to a copy of the state, and the copy replaces the state only
// if every change is valid and the result keeps the invariants.
type Command struct {
	Changes []Change `json:"changes"`
}

// Encode returns the command's log representation.
func (c *Command) Encode() []byte {
	b, err := json.Marshal(c)
	if err != nil {
		// Every field is a plain value; Marshal cannot fail on it.
		panic(fmt.Sprintf("fsm: encoding command: %v", err))
	}
	return b
}

// DecodeCommand parses a log entry written by Command.Encode.
func DecodeCommand(data []byte) (*Command, error) {
	var c Command
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("fsm: decoding command: %w", err)
	}
	return &c, nil
}

var (
	// ErrNotInitialised is returned when a change needs a cluster and
	// init has not been applied.
	ErrNotInitialised = errors.New("fsm: cluster not initialised")
	// ErrAlreadyInitialised is returned by OpInit on an existing cluster.
	ErrAlreadyInitialised = errors.New("fsm: cluster already initialised")
	// ErrUnknownNode is returned when a change names a node that is not
	// in the cluster.
	ErrUnknownNode = errors.New("fsm: unknown node")
)

// ApplyTo applies c to a copy of s and returns the copy. s is not
// changed. The error says which change was refused and why.
func (c *Command) ApplyTo(s *State) (*State, error) {
	next := s.Clone()
	for i, ch := range c.Changes {
		if err := next.apply(ch); err != nil {
			return nil, fmt.Errorf("change %d (%s): %w", i, ch.Op, err)
		}
	}
	if err := next.Check(); err != nil {
		return nil, err
	}
	return next, nil
}

func (s *State) apply(ch Change) error {
	if ch.Op != OpInit && !s.Initialised() {
		return ErrNotInitialised
	}
	switch ch.Op {
	case OpInit:
		return s.applyInit(ch)
	case OpPutNode:
		if ch.Node == nil {
			return errors.New("missing node")
		}
		n := *ch.Node
		s.Nodes[n.UUID] = &n
		return nil
	case OpRemoveNode:
		if s.Nodes[ch.UUID] == nil {
			return fmt.Errorf("%w %q", ErrUnknownNode, ch.UUID)
		}
		delete(s.Nodes, ch.UUID)
		delete(s.CandidateMap, ch.UUID)
		return nil
	case OpSetCert:
		if ch.Digest == "" {
			delete(s.CandidateMap, ch.UUID)
			return nil
		}
		s.CandidateMap[ch.UUID] = ch.Digest
		return nil
	case OpSetMaster:
		if s.Nodes[ch.UUID] == nil {
			return fmt.Errorf("%w %q", ErrUnknownNode, ch.UUID)
		}
		s.Cluster.MasterNode = ch.UUID
		return nil
	case OpPutCluster:
		return s.applyPutCluster(ch)
	case OpSetReconcilePending:
		s.Cluster.ReconcilePending = ch.Pending
		return nil
	}
	return fmt.Errorf("unknown op %q", ch.Op)
}

func (s *State) applyInit(ch Change) error {
	if s.Initialised() {
		return ErrAlreadyInitialised
	}
	if ch.Cluster == nil || ch.Node == nil {
		return errors.New("init needs a cluster and a node")
	}
	s.Cluster = *ch.Cluster
	n := *ch.Node
	n.MasterCandidate = true
	s.Nodes = map[string]*Node{n.UUID: &n}
	s.CandidateMap = map[string]string{n.UUID: ch.Digest}
	s.Cluster.MasterNode = n.UUID
	return nil
}

func (s *State) applyPutCluster(ch Change) error {
	if ch.Cluster == nil {
		return errors.New("missing cluster")
	}
	c := *ch.Cluster
	// Identity and master are not changed by a modify.
	c.Name, c.UUID, c.MasterNode = s.Cluster.Name, s.Cluster.UUID, s.Cluster.MasterNode
	c.ReconcilePending = s.Cluster.ReconcilePending
	s.Cluster = c
	return nil
}

// Check verifies the invariants a committed state must keep: valid
// names, addresses and digests, unique names and IPs, and a candidate
// map whose entries belong exactly to the master candidates.
func (s *State) Check() error {
	if !s.Initialised() {
		return nil
	}
	if !ValidName(s.Cluster.Name) {
		return fmt.Errorf("invalid cluster name %q", s.Cluster.Name)
	}
	if s.Cluster.CandidatePoolSize < 1 {
		return fmt.Errorf("candidate pool size %d is below 1", s.Cluster.CandidatePoolSize)
	}
	names := map[string]bool{}
	ips := map[string]bool{}
	for id, n := range s.Nodes {
		if err := checkNode(id, n); err != nil {
			return err
		}
		if names[n.Name] {
			return fmt.Errorf("node name %q is used twice", n.Name)
		}
		if ips[n.PrimaryIP] {
			return fmt.Errorf("primary IP %q is used twice", n.PrimaryIP)
		}
		names[n.Name], ips[n.PrimaryIP] = true, true
	}
	if m := s.Nodes[s.Cluster.MasterNode]; m == nil || !m.MasterCandidate {
		return fmt.Errorf("master %q is not a master candidate", s.Cluster.MasterNode)
	}
	return s.checkCandidateMap()
}

func checkNode(id string, n *Node) error {
	switch {
	case id != n.UUID || !ValidUUID(n.UUID):
		return fmt.Errorf("invalid node UUID %q", n.UUID)
	case !ValidName(n.Name):
		return fmt.Errorf("invalid node name %q", n.Name)
	case net.ParseIP(n.PrimaryIP) == nil:
		return fmt.Errorf("node %q: invalid primary IP %q", n.Name, n.PrimaryIP)
	case !validPort(n.RPCPort) || !validPort(n.GossipPort) || !validPort(n.SSHPort):
		return fmt.Errorf("node %q: port out of range", n.Name)
	case n.MasterCandidate && (n.Offline || n.Drained || !n.MasterCapable):
		return fmt.Errorf("node %q: a master candidate must be online, "+
			"not drained and master-capable", n.Name)
	}
	return nil
}

func validPort(p int) bool { return p > 0 && p < 65536 }

func (s *State) checkCandidateMap() error {
	seen := map[string]string{}
	for id, d := range s.CandidateMap {
		if other, dup := seen[d]; dup {
			return fmt.Errorf("nodes %q and %q have the same certificate digest", other, id)
		}
		seen[d] = id
		n := s.Nodes[id]
		if n == nil || !n.MasterCandidate {
			return fmt.Errorf("candidate map entry for %q, which is not a master candidate", id)
		}
		if !ValidDigest(d) {
			return fmt.Errorf("candidate map entry for %q: invalid digest %q", n.Name, d)
		}
	}
	for id, n := range s.Nodes {
		if n.MasterCandidate && s.CandidateMap[id] == "" {
			return fmt.Errorf("master candidate %q has no candidate map entry", n.Name)
		}
	}
	return nil
}
