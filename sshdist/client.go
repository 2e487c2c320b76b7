package sshdist

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"
)

var (
	// ErrAuthRefused is returned, inside an error naming the host, when
	// a host does not accept the client's key: the key is not (or no
	// longer) in the host's authorized_keys.
	ErrAuthRefused = errors.New("sshdist: host refused the SSH key")
	// ErrSessionClosed is returned when a Session is used after Close.
	ErrSessionClosed = errors.New("sshdist: SSH session closed")
)

// Defaults of ClientConfig; a zero field means its default.
const (
	DefaultSSHUser        = "root"
	DefaultConnectTimeout = 10 * time.Second
	DefaultOpTimeout      = 60 * time.Second
	DefaultConcurrency    = 8
)

// Limits on what a host may send back.
const (
	maxResponseSize = 16 << 20
	maxStderrSize   = 64 << 10
	maxStderrInMsg  = 512
)

// ClientConfig configures the master's SSH client.
type ClientConfig struct {
	// KeyDir holds the master's own key pair (see LoadOwnKey). Required.
	KeyDir string
	// KnownHostsPath is the cluster's known_hosts file, which must
	// exist. Required: hosts are always verified.
	KnownHostsPath string
	// User is the remote user; "" means DefaultSSHUser.
	User string
	// RemoteCommand runs the ssh-update helper on a host, for example
	// "/usr/local/sbin/ganeti-node ssh-update". Required.
	RemoteCommand string
	// ConnectTimeout bounds TCP connect, handshake and authentication;
	// zero means DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// OpTimeout bounds one Update, connection included; zero means
	// DefaultOpTimeout.
	OpTimeout time.Duration
	// Concurrency is how many hosts FanOut works on at once; zero means
	// DefaultConcurrency. More than the master's cores buys little:
	// key exchange is CPU-bound on both ends.
	Concurrency int
	// Log receives fan-out summaries (info) and per-host detail
	// (debug); nil discards them.
	Log *slog.Logger
}

// DefaultClientConfig returns a ClientConfig with every default filled
// in; the caller still sets KeyDir, KnownHostsPath and RemoteCommand.
func DefaultClientConfig() ClientConfig {
	return ClientConfig{
		User:           DefaultSSHUser,
		ConnectTimeout: DefaultConnectTimeout,
		OpTimeout:      DefaultOpTimeout,
		Concurrency:    DefaultConcurrency,
	}
}

// Validate reports the first field of c that NewClient would refuse,
// naming the field and how to fix it.
func (c ClientConfig) Validate() error {
	switch {
	case c.KeyDir == "":
		return errors.New("sshdist: ClientConfig.KeyDir is empty; set it " +
			"to the directory of the master's own SSH key pair")
	case c.KnownHostsPath == "":
		return errors.New("sshdist: ClientConfig.KnownHostsPath is empty; " +
			"set it to the cluster's known_hosts (host keys are always checked)")
	case strings.TrimSpace(c.RemoteCommand) == "":
		return errors.New("sshdist: ClientConfig.RemoteCommand is empty; " +
			`set it to the helper, like "/usr/local/sbin/ganeti-node ssh-update"`)
	case c.ConnectTimeout < 0:
		return fmt.Errorf("sshdist: ClientConfig.ConnectTimeout %v is "+
			"negative; use 0 for the default %v", c.ConnectTimeout,
			DefaultConnectTimeout)
	case c.OpTimeout < 0:
		return fmt.Errorf("sshdist: ClientConfig.OpTimeout %v is negative; "+
			"use 0 for the default %v", c.OpTimeout, DefaultOpTimeout)
	case c.Concurrency < 0:
		return fmt.Errorf("sshdist: ClientConfig.Concurrency %d is "+
			"negative; use 0 for the default %d", c.Concurrency,
			DefaultConcurrency)
	}
	return nil
}

// withDefaults returns c with zero fields set to their defaults.
func (c ClientConfig) withDefaults() ClientConfig {
	d := DefaultClientConfig()
	if c.User == "" {
		c.User = d.User
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = d.ConnectTimeout
	}
	if c.OpTimeout == 0 {
		c.OpTimeout = d.OpTimeout
	}
	if c.Concurrency == 0 {
		c.Concurrency = d.Concurrency
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return c
}

// Client runs the ssh-update helper on hosts as the master. It is safe
// for concurrent use; connections live in Sessions.
type Client struct {
	cfg    ClientConfig
	signer ssh.Signer
}

// NewClient validates cfg, loads the master's own key from cfg.KeyDir
// and checks that cfg.KnownHostsPath exists. It does not connect.
func NewClient(cfg ClientConfig) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if _, err := os.Stat(cfg.KnownHostsPath); err != nil {
		return nil, fmt.Errorf("sshdist: known hosts %q: %w; create it "+
			"(init does; it may be empty)", cfg.KnownHostsPath, err)
	}
	signer, err := LoadOwnKey(cfg.KeyDir)
	if err != nil {
		return nil, fmt.Errorf("sshdist: loading the master's SSH key: %w", err)
	}
	return &Client{cfg: cfg, signer: signer}, nil
}

