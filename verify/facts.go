package verify

import (
	"time"

	"ganeti-node/fsm"
)

// Facts is everything the master gathered for one verify. The daemon
// fills it; Check only reads it.
type Facts struct {
	// Now is the time certificates are judged at.
	Now time.Time
	// State is the committed configuration the master verifies against.
	State *fsm.State
	// Verifier is the UUID of the node that gathered the facts, the
	// master.
	Verifier string
	// CAPEM is the verifier's ca.pem: the CA certificates the cluster
	// trusts now.
	CAPEM string
	// Raft maps node UUID to its suffrage in the Raft configuration,
	// "voter" or "nonvoter"; a node that is no member is absent. Nil
	// with RaftErr set when the configuration could not be read.
	Raft    map[string]string
	RaftErr string
	// Nodes holds what was gathered from each online node, by UUID.
	// Offline nodes are not verified and have no entry.
	Nodes map[string]*NodeFacts
}

// NodeFacts is what was gathered from one node. A nil report comes
// with the error that explains it.
type NodeFacts struct {
	// Self is the node's own report over the secured RPC.
	Self   *SelfReport
	RPCErr string
	// SSH is the master's Report over SSH: a real login with the
	// master's key, and the node's files as the ssh-update helper sees
	// them.
	SSH    *SSHReport
	SSHErr *Failure
	// HostKey is the host key sshd offers, checked against the
	// master's known_hosts.
	HostKey HostKeyResult
	// Logins are, for a master candidate, its own attempts to log in
	// over SSH to every online node; nil with LoginsErr set when the
	// candidate could not be asked.
	Logins    []Login
	LoginsErr string
}

// FailureKind sorts an SSH failure by what the operator must fix.
type FailureKind string

// The failure kinds.
const (
	// Unreachable: no TCP connection or SSH handshake (or a time-out).
	Unreachable FailureKind = "unreachable"
	// HostKey: the host key was refused by known_hosts.
	HostKey FailureKind = "host_key"
	// AuthRefused: sshd refused the client's key.
	AuthRefused FailureKind = "auth_refused"
	// Remote: the login worked but the ssh-update helper failed.
	Remote FailureKind = "remote"
	// Other: anything else.
	Other FailureKind = "other"
)

// Failure is one failed SSH attempt.
type Failure struct {
	Kind    FailureKind `json:"kind"`
	Message string      `json:"message"`
}

// Login is one master candidate's SSH login attempt to Target (a node
// UUID). Failure is nil when the login worked.
type Login struct {
	Target  string   `json:"target"`
	Failure *Failure `json:"failure,omitempty"`
}

// HostKeyStatus is the outcome of a host key check.
type HostKeyStatus string

// The host key outcomes; the zero value means "not checked".
const (
	HostKeyOK       HostKeyStatus = "ok"
	HostKeyMismatch HostKeyStatus = "mismatch"
	HostKeyUnknown  HostKeyStatus = "unknown"
	HostKeyError    HostKeyStatus = "error"
)

// HostKeyResult is a checked host key with the evidence.
type HostKeyResult struct {
	Status  HostKeyStatus
	Message string
}

// FileFact is one existing file of a node: its root-relative path,
// like "/var/lib/ganeti/ca.pem", and its permission bits in octal.
type FileFact struct {
	Path string `json:"path"`
	Mode string `json:"mode"`
}

// SSHReport is what the master's SSH Report says about a node.
type SSHReport struct {
	// PublicKeyFP is the SHA-256 fingerprint of the node's own SSH key;
	// empty with PublicKeyErr set when the node has no usable key.
	PublicKeyFP  string
	PublicKeyErr string
	// ClientCert is the PEM of client.pem's certificates; empty when
	// the node has none.
	ClientCert string
	// Files are the existing files of the state and own-key
	// directories.
	Files []FileFact
}

// SelfReport is a node's description of itself, sent over the secured
// RPC to the master. It carries no secret: certificates without keys,
// key fingerprints, file modes.
type SelfReport struct {
	UUID         string `json:"uuid"`
	Name         string `json:"name"`
	AppliedIndex uint64 `json:"applied_index"`
	// ClientCert and ServerCert are the certificate blocks (PEM) of
	// client.pem and server.pem as they are on disk; empty when absent.
	ClientCert string `json:"client_cert,omitempty"`
	ServerCert string `json:"server_cert,omitempty"`
	// LoadedClientDigest is the digest of the client certificate the
	// running daemon presents.
	LoadedClientDigest string `json:"loaded_client_digest,omitempty"`
	// PublicKeyFP is the fingerprint of the node's own SSH key; empty
	// with PublicKeyErr set when it cannot be loaded.
	PublicKeyFP  string     `json:"public_key_fp,omitempty"`
	PublicKeyErr string     `json:"public_key_error,omitempty"`
	Files        []FileFact `json:"files"`
	// AuthorizedKeys are the keys of the managed authorized_keys file,
	// in file order; AuthorizedKeysErr says why it could not be read (a
	// missing file is empty, not an error).
	AuthorizedKeys    []AuthKeyFact `json:"authorized_keys"`
	AuthorizedKeysErr string        `json:"authorized_keys_error,omitempty"`
	// PubKeysPresent says whether ganeti_pub_keys exists; PubKeys are
	// its entries, PubKeysErr why it could not be parsed.
	PubKeysPresent bool         `json:"pub_keys_present"`
	PubKeys        []PubKeyFact `json:"pub_keys"`
	PubKeysErr     string       `json:"pub_keys_error,omitempty"`
	SSHD           SSHDFact     `json:"sshd"`
}

// AuthKeyFact is one key line of an authorized_keys file.
type AuthKeyFact struct {
	Fingerprint string `json:"fingerprint"`
	// Managed is true for a line ganeti-node manages; ManagedUUID is
	// the node UUID its marker names.
	Managed     bool   `json:"managed,omitempty"`
	ManagedUUID string `json:"managed_uuid,omitempty"`
}

// PubKeyFact is one entry of ganeti_pub_keys.
type PubKeyFact struct {
	UUID        string `json:"uuid"`
	Fingerprint string `json:"fingerprint"`
}

// SSHDFact is what `sshd -T` says about where sshd takes keys from.
type SSHDFact struct {
	// Checked is false when sshd was not asked (Err says why, or the
	// cluster does not manage SSH).
	Checked bool `json:"checked"`
	// Files are the authorized_keys files sshd reads for root, as
	// absolute paths.
	Files []string `json:"files,omitempty"`
	// Managed is the absolute path of the file the cluster manages.
	Managed string `json:"managed,omitempty"`
	// Command is sshd's AuthorizedKeysCommand, "" when none.
	Command string `json:"command,omitempty"`
	Err     string `json:"error,omitempty"`
}
