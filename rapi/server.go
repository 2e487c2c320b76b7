package rapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Defaults of Config.
const (
	// DefaultPort is RAPI's TCP port, as in Ganeti.
	DefaultPort = 5080
	// DefaultMaxBody bounds request bodies; RAPI bodies are tiny.
	DefaultMaxBody = 64 << 10
	// DefaultJobTimeout bounds one job, all its operations together.
	DefaultJobTimeout = 15 * time.Minute
	// DefaultKeepJobs is how many finished jobs stay readable.
	DefaultKeepJobs = 1000
	// DefaultQueuedJobs bounds the jobs waiting to run.
	DefaultQueuedJobs = 100
)

// UsersSource returns the current users; UsersFile is one.
type UsersSource interface {
	Load() (*Users, error)
}

// Config configures a Server.
type Config struct {
	// Backend is the node daemon; required.
	Backend Backend
	// Users says who may log in; required. A source that fails lets
	// nobody in.
	Users UsersSource
	// Limiter bounds failed logins per client; nil means
	// DefaultLimiter().
	Limiter *FailureLimiter
	// MaxBody bounds request bodies in bytes; 0 means DefaultMaxBody.
	MaxBody int64
	// JobTimeout bounds one job; 0 means DefaultJobTimeout.
	JobTimeout time.Duration
	// KeepJobs is how many finished jobs stay readable; 0 means
	// DefaultKeepJobs.
	KeepJobs int
	// Log receives refusals and jobs (info) and requests (debug); nil
	// means slog.Default().
	Log *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// DefaultLimiter returns the production login limiter: 5 failures in
// a row per client address, then one more every 12 seconds.
func DefaultLimiter() *FailureLimiter {
	return NewFailureLimiter(5, 12*time.Second, 4096, nil)
}

// Validate names the first required field that is missing.
func (c Config) Validate() error {
	switch {
	case c.Backend == nil:
		return errors.New("rapi: Config.Backend is required")
	case c.Users == nil:
		return errors.New("rapi: Config.Users is required: without a users " +
			"file nobody could log in")
	case c.MaxBody < 0 || c.JobTimeout < 0 || c.KeepJobs < 0:
		return errors.New("rapi: Config.MaxBody, JobTimeout and KeepJobs " +
			"must not be negative")
	}
	return nil
}

// Server is the RAPI HTTP handler. Create it with New; it is safe for
// concurrent use. It does not listen: the daemon serves it over TLS.
type Server struct {
	cfg     Config
	backend Backend
	log     *slog.Logger
	limiter *FailureLimiter
	jobs    *jobStore
	mux     *http.ServeMux

	usersMu  sync.Mutex
	usersErr string
}

// New returns a server for cfg, with defaults filled in. It returns
// the error of cfg.Validate.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Limiter == nil {
		cfg.Limiter = DefaultLimiter()
	}
	if cfg.MaxBody == 0 {
		cfg.MaxBody = DefaultMaxBody
	}
	if cfg.JobTimeout == 0 {
		cfg.JobTimeout = DefaultJobTimeout
	}
	if cfg.KeepJobs == 0 {
		cfg.KeepJobs = DefaultKeepJobs
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Server{cfg: cfg, backend: cfg.Backend, log: cfg.Log,
		limiter: cfg.Limiter, mux: http.NewServeMux()}
	s.jobs = newJobStore(s.runOp, cfg.JobTimeout, cfg.KeepJobs,
		DefaultQueuedJobs, cfg.Now)
	s.routes()
	return s, nil
}

// Close stops the job worker once the job it runs, if any, is done.
// Jobs submitted later stay queued.
func (s *Server) Close() { s.jobs.close() }

// ServeHTTP authenticates the request, sends it to the master if this
// node is not the master, and serves it otherwise.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	u, err := s.authenticate(r)
	if err != nil {
		s.fail(w, r, "", err)
		return
	}
	if m := s.backend.Master(); !m.Self && !s.holdsJob(r) {
		s.misdirected(w, r, u, m)
		return
	}
	if path.Clean(r.URL.Path) != r.URL.Path {
		s.fail(w, r, u.Name, errorf(http.StatusNotFound,
			"no resource %q", r.URL.Path))
		return
	}
	s.mux.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), userKey{}, u)))
}

type userKey struct{}