// KeyFingerprint is the SHA256 fingerprint of the key c logs in with.
func (c *Client) KeyFingerprint() string {
	return ssh.FingerprintSHA256(c.signer.PublicKey())
}

// Target is a host to update.
type Target struct {
	// Name is the node name, used in errors and logs.
	Name string
	// Addr is the host's SSH address, "ip:port".
	Addr string
}

// UnreachableError is returned when a host cannot be connected to:
// the TCP connection or the SSH handshake failed or timed out. The
// master retries such hosts later.
type UnreachableError struct {
	Node string
	Addr string
	Err  error
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("sshdist: node %q at %q is unreachable over SSH: %v",
		e.Node, e.Addr, e.Err)
}

// Unwrap returns the cause, such as a *net.OpError.
func (e *UnreachableError) Unwrap() error { return e.Err }

// RemoteError is returned when the helper ran on a host and failed: it
// answered with an error, exited non-zero or sent no valid response.
type RemoteError struct {
	Node string
	Addr string
	// Msg is the helper's error message, or what is known of the
	// failure (exit status and the tail of its stderr).
	Msg string
}

func (e *RemoteError) Error() string {
	return fmt.Sprintf("sshdist: ssh-update on node %q (%s) failed: %s",
		e.Node, e.Addr, e.Msg)
}

// Session is one operation's view of a Pool: its phases share one
// connection per host, FanOut works on at most its concurrency of hosts
// at once, and it counts the connections it made the pool dial. It is
// safe for concurrent use. Close it when the operation ends.
type Session struct {
	c           *Client
	pool        *Pool
	ownsPool    bool // Close closes pool too (Client.NewSession)
	concurrency int
	mu          sync.Mutex
	isClosed    bool
	dials       atomic.Int64
	// onResult, when set, sees each FanOut host's result as it lands.
	onResult func(Result)
}

// OnResult makes FanOut call f with each host's result as soon as that
// host is done, from the host's goroutine (f must be safe for
// concurrent use). It is for progress display; call it before FanOut.
func (s *Session) OnResult(f func(Result)) { s.onResult = f }

// NewSession starts an operation with connections of its own: a
// private Pool, closed with the Session, so that every host is dialled
// afresh (cluster verify proves logins this way). None is opened until
// an Update needs it; at most ClientConfig.Concurrency hosts at a time.
func (c *Client) NewSession() *Session {
	s := NewPool(c, 0).NewSession()
	s.ownsPool = true
	s.concurrency = c.cfg.Concurrency
	return s
}

// Close ends s: later updates return ErrSessionClosed. A session of
// Client.NewSession also closes its connections, and updates running
// on them fail; a pool's session leaves them to the pool.
func (s *Session) Close() {
	s.mu.Lock()
	s.isClosed = true
	s.mu.Unlock()
	if s.ownsPool {
		s.pool.Close()
	}
}

func (s *Session) closed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.isClosed
}

// dial connects and logs in to t within ConnectTimeout, checking the
// host key under policy, and returns the host key it accepted.
func (c *Client) dial(ctx context.Context, t Target,
	policy HostKeyPolicy) (*ssh.Client, ssh.PublicKey, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.ConnectTimeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", t.Addr)
	if err != nil {
		return nil, nil, &UnreachableError{Node: t.Name, Addr: t.Addr, Err: err}
	}
	// The handshake does not watch ctx; closing the socket ends it.
	stop := context.AfterFunc(ctx, func() { conn.Close() })

	var authTried atomic.Bool
	var hostKey ssh.PublicKey
	cfg := c.sshConfig(t.Addr, policy, &authTried)
	check := cfg.HostKeyCallback
	cfg.HostKeyCallback = func(host string, remote net.Addr, key ssh.PublicKey) error {
		err := check(host, remote, key)
		if err == nil {
			hostKey = key
		}
		return err
	}
	sshConn, chans, reqs, err := ssh.NewClientConn(conn, t.Addr, cfg)
	if !stop() && err == nil {
		sshConn.Close()
		err = ctx.Err()
	}
	if err != nil {
		conn.Close()
		return nil, nil, c.handshakeError(ctx, t, err, authTried.Load())
	}
	return ssh.NewClient(sshConn, chans, reqs), hostKey, nil
}

