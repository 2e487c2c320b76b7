// Package fsm holds the replicated cluster configuration: the cluster
// record, the nodes with their role flags and the candidate map. It is
// the only thing the Raft log changes, and every node derives its
// ssconf files and its TLS admission list from it.
//
// Security role: the candidate map decides which client certificates
// any node's daemon admits, so every change to it goes through Apply,
// which checks that only master candidates have entries. The state
// never holds key material: no private key and no SSH public key
// (DESIGN invariant 1); only certificate digests, which are public.
package fsm

import (
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// Role names as shown by `list` and used by RAPI.
const (
	RoleMaster    = "master"
	RoleCandidate = "candidate"
	RoleRegular   = "regular"
	RoleDrained   = "drained"
	RoleOffline   = "offline"
)

// Cluster is the cluster-wide record. The zero value is "not
// initialised".
type Cluster struct {
	// Name is the cluster name given to init; every ssh-update request
	// carries it so a helper never acts for another cluster.
	Name string `json:"name"`
	// UUID identifies the cluster.
	UUID string `json:"uuid"`
	// CandidatePoolSize is how many master candidates the cluster wants.
	CandidatePoolSize int `json:"candidate_pool_size"`
	// MasterCapabilityRapiModifiable lets RAPI change master_capable; it
	// also makes every node a potential master candidate.
	MasterCapabilityRapiModifiable bool `json:"master_capability_rapi_modifiable"`
	// MasterNode is the UUID of the node that last took leadership.
	MasterNode string `json:"master_node"`
	// ModifySSHSetup is false when init ran with --no-ssh-init: then
	// the tool never touches an SSH file on any node.
	ModifySSHSetup bool `json:"modify_ssh_setup"`
	// SSHKeyType is the type of the nodes' own key pairs.
	SSHKeyType string `json:"ssh_key_type"`
	// AuthorizedKeysFile is the file (under each node's root) that the
	// tool manages; sshd must read it.
	AuthorizedKeysFile string `json:"authorized_keys_file"`
	// ReconcilePending is set in the same entry as every role change
	// and cleared by the master once every node's files match the
	// configuration. A new master finishes the job only when it is set.
	ReconcilePending bool `json:"reconcile_pending,omitempty"`
}

// Node is one member of the cluster. Ports are per primary IP.
type Node struct {
	UUID            string `json:"uuid"`
	Name            string `json:"name"`
	PrimaryIP       string `json:"primary_ip"`
	RPCPort         int    `json:"rpc_port"`
	GossipPort      int    `json:"gossip_port"`
	SSHPort         int    `json:"ssh_port"`
	MasterCapable   bool   `json:"master_capable"`
	VMCapable       bool   `json:"vm_capable"`
	MasterCandidate bool   `json:"master_candidate"`
	Offline         bool   `json:"offline"`
	Drained         bool   `json:"drained"`
	// WasCandidate remembers that an offlined node was a candidate, so
	// that onlining can give the role back.
	WasCandidate bool `json:"was_candidate,omitempty"`
}

// RPCAddr is the node's daemon address, host:port.
func (n *Node) RPCAddr() string { return joinHostPort(n.PrimaryIP, n.RPCPort) }

// GossipAddr is the node's memberlist address, host:port.
func (n *Node) GossipAddr() string { return joinHostPort(n.PrimaryIP, n.GossipPort) }

// SSHAddr is the address of the host's own sshd, host:port.
func (n *Node) SSHAddr() string { return joinHostPort(n.PrimaryIP, n.SSHPort) }

func joinHostPort(ip string, port int) string {
	if strings.Contains(ip, ":") {
		return fmt.Sprintf("[%s]:%d", ip, port)
	}
	return fmt.Sprintf("%s:%d", ip, port)
}

// State is the whole replicated configuration. The zero value is an
// uninitialised cluster.
type State struct {
	Cluster Cluster          `json:"cluster"`
	Nodes   map[string]*Node `json:"nodes"`
	// CandidateMap maps node UUID to the digest ("sha256:HEX") of that
	// node's client certificate, for the master and the candidates.
	CandidateMap map[string]string `json:"candidate_map"`
	// Index is the Raft index of the last entry applied.
	Index uint64 `json:"index"`
}

// Initialised reports whether init has been applied.
func (s *State) Initialised() bool { return s.Cluster.UUID != "" }

// Clone returns a deep copy that shares nothing with s.
func (s *State) Clone() *State {
	c := &State{Cluster: s.Cluster, Index: s.Index,
		Nodes:        make(map[string]*Node, len(s.Nodes)),
		CandidateMap: make(map[string]string, len(s.CandidateMap))}
	for k, n := range s.Nodes {
		cp := *n
		c.Nodes[k] = &cp
	}
	for k, v := range s.CandidateMap {
		c.CandidateMap[k] = v
	}
	return c
}

// NodeByName returns the node called name, or nil.
func (s *State) NodeByName(name string) *Node {
	for _, n := range s.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// Lookup finds a node by name or UUID, or returns nil.
func (s *State) Lookup(nameOrUUID string) *Node {
	if n, ok := s.Nodes[nameOrUUID]; ok {
		return n
	}
	return s.NodeByName(nameOrUUID)
}

// SortedNodes returns the nodes ordered by name.
func (s *State) SortedNodes() []*Node {
	out := make([]*Node, 0, len(s.Nodes))
	for _, n := range s.Nodes {
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Candidates returns the master candidates (the master included),
// ordered by name.
func (s *State) Candidates() []*Node {
	var out []*Node
	for _, n := range s.SortedNodes() {
		if n.MasterCandidate {
			out = append(out, n)
		}
	}
	return out
}

// PotentialCandidate reports whether n's SSH key may ever be put into
// an authorized_keys file: master-capable nodes, or every node when
// master_capability_rapi_modifiable is set.
func (s *State) PotentialCandidate(n *Node) bool {
	return n.MasterCapable || s.Cluster.MasterCapabilityRapiModifiable
}

// Role returns the role name of n as `list` shows it.
func (s *State) Role(n *Node) string {
	switch {
	case n.UUID == s.Cluster.MasterNode:
		return RoleMaster
	case n.MasterCandidate:
		return RoleCandidate
	case n.Offline:
		return RoleOffline
	case n.Drained:
		return RoleDrained
	}
	return RoleRegular
}

// Encode returns the state as JSON, for snapshots.
func (s *State) Encode() ([]byte, error) { return json.Marshal(s) }

// Decode parses a state written by Encode.
func Decode(data []byte) (*State, error) {
	s := &State{}
	if err := json.Unmarshal(data, s); err != nil {
		return nil, fmt.Errorf("fsm: decoding state: %w", err)
	}
	if s.Nodes == nil {
		s.Nodes = map[string]*Node{}
	}
	if s.CandidateMap == nil {
		s.CandidateMap = map[string]string{}
	}
	return s, nil
}

var (
	nameRE   = regexp.MustCompile(`^[a-zA-Z0-9]([a-zA-Z0-9.-]{0,251}[a-zA-Z0-9])?$`)
	digestRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
	uuidRE   = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
)

// ValidName reports whether name is acceptable as a node or cluster
// name (a DNS-style host name).
func ValidName(name string) bool { return nameRE.MatchString(name) }

// ValidDigest reports whether d has the form sha256:HEX.
func ValidDigest(d string) bool { return digestRE.MatchString(d) }

// ValidUUID reports whether u is a lowercase RFC 4122 UUID string.
func ValidUUID(u string) bool { return uuidRE.MatchString(u) }