// holdsJob reports whether r reads a job this node accepted: its
// outcome stays readable here after the node stopped being master.
func (s *Server) holdsJob(r *http.Request) bool {
	raw, ok := strings.CutPrefix(r.URL.Path, "/2/jobs/")
	if !ok || r.Method != http.MethodGet {
		return false
	}
	id, err := strconv.ParseInt(raw, 10, 64)
	if err != nil {
		return false
	}
	_, ok = s.jobs.get(id)
	return ok
}

func userOf(r *http.Request) *User {
	u, _ := r.Context().Value(userKey{}).(*User)
	return u
}

// authenticate checks basic authentication, refusing clients that
// failed too often before their password is looked at.
func (s *Server) authenticate(r *http.Request) (*User, error) {
	client := ClientKey(r.RemoteAddr)
	if ok, wait := s.limiter.Allow(client); !ok {
		return nil, &limitedError{retry: wait}
	}
	name, password, ok := r.BasicAuth()
	if !ok {
		return nil, errAuth("authentication required")
	}
	if u := s.users().Authenticate(name, password); u != nil {
		return u, nil
	}
	s.limiter.Fail(client)
	return nil, &httpError{code: http.StatusUnauthorized,
		explain: fmt.Sprintf("wrong password or unknown user %q", clip(name))}
}

func errAuth(msg string) error {
	return &httpError{code: http.StatusUnauthorized, explain: msg}
}

// limitedError is the refusal of a client that failed too often.
type limitedError struct{ retry time.Duration }

// Error says how long the client must wait.
func (e *limitedError) Error() string {
	return fmt.Sprintf("too many failed logins from this address; "+
		"retry in %v", e.retry.Round(time.Second))
}

// users loads the users, logging a broken users file once per cause.
func (s *Server) users() *Users {
	us, err := s.cfg.Users.Load()
	s.usersMu.Lock()
	defer s.usersMu.Unlock()
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	if msg != s.usersErr {
		s.usersErr = msg
		if err != nil {
			s.log.Warn("rapi users file unusable; refusing every login",
				"err", err)
		}
	}
	return us
}

// clip shortens a client-given string for messages and logs.
func clip(s string) string {
	if len(s) > MaxUserNameLen {
		return s[:MaxUserNameLen] + "..."
	}
	return s
}

// misdirected answers a request that reached a candidate which is not
// the master: 421 with the master's name and address, or 503 while no
// master is known.
func (s *Server) misdirected(w http.ResponseWriter, r *http.Request, u *User,
	m Master) {
	if m.Name == "" {
		s.fail(w, r, u.Name, errorf(http.StatusServiceUnavailable,
			"no master is elected right now; retry in a few seconds"))
		return
	}
	s.logRefusal(r, u.Name, http.StatusMisdirectedRequest, "not the master")
	writeJSON(w, http.StatusMisdirectedRequest, misdirectedBody{
		errorBody: errorBody{Code: http.StatusMisdirectedRequest,
			Message: http.StatusText(http.StatusMisdirectedRequest),
			Explain: fmt.Sprintf("this node is not the master; send RAPI "+
				"requests to the master %s at %s, port %d", m.Name, m.IP,
				DefaultPort)},
		Master: m.Name, MasterIP: m.IP})
}

// errorBody is the JSON body of every failed request, as in Ganeti.
type errorBody struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Explain string `json:"explain"`
}

type misdirectedBody struct {
	errorBody
	Master   string `json:"master"`
	MasterIP string `json:"master_ip"`
}

// fail writes err as a JSON error body and logs the refusal.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, user string, err error) {
	code := http.StatusInternalServerError
	var he *httpError
	var le *limitedError
	switch {
	case errors.As(err, &he):
		code = he.code
	case errors.As(err, &le):
		code = http.StatusTooManyRequests
		secs := int(le.retry.Seconds() + 0.999)
		w.Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
	}
	if code == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="`+Realm+`"`)
	}
	if user == "" {
		user, _, _ = r.BasicAuth()
	}
	s.logRefusal(r, user, code, err.Error())
	writeJSON(w, code, errorBody{Code: code, Message: http.StatusText(code),
		Explain: err.Error()})
}

// logRefusal logs a refused request with its user and request line,
// never its password.
func (s *Server) logRefusal(r *http.Request, user string, code int, reason string) {
	level := slog.LevelInfo
	if code >= 500 && code != http.StatusNotImplemented {
		level = slog.LevelError
	}
	s.log.Log(r.Context(), level, "rapi request refused", "user", clip(user),
		"client", r.RemoteAddr, "method", r.Method, "path", r.URL.Path,
		"query", r.URL.RawQuery, "status", code, "reason", reason)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}
