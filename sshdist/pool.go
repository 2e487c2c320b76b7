package sshdist

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// Pool defaults.
const (
	// DefaultPoolIdle is how long a Pool keeps a connection that no
	// operation used.
	DefaultPoolIdle = 5 * time.Minute
	// PoolConcurrency is how many hosts a pool Session's FanOut works
	// on at once. A request on an open connection costs the master a
	// JSON round trip, so every host of a large cluster can be in
	// flight together; new connections are still dialled at most
	// ClientConfig.Concurrency at a time.
	PoolConcurrency = 128
	// helpersPerConn bounds the helper sessions on one connection,
	// below sshd's default MaxSessions of 10.
	helpersPerConn = 4
)

// ErrPoolClosed is returned by a pool Session's Update after the Pool
// was closed.
var ErrPoolClosed = errors.New("sshdist: SSH connection pool closed")

// Pool keeps the master's SSH connections open between operations: one
// connection per host, each with an `ssh-update --serve` helper that
// answers request after request (ServeUpdates). An update on a warm
// connection is a JSON round trip instead of a TCP connect, key
// exchange, login and process start, which is what makes fan-outs
// cheap.
//
// Trust is checked as on a fresh connection: before each reuse the
// host key the connection was opened with must still be pinned in
// known_hosts (a removed or re-keyed host is redialled, and refused
// there). A connection stays logged in with the key it was opened
// with; the owner closes the Pool when its own key changes or it stops
// being the master. Connections idle for longer than the idle limit
// are closed. Client.NewSession uses a private Pool that lives as long
// as its Session. It is safe for concurrent use.
type Pool struct {
	c       *Client
	idle    time.Duration
	dialSem chan struct{}
	stop    chan struct{}

	mu    sync.Mutex
	conns map[string]*poolConn // nil once closed

	dials   atomic.Int64
	helpers atomic.Int64
	pins    pinCache
}

// poolConn is a pooled connection, or one being dialled: ready is
// closed once client (or the failure) is known.
type poolConn struct {
	ready   chan struct{}
	client  *ssh.Client
	hostKey ssh.PublicKey
	slots   chan struct{} // one per helper in use
	// oneShot is set once the host's helper turned out not to serve a
	// stream: each update then runs the one-shot helper.
	oneShot atomic.Bool

	mu       sync.Mutex
	idle     []*helper
	lastUsed time.Time
}

// NewPool returns an empty Pool that logs in with c's key; idle zero
// means DefaultPoolIdle. Close it when done.
func NewPool(c *Client, idle time.Duration) *Pool {
	if idle <= 0 {
		idle = DefaultPoolIdle
	}
	p := &Pool{c: c, idle: idle, conns: map[string]*poolConn{},
		dialSem: make(chan struct{}, c.cfg.Concurrency),
		stop:    make(chan struct{})}
	p.pins.path = c.cfg.KnownHostsPath
	go p.reap()
	return p
}

// KeyFingerprint is the SHA256 fingerprint of the key the pool logs in
// with.
func (p *Pool) KeyFingerprint() string { return p.c.KeyFingerprint() }

// Dials is how many connections the pool has dialled.
func (p *Pool) Dials() int64 { return p.dials.Load() }

// Helpers is how many helper sessions the pool has started.
func (p *Pool) Helpers() int64 { return p.helpers.Load() }

// NewSession returns a Session whose updates use the pool's
// connections. Closing the Session leaves them open.
func (p *Pool) NewSession() *Session {
	return &Session{c: p.c, pool: p, concurrency: PoolConcurrency}
}

// Close closes every connection; updates in flight fail, later ones
// return ErrPoolClosed. Close is idempotent.
func (p *Pool) Close() {
	p.mu.Lock()
	conns := p.conns
	p.conns = nil
	p.mu.Unlock()
	if conns == nil {
		return
	}
	close(p.stop)
	for _, pc := range conns {
		pc.close()
	}
}

// Forget closes the pool's connection to addr, if any: the host left
// the cluster.
func (p *Pool) Forget(addr string) {
	p.mu.Lock()
	pc := p.conns[addr]
	delete(p.conns, addr)
	p.mu.Unlock()
	if pc != nil {
		pc.close()
	}
}

// close closes the connection once its dial is over; the helpers'
// sessions end with it.
func (pc *poolConn) close() {
	go func() {
		<-pc.ready
		if pc.client != nil {
			pc.client.Close()
		}
	}()
}

