package daemon

import (
	"encoding/json"
	"fmt"
	"os"

	"ganeti-node/atomicfile"
	"ganeti-node/fsm"
)

// NodeFile is the content of node.json: who this node is. It is written
// by init, or by the master over SSH at join, and read at start-up.
type NodeFile struct {
	Cluster    string `json:"cluster"`
	UUID       string `json:"uuid"`
	Name       string `json:"name"`
	PrimaryIP  string `json:"primary_ip"`
	RPCPort    int    `json:"rpc_port"`
	GossipPort int    `json:"gossip_port"`
	SSHPort    int    `json:"ssh_port"`
	// Seeds are gossip addresses to contact on first start, before the
	// node has learnt the member list from the configuration.
	Seeds []string `json:"seeds,omitempty"`
}

// Addr is the node's RPC address.
func (f *NodeFile) Addr() string {
	n := fsm.Node{PrimaryIP: f.PrimaryIP, RPCPort: f.RPCPort}
	return n.RPCAddr()
}

func loadNodeFile(path string) (*NodeFile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var f NodeFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("parsing %q: %w", path, err)
	}
	if !fsm.ValidUUID(f.UUID) || !fsm.ValidName(f.Name) {
		return nil, fmt.Errorf("%q holds no valid node identity", path)
	}
	return &f, nil
}

func (f *NodeFile) encode() []byte {
	b, _ := json.MarshalIndent(f, "", "  ")
	return append(b, '\n')
}

func writeNodeFile(path string, f *NodeFile) error {
	return atomicfile.Write(path, f.encode(), 0o644)
}
