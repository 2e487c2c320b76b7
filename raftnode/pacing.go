package raftnode

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// nonVoterHeartbeatEvery is how often the leader heartbeats a non-voter.
//
// hashicorp/raft heartbeats every peer every HeartbeatTimeout/10 (20-40
// ms here) on top of the appends it sends each CommitTimeout (50-100
// ms). Voters need that pace: it is what keeps the leader's lease and
// lets a dead leader be noticed within the timeout. A non-voter (a
// normal node) never stands for election and already hears from the
// leader with every append, so its heartbeats only cost CPU: on a
// 40-node cluster they were a third of the leader's idle load. One per
// second is kept so that a stalled append pipeline still shows in the
// leader's view of the peer.
const nonVoterHeartbeatEvery = time.Second

// pacedTransport is the network transport with heartbeats to non-voters
// slowed to nonVoterHeartbeatEvery. Every heartbeat it sends is real;
// the peer's heartbeat goroutine in the leader just waits longer
// between them. Everything else passes through unchanged.
type pacedTransport struct {
	*raft.NetworkTransport
	isVoter func(raft.ServerID) bool
	now     func() time.Time
	sleep   func(time.Duration)

	mu   sync.Mutex
	next map[raft.ServerID]time.Time
}

func newPacedTransport(t *raft.NetworkTransport,
	isVoter func(raft.ServerID) bool) *pacedTransport {
	return &pacedTransport{NetworkTransport: t, isVoter: isVoter,
		now: time.Now, sleep: time.Sleep, next: map[raft.ServerID]time.Time{}}
}

// AppendEntries holds a heartbeat to a non-voter until its turn.
func (t *pacedTransport) AppendEntries(id raft.ServerID,
	target raft.ServerAddress, args *raft.AppendEntriesRequest,
	resp *raft.AppendEntriesResponse) error {
	if isHeartbeat(args) && !t.isVoter(id) {
		t.mu.Lock()
		now := t.now()
		wait := t.next[id].Sub(now)
		t.next[id] = now.Add(max(wait, 0) + nonVoterHeartbeatEvery)
		t.mu.Unlock()
		if wait > 0 {
			t.sleep(wait) // paces this peer's heartbeat goroutine only
		}
	}
	return t.NetworkTransport.AppendEntries(id, target, args, resp)
}

// isHeartbeat matches what hashicorp/raft's heartbeat loop sends: a
// term and leader, and no log position, entries or commit index.
func isHeartbeat(a *raft.AppendEntriesRequest) bool {
	return a.Term != 0 && a.PrevLogEntry == 0 && a.PrevLogTerm == 0 &&
		len(a.Entries) == 0 && a.LeaderCommitIndex == 0
}

// voterCache answers "is this server a voter" from the Raft
// configuration, read at most once per refresh interval.
type voterCache struct {
	raft    atomic.Pointer[raft.Raft] // nil until Raft has started
	refresh time.Duration

	mu     sync.Mutex
	at     time.Time
	voters map[raft.ServerID]bool
}

// isVoter reports whether id votes; an unknown id or a configuration
// that cannot be read counts as a voter, which only means no pacing.
func (c *voterCache) isVoter(id raft.ServerID) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.voters == nil || time.Since(c.at) > c.refresh {
		if r := c.raft.Load(); r != nil {
			cfg := r.GetConfiguration().Configuration()
			c.voters = map[raft.ServerID]bool{}
			for _, s := range cfg.Servers {
				c.voters[s.ID] = s.Suffrage == raft.Voter
			}
			c.at = time.Now()
		}
	}
	v, known := c.voters[id]
	return v || !known
}