// drop forgets pc if it is still the connection for addr, and closes it.
func (p *Pool) drop(addr string, pc *poolConn) {
	p.mu.Lock()
	if p.conns[addr] == pc {
		delete(p.conns, addr)
	}
	p.mu.Unlock()
	pc.close()
}

// reap closes connections that no update used for the idle limit.
func (p *Pool) reap() {
	t := time.NewTicker(max(p.idle/4, 100*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case now := <-t.C:
			p.mu.Lock()
			for addr, pc := range p.conns {
				if pc.idleSince(now) > p.idle {
					delete(p.conns, addr)
					pc.close()
				}
			}
			p.mu.Unlock()
		}
	}
}

// idleSince is how long pc has had no update in flight, or zero while
// one is (or while it is being dialled).
func (pc *poolConn) idleSince(now time.Time) time.Duration {
	select {
	case <-pc.ready:
	default:
		return 0
	}
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if len(pc.slots) > 0 || pc.lastUsed.IsZero() {
		return 0
	}
	return now.Sub(pc.lastUsed)
}

// conn returns the pooled connection to t, dialling it (and counting
// the dial on s) if there is none or if its host key is no longer
// pinned. fresh says the connection was dialled by this call.
func (p *Pool) conn(ctx context.Context, s *Session, t Target,
	policy HostKeyPolicy) (pc *poolConn, fresh bool, err error) {
	for {
		p.mu.Lock()
		if p.conns == nil {
			p.mu.Unlock()
			return nil, false, ErrPoolClosed
		}
		pc = p.conns[t.Addr]
		if pc == nil {
			pc = &poolConn{ready: make(chan struct{}),
				slots: make(chan struct{}, helpersPerConn)}
			p.conns[t.Addr] = pc
			p.mu.Unlock()
			s.dials.Add(1)
			return pc, true, p.dialInto(ctx, t, policy, pc)
		}
		p.mu.Unlock()
		select {
		case <-pc.ready:
		case <-ctx.Done():
			return nil, false, ctx.Err()
		}
		if pc.client == nil {
			continue // that dial failed and is forgotten; dial again
		}
		if err := p.pins.check(t.Addr, pc.hostKey); err != nil {
			p.c.cfg.Log.Debug("pooled connection's host key no longer "+
				"pinned; redialling", "node", t.Name, "addr", t.Addr,
				"err", err)
			p.drop(t.Addr, pc)
			continue
		}
		return pc, false, nil
	}
}

