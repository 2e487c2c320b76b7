// Package raftnode runs the embedded Raft instance that replicates the
// cluster configuration. Master candidates are voters, other online
// nodes non-voters; the leader is the master.
//
// Security role: raftnode never opens a socket of its own. Its
// transport is rpcsec's stream layer, so every Raft connection is
// mutual TLS and admitted only for a certificate in the candidate map.
// A normal node, being a non-voter, never starts an election and never
// dials another node.
package raftnode

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

// Config configures one Raft node.
type Config struct {
	// ID is the Raft server ID: the node UUID.
	ID string
	// Dir holds raft.db (log and stable store) and snapshots/.
	Dir string
	// Advertise is the address other nodes dial (primary IP, RPC port).
	Advertise net.Addr
	// HeartbeatTimeout is how long a follower waits without contact
	// from the leader before it starts an election.
	HeartbeatTimeout time.Duration
	// ElectionTimeout is how long a candidate waits for votes.
	ElectionTimeout time.Duration
	// LeaderLeaseTimeout is how long a leader stays leader without
	// reaching a quorum. It must not exceed HeartbeatTimeout.
	LeaderLeaseTimeout time.Duration
	// CommitTimeout bounds how long an entry waits before the leader
	// sends it without a batch; it is also the idle heartbeat pace.
	CommitTimeout time.Duration
	// SnapshotThreshold is the number of new log entries after which a
	// snapshot is taken; SnapshotInterval is how often that is checked.
	SnapshotThreshold uint64
	SnapshotInterval  time.Duration
	// TrailingLogs is how many entries stay in the log after a snapshot
	// so that slow followers catch up without a snapshot transfer.
	TrailingLogs uint64
	// ApplyTimeout bounds Apply and membership changes.
	ApplyTimeout time.Duration
	// Log receives Raft's own events (component=raft).
	Log *slog.Logger
}

// DefaultConfig returns the timings this project runs with. They start
// from raft.DefaultConfig() and are tightened for hosts on one LAN.
func DefaultConfig() Config {
	d := raft.DefaultConfig()
	return Config{
		// 1 s by default; a LAN round trip is well under 1 ms and the
		// leader heartbeats every HeartbeatTimeout/10, so 200 ms still
		// leaves ten missed heartbeats before a follower gives up. This
		// brings failover from about 1.7 s to about 0.4 s.
		HeartbeatTimeout: 200 * time.Millisecond,
		// Same reasoning as HeartbeatTimeout; elections on a LAN finish
		// in a few milliseconds.
		ElectionTimeout: 200 * time.Millisecond,
		// Must be <= HeartbeatTimeout. The default is half of it; at
		// 100 ms a loaded two-core host stalled long enough for a
		// healthy leader to step down, so take the whole 200 ms. It
		// only decides how fast a cut-off leader gives up, not how fast
		// the others replace a dead one.
		LeaderLeaseTimeout: 200 * time.Millisecond,
		// Unchanged from the default.
		CommitTimeout: d.CommitTimeout,
		// Config changes are rare and small: snapshot after 1024 entries
		// instead of 8192 so a restarted node replays less.
		SnapshotThreshold: 1024,
		SnapshotInterval:  d.SnapshotInterval,
		TrailingLogs:      1024,
		ApplyTimeout:      10 * time.Second,
		Log:               slog.Default(),
	}
}

// Validate names the first field that is unusable and the fix.
func (c Config) Validate() error {
	switch {
	case c.ID == "":
		return errors.New("raftnode: config: ID is empty; set it to the node UUID")
	case c.Dir == "":
		return errors.New("raftnode: config: Dir is empty; set the raft directory")
	case c.Advertise == nil:
		return errors.New("raftnode: config: Advertise is nil; set primary IP and port")
	case c.LeaderLeaseTimeout > c.HeartbeatTimeout:
		return errors.New("raftnode: config: LeaderLeaseTimeout exceeds " +
			"HeartbeatTimeout; lower it")
	case c.ApplyTimeout <= 0:
		return errors.New("raftnode: config: ApplyTimeout must be positive")
	}
	return nil
}

// Node is a running Raft member.
type Node struct {
	cfg    Config
	raft   *raft.Raft
	store  *raftboltdb.BoltStore
	trans  *raft.NetworkTransport
	notify chan bool
	done   chan struct{}
}

// Open starts Raft with the log in cfg.Dir and the transport over
// stream. onLeader is called (from a goroutine of its own) with true
// when this node becomes leader and false when it stops being leader.
func Open(cfg Config, f raft.FSM, stream raft.StreamLayer,
	onLeader func(bool)) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("raftnode: creating %q: %w", cfg.Dir, err)
	}
	hl := newHclog("raft", cfg.Log)

	store, err := raftboltdb.NewBoltStore(filepath.Join(cfg.Dir, "raft.db"))
	if err != nil {
		return nil, fmt.Errorf("raftnode: opening log store: %w", err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.Dir, 2, hl)
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("raftnode: opening snapshot store: %w", err)
	}
	trans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: stream, MaxPool: 3, Timeout: 5 * time.Second, Logger: hl,
	})

	n := &Node{cfg: cfg, store: store, trans: trans,
		notify: make(chan bool, 16), done: make(chan struct{})}
	voters := &voterCache{refresh: time.Second}
	r, err := raft.NewRaft(n.raftConfig(hl), f, store, store, snaps,
		newPacedTransport(trans, voters.isVoter))
	if err != nil {
		trans.Close()
		store.Close()
		return nil, fmt.Errorf("raftnode: starting raft: %w", err)
	}
	n.raft = r
	voters.raft.Store(r)
	go n.watchLeadership(onLeader)
	return n, nil
}

func (n *Node) raftConfig(hl hclog.Logger) *raft.Config {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(n.cfg.ID)
	rc.HeartbeatTimeout = n.cfg.HeartbeatTimeout
	rc.ElectionTimeout = n.cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = n.cfg.LeaderLeaseTimeout
	rc.CommitTimeout = n.cfg.CommitTimeout
	rc.SnapshotThreshold = n.cfg.SnapshotThreshold
	rc.SnapshotInterval = n.cfg.SnapshotInterval
	rc.TrailingLogs = n.cfg.TrailingLogs
	rc.NotifyCh = n.notify
	rc.Logger = hl
	return rc
}

func (n *Node) watchLeadership(onLeader func(bool)) {
	for {
		select {
		case v := <-n.notify:
			n.cfg.Log.Info("raft leadership changed", "leader", v)
			if onLeader != nil {
				onLeader(v)
			}
		case <-n.done:
			return
		}
	}
}
