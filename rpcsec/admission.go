package rpcsec

import (
	"log/slog"
	"maps"
	"sync"
)

// Admission holds the candidate map this node has applied, node UUID ->
// client certificate Digest, and the connections it admitted under it.
// It is safe for concurrent use. The zero value holds an empty map,
// which admits nobody, and does not log.
type Admission struct {
	log *slog.Logger

	mu    sync.Mutex
	m     map[string]string
	conns map[*Conn]struct{}
}

// NewAdmission returns an Admission with an empty map. Revoked
// connections are logged to log; nil discards the logs.
func NewAdmission(log *slog.Logger) *Admission {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Admission{log: log, conns: map[*Conn]struct{}{}}
}

func (a *Admission) logger() *slog.Logger {
	if a.log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return a.log
}

// Set replaces the candidate map with a copy of m. Before it returns,
// every admitted connection whose node left the map or whose digest
// changed is closed and logged.
func (a *Admission) Set(m map[string]string) {
	type revoked struct {
		c   *Conn
		why Reason
	}
	var closed []revoked
	a.mu.Lock()
	a.m = maps.Clone(m)
	for c := range a.conns {
		d, ok := a.m[c.node]
		if d == c.digest {
			continue
		}
		why := ReasonUnknownNode
		if ok {
			why = ReasonDigestMismatch
		}
		delete(a.conns, c)
		// The raw socket: closing the TLS layer could block on a
		// close_notify to a peer that does not read.
		c.raw.Close()
		closed = append(closed, revoked{c, why})
	}
	a.mu.Unlock()

	for _, r := range closed {
		a.logger().Info("closing revoked connection", "peer", r.c.peer,
			"node", r.c.node, "reason", r.why)
	}
}

// lookup returns the digest the map holds for node.
func (a *Admission) lookup(node string) (string, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	d, ok := a.m[node]
	return d, ok
}

// track records an admitted connection. It reports false, and tracks
// nothing, if the map changed since the handshake so that c's peer is
// no longer admitted.
func (a *Admission) track(c *Conn) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.m[c.node] != c.digest {
		return false
	}
	if a.conns == nil {
		a.conns = map[*Conn]struct{}{}
	}
	a.conns[c] = struct{}{}
	return true
}

func (a *Admission) untrack(c *Conn) {
	a.mu.Lock()
	delete(a.conns, c)
	a.mu.Unlock()
}