// dialInto dials t for pc, at most ClientConfig.Concurrency dials at a
// time; ConnectTimeout counts from the start of this dial.
func (p *Pool) dialInto(ctx context.Context, t Target, policy HostKeyPolicy,
	pc *poolConn) error {
	var client *ssh.Client
	var key ssh.PublicKey
	var err error
	select {
	case p.dialSem <- struct{}{}:
		p.dials.Add(1)
		client, key, err = p.c.dial(ctx, t, policy)
		<-p.dialSem
	case <-ctx.Done():
		err = &UnreachableError{Node: t.Name, Addr: t.Addr, Err: ctx.Err()}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	defer close(pc.ready)
	if err != nil {
		if p.conns[t.Addr] == pc {
			delete(p.conns, t.Addr)
		}
		return err
	}
	pc.client, pc.hostKey, pc.lastUsed = client, key, time.Now()
	if p.conns == nil {
		client.Close() // the pool closed while dialling
		return ErrPoolClosed
	}
	return nil
}

// update sends body to t's helper, over the pooled connection, within
// ctx. A reused connection or helper that turns out to be gone before
// it answered (the host closed it, the helper idled out) is replaced
// once; the requests are idempotent, so a resend is safe even if the
// first one was applied.
func (p *Pool) update(ctx context.Context, s *Session, t Target,
	policy HostKeyPolicy, body []byte) (*Response, error) {
	for attempt := 0; ; attempt++ {
		pc, fresh, err := p.conn(ctx, s, t, policy)
		if err != nil {
			return nil, err
		}
		if pc.oneShot.Load() {
			return p.runOneShot(ctx, t, pc, body)
		}
		resp, reused, err := p.exchange(ctx, t, pc, body)
		var gone *helperGoneError
		if !errors.As(err, &gone) {
			return resp, err
		}
		if attempt == 0 && (reused || !fresh) && ctx.Err() == nil {
			p.c.cfg.Log.Debug("pooled helper gone; retrying on a new one",
				"node", t.Name, "err", gone.err)
			continue
		}
		if !reused && ctx.Err() == nil && p.alive(t, pc) {
			// A helper that dies before its first answer on a working
			// connection may be an older ganeti-node without --serve
			// (a rolling upgrade): the one-shot helper still works.
			resp, err := p.runOneShot(ctx, t, pc, body)
			var remote *RemoteError
			if err == nil || (errors.As(err, &remote) && resp != nil) {
				pc.oneShot.Store(true)
				p.c.cfg.Log.Info("host's ssh-update does not serve a "+
					"stream (older ganeti-node?); one session per update",
					"node", t.Name, "serve_err", gone.Error())
			}
			return resp, err
		}
		return nil, gone.public(t)
	}
}

// alive reports whether pc's connection still answers, and drops it
// if not.
func (p *Pool) alive(t Target, pc *poolConn) bool {
	if !pc.answers() {
		p.drop(t.Addr, pc)
		return false
	}
	return true
}

// answers sends a global request that sshd refuses but must answer:
// an error means the connection is gone.
func (pc *poolConn) answers() bool {
	_, _, err := pc.client.SendRequest("keepalive@ganeti-node", true, nil)
	return err == nil
}

// runOneShot runs the one-shot helper in a new session on pc: the way
// to update a host whose helper cannot serve a stream.
func (p *Pool) runOneShot(ctx context.Context, t Target, pc *poolConn,
	body []byte) (*Response, error) {
	sess, err := pc.client.NewSession()
	if err != nil {
		p.drop(t.Addr, pc)
		return nil, &UnreachableError{Node: t.Name, Addr: t.Addr, Err: err}
	}
	pc.touch()
	return runInSession(ctx, t, sess, p.c.cfg.RemoteCommand, body,
		func() { p.drop(t.Addr, pc) })
}

// exchange takes a helper of pc (starting one if none is idle), runs
// one request on it and returns the helper to pc if it is still good.
// reused says the helper had answered before. Anything that outlives
// ctx drops the whole connection: the host may be wedged.
func (p *Pool) exchange(ctx context.Context, t Target, pc *poolConn,
	body []byte) (resp *Response, reused bool, err error) {
	select {
	case pc.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, false, fmt.Errorf("sshdist: ssh-update on node %q "+
			"(%s): waiting for a session: %w", t.Name, t.Addr, ctx.Err())
	}
	defer func() { <-pc.slots }()
	h := pc.takeIdle()
	reused = h != nil

	type result struct {
		h        *helper
		resp     *Response
		err      error
		deadConn bool
	}
	done := make(chan result, 1)
	go func() {
		h := h
		if h == nil {
			var err error
			if h, err = p.startHelper(pc); err != nil {
				done <- result{err: err, deadConn: true}
				return
			}
		}
		resp, err := h.roundTrip(t, body)
		var gone *helperGoneError
		if errors.As(err, &gone) {
			// Was it the helper alone, or the whole connection?
			done <- result{h, resp, err, !pc.answers()}
			return
		}
		done <- result{h, resp, err, false}
	}()
	var r result
	select {
	case r = <-done:
	case <-ctx.Done():
		p.drop(t.Addr, pc)
		<-done
		return nil, reused, fmt.Errorf("sshdist: ssh-update on node %q "+
			"(%s): %w", t.Name, t.Addr, ctx.Err())
	}
	var gone *helperGoneError
	switch {
	case r.deadConn:
		if r.h != nil {
			r.h.close()
		}
		p.drop(t.Addr, pc)
	case errors.As(r.err, &gone) || r.h.broken:
		r.h.close()
	default:
		pc.putIdle(r.h)
	}
	return r.resp, reused, r.err
}

func (pc *poolConn) takeIdle() *helper {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	n := len(pc.idle)
	if n == 0 {
		return nil
	}
	h := pc.idle[n-1]
	pc.idle = pc.idle[:n-1]
	return h
}

// touch records a use of pc, for the idle limit.
func (pc *poolConn) touch() {
	pc.mu.Lock()
	pc.lastUsed = time.Now()
	pc.mu.Unlock()
}

func (pc *poolConn) putIdle(h *helper) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	pc.idle = append(pc.idle, h)
	pc.lastUsed = time.Now()
}

// helper is one `ssh-update --serve` session on a pooled connection,
// used by one update at a time.
type helper struct {
	sess   *ssh.Session
	stdin  io.WriteCloser
	stdout *bufio.Reader
	stderr *lockedCapped
	// broken is set when the stream can no longer be trusted (an
	// over-long or undecodable response).
	broken bool
}