func (c *Client) sshConfig(addr string, policy HostKeyPolicy,
	authTried *atomic.Bool) *ssh.ClientConfig {
	return &ssh.ClientConfig{
		User: c.cfg.User,
		Auth: []ssh.AuthMethod{ssh.PublicKeysCallback(
			func() ([]ssh.Signer, error) {
				authTried.Store(true)
				return []ssh.Signer{c.signer}, nil
			})},
		HostKeyCallback:   HostKeyCallback(c.cfg.KnownHostsPath, policy),
		HostKeyAlgorithms: HostKeyAlgorithms(c.cfg.KnownHostsPath, addr),
		Timeout:           c.cfg.ConnectTimeout,
	}
}

// handshakeError sorts a failed handshake: host key refusals keep their
// own error, a failure once our key was offered is an auth refusal,
// anything else (timeouts, resets, no SSH server) is unreachability.
func (c *Client) handshakeError(ctx context.Context, t Target, err error,
	authTried bool) error {
	var hkErr *HostKeyError
	switch {
	case errors.As(err, &hkErr) || errors.Is(err, ErrHostKeyRevoked):
		return fmt.Errorf("sshdist: connecting to node %q: %w", t.Name, err)
	case ctx.Err() != nil:
		err = fmt.Errorf("handshake: %w", ctx.Err())
	case authTried:
		return fmt.Errorf("%w: node %q at %q as %q: %w; install the "+
			"master's key there (ganeti-node authorized-keys)",
			ErrAuthRefused, t.Name, t.Addr, c.cfg.User, err)
	}
	return &UnreachableError{Node: t.Name, Addr: t.Addr, Err: err}
}

// Update runs the ssh-update helper on t with req, over the session's
// connection to t (dialled if needed), and returns its response. The
// host key must be listed in known_hosts. It blocks for at most
// OpTimeout. Errors: a *HostKeyError for a refused host key, an
// *UnreachableError when t cannot be connected to, ErrAuthRefused when
// t does not accept the master's key, a *RemoteError when the helper
// fails (the response, if any, comes with it), ErrInvalidRequest
// before any connection when req does not validate.
func (s *Session) Update(ctx context.Context, t Target,
	req *Request) (*Response, error) {
	return s.update(ctx, t, req, VerifyHostKey)
}

// UpdateRecordingHostKey is Update for join: a host that known_hosts
// does not list is accepted and its key pinned there. A host listed
// with another key is refused as by Update. The pin stays even when
// the update then fails; join's undo removes it (RemoveKnownHost).
func (s *Session) UpdateRecordingHostKey(ctx context.Context, t Target,
	req *Request) (*Response, error) {
	return s.update(ctx, t, req, RecordUnknownHostKey)
}

func (s *Session) update(ctx context.Context, t Target, req *Request,
	policy HostKeyPolicy) (*Response, error) {
	start := time.Now()
	resp, err := s.updateOnce(ctx, t, req, policy)
	changed := 0
	if resp != nil {
		changed = len(resp.Changed)
	}
	s.c.cfg.Log.Debug("ssh update", "node", t.Name, "addr", t.Addr,
		"changed", changed, "duration", time.Since(start), "err", err)
	return resp, err
}

func (s *Session) updateOnce(ctx context.Context, t Target, req *Request,
	policy HostKeyPolicy) (*Response, error) {
	if req == nil {
		return nil, fmt.Errorf("%w: nil request for node %q",
			ErrInvalidRequest, t.Name)
	}
	if err := req.Validate(); err != nil {
		return nil, fmt.Errorf("sshdist: request for node %q: %w", t.Name, err)
	}
	body, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("sshdist: encoding request for node %q: %w",
			t.Name, err)
	}
	ctx, cancel := context.WithTimeout(ctx, s.c.cfg.OpTimeout)
	defer cancel()
	if s.closed() {
		return nil, ErrSessionClosed
	}
	return s.pool.update(ctx, s, t, policy, body)
}

