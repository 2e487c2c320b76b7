package daemon

import "encoding/json"

// Status describes the local daemon (`ganeti-node status`).
type Status struct {
	Name         string `json:"name"`
	UUID         string `json:"uuid"`
	Cluster      string `json:"cluster"`
	Initialised  bool   `json:"initialised"`
	RaftState    string `json:"raft_state"`
	Leader       string `json:"leader"`
	AppliedIndex uint64 `json:"applied_index"`
	// Term is the Raft term; it grows only with elections.
	Term uint64 `json:"term"`
	// TLSDials counts outbound TLS connections this process opened;
	// on a normal node it stays 0.
	TLSDials uint64 `json:"tls_dials"`
	// Role is this node's role in the applied configuration.
	Role string `json:"role"`
}

// NodeInfo is one row of `list --output json`.
type NodeInfo struct {
	Name          string `json:"name"`
	UUID          string `json:"uuid"`
	PrimaryIP     string `json:"primary_ip"`
	Role          string `json:"role"`
	MasterCapable bool   `json:"master_capable"`
	Raft          string `json:"raft"`
	Alive         bool   `json:"alive"`
}

// ClusterInfo is `cluster info --output json`.
type ClusterInfo struct {
	Name                           string `json:"name"`
	UUID                           string `json:"uuid"`
	Master                         string `json:"master"`
	MasterIP                       string `json:"master_ip"`
	CandidatePoolSize              int    `json:"candidate_pool_size"`
	MasterCapabilityRapiModifiable bool   `json:"master_capability_rapi_modifiable"`
	ModifySSHSetup                 bool   `json:"modify_ssh_setup"`
	SSHKeyType                     string `json:"ssh_key_type"`
	AuthorizedKeysFile             string `json:"authorized_keys_file"`
	ConfigIndex                    uint64 `json:"config_index"`
	Nodes                          int    `json:"nodes"`
	Candidates                     int    `json:"candidates"`
}

// InitArgs are the arguments of `init`.
type InitArgs struct {
	Cluster                        string `json:"cluster"`
	NodeName                       string `json:"node_name"`
	PrimaryIP                      string `json:"primary_ip"`
	SSHPort                        int    `json:"ssh_port"`
	RPCPort                        int    `json:"rpc_port"`
	GossipPort                     int    `json:"gossip_port"`
	CandidatePoolSize              int    `json:"candidate_pool_size"`
	NoSSHInit                      bool   `json:"no_ssh_init"`
	MasterCapabilityRapiModifiable bool   `json:"master_capability_rapi_modifiable"`
	SSHKeyType                     string `json:"ssh_key_type"`
	AuthorizedKeysFile             string `json:"authorized_keys_file"`
}

// JoinArgs are the arguments of `join`.
type JoinArgs struct {
	Name          string `json:"name"`
	PrimaryIP     string `json:"primary_ip"`
	SSHPort       int    `json:"ssh_port"`
	RPCPort       int    `json:"rpc_port"`
	GossipPort    int    `json:"gossip_port"`
	Readd         bool   `json:"readd"`
	MasterCapable *bool  `json:"master_capable,omitempty"`
	NoNodeSetup   bool   `json:"no_node_setup"`
}

// NodeArgs name a node and the options of role commands.
type NodeArgs struct {
	Node          string `json:"node"`
	AutoPromote   bool   `json:"auto_promote,omitempty"`
	MasterCapable *bool  `json:"master_capable,omitempty"`
}

// OpRequest is a cluster-changing command as sent by the CLI to its
// local daemon and forwarded by a candidate to the master.
type OpRequest struct {
	Op   string          `json:"op"`
	Args json.RawMessage `json:"args"`
}

// OpResult is the outcome of an operation.
type OpResult struct {
	// Message is the one-line summary printed by the CLI.
	Message string `json:"message"`
	// Unreachable lists nodes that could not be updated; the master
	// keeps retrying them.
	Unreachable []string `json:"unreachable,omitempty"`
	// Summary counts the operation's SSH work (empty when none).
	Summary string `json:"summary,omitempty"`
}

// ErrorBody is the JSON body of every failed API call.
type ErrorBody struct {
	Error string `json:"error"`
}

// Operation names accepted by /v1/op.
const (
	OpJoin     = "join"
	OpPromote  = "promote"
	OpDemote   = "demote"
	OpOffline  = "offline"
	OpOnline   = "online"
	OpRemove   = "remove"
	OpModify   = "modify"
	OpFailover = "failover"
	OpDrain    = "drain"
	OpUndrain  = "undrain"
)