// startHelper opens a session on pc and starts the helper in it.
func (p *Pool) startHelper(pc *poolConn) (*helper, error) {
	sess, err := pc.client.NewSession()
	if err != nil {
		return nil, &helperGoneError{err: err}
	}
	h := &helper{sess: sess, stderr: &lockedCapped{b: cappedBuffer{max: maxStderrSize}}}
	stdin, err1 := sess.StdinPipe()
	stdout, err2 := sess.StdoutPipe()
	sess.Stderr = h.stderr
	if err := errors.Join(err1, err2); err != nil {
		sess.Close()
		return nil, &helperGoneError{err: err}
	}
	if err := sess.Start(p.c.cfg.RemoteCommand + " --serve"); err != nil {
		sess.Close()
		return nil, &helperGoneError{err: err}
	}
	p.helpers.Add(1)
	h.stdin, h.stdout = stdin, bufio.NewReaderSize(stdout, 64<<10)
	return h, nil
}

// roundTrip writes one request line and reads one response line.
func (h *helper) roundTrip(t Target, body []byte) (*Response, error) {
	line := make([]byte, 0, len(body)+1)
	line = append(append(line, body...), '\n')
	if _, err := h.stdin.Write(line); err != nil {
		return nil, h.gone(err)
	}
	out, err := readLine(h.stdout, maxResponseSize)
	remote := func(msg string) *RemoteError {
		return &RemoteError{Node: t.Name, Addr: t.Addr, Msg: msg}
	}
	switch {
	case errors.Is(err, ErrRequestTooLarge):
		h.broken = true
		return nil, remote(fmt.Sprintf("response longer than %d bytes",
			maxResponseSize))
	case err != nil:
		return nil, h.gone(err)
	}
	resp := &Response{}
	if err := json.Unmarshal(out, resp); err != nil {
		h.broken = true
		return nil, remote(fmt.Sprintf("invalid response: %v: %s", err,
			h.stderr.tail()))
	}
	if resp.Error != "" {
		return resp, remote(resp.Error)
	}
	return resp, nil
}

// gone waits for the helper's exit and describes why it stopped
// answering.
func (h *helper) gone(err error) *helperGoneError {
	h.stdin.Close()
	if werr := h.sess.Wait(); werr != nil {
		err = werr
	}
	return &helperGoneError{err: err, stderr: h.stderr.tail()}
}

func (h *helper) close() {
	h.stdin.Close()
	h.sess.Close()
}

// helperGoneError is a helper (or its session) that ended before it
// answered.
type helperGoneError struct {
	err    error
	stderr string
}

func (e *helperGoneError) Error() string {
	return fmt.Sprintf("helper ended without an answer: %v: %s", e.err, e.stderr)
}

// public turns e into the error an Update caller sees: the helper
// could not run, with its exit status and stderr.
func (e *helperGoneError) public(t Target) error {
	if e.stderr == "" {
		return &UnreachableError{Node: t.Name, Addr: t.Addr, Err: e.err}
	}
	return &RemoteError{Node: t.Name, Addr: t.Addr,
		Msg: fmt.Sprintf("%v: %s", e.err, e.stderr)}
}

// lockedCapped is a cappedBuffer that the session's stderr copier and
// the reader of an error message share.
type lockedCapped struct {
	mu sync.Mutex
	b  cappedBuffer
}

func (l *lockedCapped) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedCapped) tail() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.buf.Len() == 0 {
		return ""
	}
	return l.b.tail()
}

// pinCache answers "is this host key still pinned for this address"
// from a parse of known_hosts that is redone only when the file
// changes (known_hosts is always replaced by rename, so a new inode,
// size or modification time means new content).
type pinCache struct {
	path string

	mu    sync.Mutex
	stamp [3]int64
	cb    ssh.HostKeyCallback
}

func (c *pinCache) check(addr string, key ssh.PublicKey) error {
	st, err := os.Stat(c.path)
	if err != nil {
		return err
	}
	stamp := [3]int64{st.ModTime().UnixNano(), st.Size(), 0}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		stamp[2] = int64(sys.Ino)
	}
	c.mu.Lock()
	if c.cb == nil || stamp != c.stamp {
		cb, err := knownhosts.New(c.path)
		if err != nil {
			c.mu.Unlock()
			return err
		}
		c.cb, c.stamp = cb, stamp
	}
	cb := c.cb
	c.mu.Unlock()
	return cb(addr, stringAddr(addr), key)
}
