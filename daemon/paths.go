package daemon

import (
	"path/filepath"
)

// Paths names every file of a node under its root prefix (DESIGN
// "Files on a node"). The zero value is unusable; use NewPaths.
type Paths struct {
	Root string
}

// NewPaths returns the paths under root ("/" in production).
func NewPaths(root string) Paths {
	if root == "" {
		root = "/"
	}
	return Paths{Root: filepath.Clean(root)}
}

// Under joins p (an absolute path such as /etc/foo) onto the root.
func (p Paths) Under(abs string) string { return filepath.Join(p.Root, abs) }

// StateDir is /var/lib/ganeti.
func (p Paths) StateDir() string { return p.Under("/var/lib/ganeti") }

func (p Paths) state(name string) string { return filepath.Join(p.StateDir(), name) }

// NodeJSON is this node's identity file.
func (p Paths) NodeJSON() string { return p.state("node.json") }

// RaftDir holds the Raft log and snapshots.
func (p Paths) RaftDir() string { return p.state("raft") }

// PubKeys is the ganeti_pub_keys file.
func (p Paths) PubKeys() string { return p.state("ganeti_pub_keys") }

// KnownHosts is the cluster's known_hosts file.
func (p Paths) KnownHosts() string { return p.state("known_hosts") }

// CACert, CAKey, ServerPEM, ClientPEM and GossipKey are the TLS and
// gossip key files.
func (p Paths) CACert() string    { return p.state("ca.pem") }
func (p Paths) CAKey() string     { return p.state("ca-key.pem") }
func (p Paths) ServerPEM() string { return p.state("server.pem") }
func (p Paths) ClientPEM() string { return p.state("client.pem") }
func (p Paths) GossipKey() string { return p.state("gossip.key") }

// AdmissionFile records the candidate map this node last applied with
// its Raft index, so a restart never admits by an older map.
func (p Paths) AdmissionFile() string { return p.state("admission.json") }

// SSHDir is root's .ssh directory, where the node's own key pair is.
func (p Paths) SSHDir() string { return p.Under("/root/.ssh") }

// Socket is the Unix socket the CLI talks to.
func (p Paths) Socket() string {
	return p.Under("/var/run/ganeti/socket/ganeti-node.sock")
}
