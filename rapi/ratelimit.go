package rapi

import (
	"net"
	"sync"
	"time"
)

// overflowKey is the bucket shared by clients that arrive while the
// table is full, so a flood of addresses cannot buy unlimited guesses.
const overflowKey = "overflow"

// FailureLimiter bounds failed logins per client: each failure spends
// a token, a token comes back every Refill, and a client without
// tokens is refused before its password is looked at. Successes cost
// nothing and give nothing back, so a valid read-only account does not
// buy guesses at another one. Create it with NewFailureLimiter; it is
// safe for concurrent use.
type FailureLimiter struct {
	burst  float64
	refill time.Duration
	max    int
	now    func() time.Time

	mu      sync.Mutex
	clients map[string]*bucket
}

type bucket struct {
	tokens float64
	at     time.Time
}

// NewFailureLimiter returns a limiter that allows burst failures in a
// row and one more every refill, tracking at most maxClients clients
// (more share one bucket). now is the clock; nil means time.Now.
func NewFailureLimiter(burst int, refill time.Duration, maxClients int,
	now func() time.Time) *FailureLimiter {
	if now == nil {
		now = time.Now
	}
	return &FailureLimiter{burst: float64(burst), refill: refill,
		max: maxClients, now: now, clients: map[string]*bucket{}}
}

// Allow reports whether client may try a password now and, if not,
// how long until it may.
func (l *FailureLimiter) Allow(client string) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.lookup(client, false)
	if b == nil || l.fill(b) >= 1 {
		return true, 0
	}
	wait := time.Duration((1 - b.tokens) * float64(l.refill))
	return false, wait
}

// Fail records a failed login of client.
func (l *FailureLimiter) Fail(client string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.lookup(client, true)
	l.fill(b)
	if b.tokens >= 1 {
		b.tokens--
	} else {
		b.tokens = 0
	}
}

// lookup returns client's bucket, creating a full one if create is set.
func (l *FailureLimiter) lookup(client string, create bool) *bucket {
	if b := l.clients[client]; b != nil {
		return b
	}
	if len(l.clients) >= l.max {
		l.prune()
		if len(l.clients) >= l.max {
			client = overflowKey
			if b := l.clients[client]; b != nil {
				return b
			}
		}
	}
	if !create {
		return nil
	}
	b := &bucket{tokens: l.burst, at: l.now()}
	l.clients[client] = b
	return b
}

// fill adds the tokens earned since the bucket was last seen.
func (l *FailureLimiter) fill(b *bucket) float64 {
	now := l.now()
	if l.refill > 0 && now.After(b.at) {
		b.tokens += float64(now.Sub(b.at)) / float64(l.refill)
	}
	if b.tokens > l.burst {
		b.tokens = l.burst
	}
	b.at = now
	return b.tokens
}

// prune forgets clients whose bucket has refilled: they are the same
// as clients never seen.
func (l *FailureLimiter) prune() {
	for k, b := range l.clients {
		if l.fill(b) >= l.burst {
			delete(l.clients, k)
		}
	}
}

// ClientKey returns the limiter key of a remote address ("host:port"):
// the IP for IPv4, its /64 prefix for IPv6 (one host usually owns a
// whole /64).
func ClientKey(remoteAddr string) string {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return host
	}
	if v4 := ip.To4(); v4 != nil {
		return v4.String()
	}
	return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
}