// runInSession runs the one-shot helper cmd in sess with body on its
// stdin and decodes its answer. When ctx ends first, the host may be
// wedged: abandon must close the connection, which also ends the run.
func runInSession(ctx context.Context, t Target, sess *ssh.Session,
	cmd string, body []byte, abandon func()) (*Response, error) {
	defer sess.Close()
	stdout := &cappedBuffer{max: maxResponseSize}
	stderr := &cappedBuffer{max: maxStderrSize}
	sess.Stdin = bytes.NewReader(body)
	sess.Stdout, sess.Stderr = stdout, stderr

	done := make(chan error, 1)
	go func() { done <- sess.Run(cmd) }()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		abandon()
		<-done
		return nil, fmt.Errorf("sshdist: ssh-update on node %q (%s): %w",
			t.Name, t.Addr, ctx.Err())
	}
	return decodeResponse(t, stdout, stderr, err)
}

// decodeResponse turns the helper's output into a response or a
// *RemoteError.
func decodeResponse(t Target, stdout, stderr *cappedBuffer,
	runErr error) (*Response, error) {
	remote := func(msg string) *RemoteError {
		return &RemoteError{Node: t.Name, Addr: t.Addr, Msg: msg}
	}
	resp := &Response{}
	decErr := json.Unmarshal(stdout.Bytes(), resp)
	switch {
	case stdout.overflow:
		return nil, remote(fmt.Sprintf("response longer than %d bytes",
			maxResponseSize))
	case decErr == nil && resp.Error != "":
		return resp, remote(resp.Error)
	case runErr != nil:
		return nil, remote(fmt.Sprintf("%v: %s", runErr, stderr.tail()))
	case decErr != nil:
		return nil, remote(fmt.Sprintf("invalid response: %v: %s",
			decErr, stderr.tail()))
	}
	return resp, nil
}

// cappedBuffer keeps at most max bytes and notes when more came; it
// never fails a write, so the remote side never sees a broken pipe.
type cappedBuffer struct {
	buf      bytes.Buffer
	max      int
	overflow bool
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	room := b.max - b.buf.Len()
	if len(p) > room {
		b.overflow = true
		b.buf.Write(p[:max(room, 0)])
		return len(p), nil
	}
	return b.buf.Write(p)
}

func (b *cappedBuffer) Bytes() []byte { return b.buf.Bytes() }

// tail returns the end of the buffer on one line, for error messages.
func (b *cappedBuffer) tail() string {
	s := strings.TrimSpace(b.buf.String())
	if len(s) > maxStderrInMsg {
		s = "..." + s[len(s)-maxStderrInMsg:]
	}
	if s == "" {
		return "no output on stderr"
	}
	return strings.Join(strings.Fields(s), " ")
}

// Result is the outcome of one target of a FanOut.
type Result struct {
	Target Target
	// Skipped is true when build returned nil for the target.
	Skipped bool
	// Resp is the response; with a *RemoteError it may also be set.
	Resp *Response
	Err  error
}

// FanOut runs build(t) for every target, in order on the calling
// goroutine, then sends the requests with at most Concurrency hosts at
// a time, each bounded by OpTimeout. build may return nil to skip a
// target. It returns one Result per target, in target order, and logs
// one info summary "ssh fan-out" with the op, the number of nodes
// asked, how many changed a file, failed (other than unreachable) or
// were unreachable, how many connections it opened, and the duration. It blocks until every host has
// answered, failed or timed out; a cancelled ctx fails the hosts not
// yet started.
func (s *Session) FanOut(ctx context.Context, op string, targets []Target,
	build func(Target) *Request) []Result {
	start, dials := time.Now(), s.dials.Load()
	results := make([]Result, len(targets))
	sem := make(chan struct{}, s.concurrency)
	var wg sync.WaitGroup
	for i, t := range targets {
		res := &results[i]
		res.Target = t
		req := build(t)
		if req == nil {
			res.Skipped = true
			continue
		}
		wg.Go(func() {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				res.Err = ctx.Err()
				return
			}
			defer func() { <-sem }()
			res.Resp, res.Err = s.Update(ctx, t, req)
			if s.onResult != nil {
				s.onResult(*res)
			}
		})
	}
	wg.Wait()
	s.c.logFanOut(op, results, time.Since(start), s.dials.Load()-dials)
	return results
}

func (c *Client) logFanOut(op string, results []Result, took time.Duration,
	dials int64) {
	var nodes, changed, failed, unreachable int
	for _, r := range results {
		if r.Skipped {
			continue
		}
		nodes++
		var unreach *UnreachableError
		switch {
		case errors.As(r.Err, &unreach):
			unreachable++
		case r.Err != nil:
			failed++
		case r.Resp != nil && len(r.Resp.Changed) > 0:
			changed++
		}
	}
	c.cfg.Log.Info("ssh fan-out", "op", op, "nodes", nodes,
		"changed", changed, "failed", failed, "unreachable", unreachable,
		"new_connections", dials, "duration", took)
}
