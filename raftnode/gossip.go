package raftnode

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/hashicorp/memberlist"
)

// GossipConfig configures the memberlist instance that tells which
// nodes are alive. Gossip only feeds the `alive` column; it never
// changes the configuration, so a normal node taking part in it gains
// no power over other nodes.
type GossipConfig struct {
	// Name is this node's member name: the node name.
	Name string
	// BindIP and Port are where gossip listens (TCP and UDP).
	BindIP string
	Port   int
	// Key is the 32-byte AES key every message is encrypted with; a
	// missing key is an error, gossip never runs in the clear.
	Key []byte
	// Log receives memberlist's events (component=gossip).
	Log *slog.Logger
}

// Gossip is a running memberlist member.
type Gossip struct{ ml *memberlist.Memberlist }

// StartGossip joins no one yet; call Join with peers' addresses.
func StartGossip(cfg GossipConfig) (*Gossip, error) {
	if len(cfg.Key) != 32 {
		return nil, fmt.Errorf("raftnode: gossip key has %d bytes, want 32; "+
			"restore gossip.key from a master candidate", len(cfg.Key))
	}
	mc := memberlist.DefaultLANConfig()
	mc.Name = cfg.Name
	mc.BindAddr, mc.BindPort = cfg.BindIP, cfg.Port
	mc.AdvertiseAddr, mc.AdvertisePort = cfg.BindIP, cfg.Port
	mc.SecretKey = cfg.Key
	// LAN defaults probe every second; half a second notices a dead
	// node in about 3 s instead of about 7 s at negligible traffic.
	mc.ProbeInterval = 500 * time.Millisecond
	mc.Logger = newStdlog(cfg.Log)
	ml, err := memberlist.Create(mc)
	if err != nil {
		return nil, fmt.Errorf("raftnode: starting gossip on %s:%d: %w",
			cfg.BindIP, cfg.Port, err)
	}
	return &Gossip{ml: ml}, nil
}

// Join contacts the given host:port addresses; reaching one suffices.
func (g *Gossip) Join(addrs []string) (int, error) {
	if len(addrs) == 0 {
		return 0, nil
	}
	return g.ml.Join(addrs)
}

// Alive returns the names of the members currently believed alive.
func (g *Gossip) Alive() map[string]bool {
	out := map[string]bool{}
	for _, m := range g.ml.Members() {
		if m.State == memberlist.StateAlive {
			out[m.Name] = true
		}
	}
	return out
}

// Leave announces departure and stops gossip.
func (g *Gossip) Leave() {
	g.ml.Leave(time.Second)
	g.ml.Shutdown()
}
