package rapi

import (
	"context"
	"errors"
)

// ErrUnknownNode is returned by a Backend when no node has the name.
var ErrUnknownNode = errors.New("rapi: unknown node")

// Backend is what the RAPI server needs from the node daemon. Every
// method may be called concurrently.
type Backend interface {
	// Cluster returns the committed cluster record; an error means the
	// node is not part of a cluster.
	Cluster() (Cluster, error)
	// Nodes returns every node of the committed configuration.
	Nodes() ([]Node, error)
	// Master says whether this node is the master now and which node
	// is (Name and IP are empty when no master is known).
	Master() Master
	// Supports reports whether Run can perform operations of kind k.
	Supports(k OpKind) bool
	// Run performs one operation exactly as the CLI would (on the
	// master, or forwarded to it) and blocks until it is done or ctx
	// ends.
	Run(ctx context.Context, op Op) (Result, error)
}

// Cluster is the part of the cluster record RAPI shows and checks.
type Cluster struct {
	Name              string
	UUID              string
	Master            string
	CandidatePoolSize int
	ModifySSHSetup    bool
	// MasterCapabilityRapiModifiable is the committed cluster flag that
	// allows changing master_capable through RAPI.
	MasterCapabilityRapiModifiable bool
}

// Node is one node as RAPI shows it.
type Node struct {
	Name      string
	UUID      string
	PrimaryIP string
	// Role is one of "master", "candidate", "regular", "drained" and
	// "offline", as `ganeti-node list` shows it.
	Role            string
	MasterCandidate bool
	MasterCapable   bool
	VMCapable       bool
	Offline         bool
	Drained         bool
}

// Master tells a node where the master is.
type Master struct {
	// Self is true on the master itself.
	Self bool
	// Name and IP are the master's; empty when unknown.
	Name string
	IP   string
}

// OpKind names an operation a job can run.
type OpKind string

// The operations RAPI requests are turned into. The first six are the
// CLI's operations of the same name; drain and undrain have no CLI
// operation yet.
const (
	OpPromote OpKind = "promote"
	OpDemote  OpKind = "demote"
	OpOffline OpKind = "offline"
	OpOnline  OpKind = "online"
	// OpModify sets master_capable to Op.MasterCapable.
	OpModify  OpKind = "modify"
	OpDrain   OpKind = "drain"
	OpUndrain OpKind = "undrain"
)

// Op is one step of a job.
type Op struct {
	Kind OpKind `json:"op"`
	// Node is the name of the node the operation acts on.
	Node string `json:"node_name"`
	// AutoPromote lets demote, offline and drain promote another node
	// when the candidate pool would fall short.
	AutoPromote bool `json:"auto_promote,omitempty"`
	// MasterCapable is the new value for OpModify; nil otherwise.
	MasterCapable *bool `json:"master_capable,omitempty"`
}

// Result is the outcome of a successful operation.
type Result struct {
	// Message is the one-line summary the CLI prints.
	Message string `json:"message"`
	// Unreachable lists nodes the master could not update yet; it keeps
	// retrying them.
	Unreachable []string `json:"unreachable,omitempty"`
}
