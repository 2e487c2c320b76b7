package daemon

// RAPI in the daemon. Every master candidate that holds rapi.pem
// listens on its primary IP, port 5080; the master serves requests and
// the other candidates answer 421 with the master's name and address,
// so a client that knows the candidates always finds the master and a
// failover needs no restart. Normal nodes never listen: they hold
// neither the certificate nor the users.
//
// The master's own rapi.pem and rapi_users are the originals. It
// creates rapi.pem when it lacks one; `cluster rapi-users` edits
// rapi_users on the master. The master's reconciliation (rapiFiles)
// copies both to every candidate over SSH, as it does the CA key, and
// removes them from every other node.

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"ganeti-node/atomicfile"
	"ganeti-node/fsm"
	"ganeti-node/rapi"
	"ganeti-node/sshdist"
)

// RAPI file names in the state directory; only candidates hold them.
const (
	rapiCertName  = "rapi.pem"
	rapiUsersName = "rapi_users"
)

// rapiCheckEvery is how often a candidate re-checks whether it should
// serve RAPI besides on every applied entry: the files arrive over SSH
// after the commit that made it a candidate.
const rapiCheckEvery = time.Second

// RAPIUserArgs are the arguments of `cluster rapi-users add`.
type RAPIUserArgs struct {
	Name     string `json:"name"`
	Password string `json:"password"`
	Write    bool   `json:"write"`
}

// RAPIUsersFile is the body of `cluster rapi-users import`: a whole
// users file in Ganeti's format.
type RAPIUsersFile struct {
	Data string `json:"data"`
}

// rapiState is the RAPI side of one daemon.
// TODO: it lives in a map keyed by the daemon because the Daemon
// struct is not this file's; a `rapi *rapiState` field would do.
type rapiState struct {
	start   sync.Once
	kick    chan struct{}
	certMu  sync.Mutex
	usersMu sync.Mutex

	mu      sync.Mutex
	srv     *http.Server
	addr    string
	lastErr string
}

var rapiStates sync.Map // *Daemon -> *rapiState

func (d *Daemon) rapiSide() *rapiState {
	v, _ := rapiStates.LoadOrStore(d, &rapiState{kick: make(chan struct{}, 1)})
	return v.(*rapiState)
}

func (d *Daemon) rapiPath(name string) string {
	return filepath.Join(d.paths.StateDir(), name)
}

// rapiActivate runs when the node gets its identity: it starts the
// loop that serves RAPI whenever this node is a candidate with the
// certificate.
func (d *Daemon) rapiActivate() {
	st := d.rapiSide()
	st.start.Do(func() { go d.rapiSupervise(st) })
}

// rapiLeader runs when this node gains (true) or loses leadership; the
// supervising loop reacts at once. It must not block.
func (d *Daemon) rapiLeader(isLeader bool) {
	select {
	case d.rapiSide().kick <- struct{}{}:
	default:
	}
}

// rapiSupervise starts and stops the RAPI listener to match the node's
// role until Raft shuts down.
func (d *Daemon) rapiSupervise(st *rapiState) {
	log := d.log.With("component", "rapi")
	users := rapi.NewUsersFile(d.rapiPath(rapiUsersName))
	handler, err := rapi.New(rapi.Config{Backend: rapiBackend{d},
		Users: users, Log: log})
	if err != nil {
		log.Error("rapi not started", "err", err)
		return
	}
	defer handler.Close()
	cert := rapi.NewCertFile(d.rapiPath(rapiCertName))
	t := time.NewTicker(rapiCheckEvery)
	defer t.Stop()
	for {
		_, applied := d.applied.get()
		if !d.rapiStep(st, handler, cert, log) {
			return
		}
		select {
		case <-applied:
		case <-st.kick:
		case <-t.C:
		}
	}
}

// rapiStep serves or stops serving as the node's role says; it
// returns false once Raft has shut down.
func (d *Daemon) rapiStep(st *rapiState, h http.Handler, cert *rapi.CertFile,
	log *slog.Logger) bool {
	d.mu.Lock()
	r, nf := d.raft, d.node
	d.mu.Unlock()
	if r == nil || nf == nil {
		return true
	}
	if r.State() == "Shutdown" {
		st.stop(log, "daemon stopping")
		return false
	}
	if r.IsLeader() {
		if err := d.ensureRAPICert(); err != nil {
			st.logOnce(log, "creating the rapi certificate failed", err)
		}
	}
	me := d.fsm.State().Nodes[nf.UUID]
	switch {
	case me == nil || !me.MasterCandidate:
		st.stop(log, "not a master candidate")
	case !exists(d.rapiPath(rapiCertName)):
		st.stop(log, "no rapi.pem yet")
	default:
		addr := net.JoinHostPort(me.PrimaryIP, strconv.Itoa(rapi.DefaultPort))
		st.serve(addr, h, cert, log)
	}
	return true
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// serve listens on addr unless it already does.
func (st *rapiState) serve(addr string, h http.Handler, cert *rapi.CertFile,
	log *slog.Logger) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.srv != nil && st.addr == addr {
		return
	}
	st.closeLocked(log, "address changed")
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		st.logOnceLocked(log, "rapi cannot listen; will retry", err)
		return
	}
	st.srv = &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout: 30 * time.Second, WriteTimeout: time.Minute,
		IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 16 << 10,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	st.addr, st.lastErr = addr, ""
	go st.srv.Serve(tls.NewListener(ln, cert.TLSConfig()))
	log.Info("rapi serving", "addr", addr)
}

// stop closes the listener, if any; open connections are cut.
func (st *rapiState) stop(log *slog.Logger, why string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.closeLocked(log, why)
}

func (st *rapiState) closeLocked(log *slog.Logger, why string) {
	if st.srv == nil {
		return
	}
	st.srv.Close()
	log.Info("rapi stopped", "addr", st.addr, "reason", why)
	st.srv, st.addr = nil, ""
}

func (st *rapiState) logOnce(log *slog.Logger, msg string, err error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.logOnceLocked(log, msg, err)
}

// logOnceLocked logs err at warn level unless it is the last one
// logged, so a retry every second does not flood the log.
func (st *rapiState) logOnceLocked(log *slog.Logger, msg string, err error) {
	if err.Error() != st.lastErr {
		st.lastErr = err.Error()
		log.Warn(msg, "err", err)
	}
}

// ensureRAPICert creates the master's rapi.pem if it has none: a
// self-signed certificate for the cluster name. It runs on the master
// only.
func (d *Daemon) ensureRAPICert() error {
	st := d.rapiSide()
	st.certMu.Lock()
	defer st.certMu.Unlock()
	path := d.rapiPath(rapiCertName)
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		return err
	}
	s := d.fsm.State()
	if !s.Initialised() {
		return ErrNoIdentity
	}
	data, err := rapi.NewCertificate(s.Cluster.Name, time.Now(), certValidity)
	if err != nil {
		return err
	}
	if err := atomicfile.Write(path, data, 0o600); err != nil {
		return err
	}
	d.log.Info("rapi certificate created", "component", "rapi",
		"name", s.Cluster.Name)
	return nil
}

// rapiFiles returns the RAPI files node n must hold (candidates only)
// and the ones it must not, for the master's reconciliation. RAPI
// trouble is logged, never returned: it must not hold up the SSH work
// that revokes a node.
func (d *Daemon) rapiFiles(n *fsm.Node) ([]sshdist.File, []string, error) {
	if !n.MasterCandidate {
		return nil, []string{rapiCertName, rapiUsersName}, nil
	}
	if err := d.ensureRAPICert(); err != nil {
		d.log.Warn("rapi certificate unavailable", "err", err)
	}
	var files []sshdist.File
	for _, name := range []string{rapiCertName, rapiUsersName} {
		data, err := os.ReadFile(d.rapiPath(name))
		if errors.Is(err, os.ErrNotExist) {
			// No users yet: the candidates keep what they have.
			continue
		}
		if err != nil {
			d.log.Warn("rapi file not distributed", "file", name, "err", err)
			continue
		}
		files = append(files, sshdist.File{Name: name, Data: string(data)})
	}
	return files, nil, nil
}

// rapiBackend is what the RAPI server sees of the daemon.
type rapiBackend struct{ d *Daemon }

// Cluster returns the committed cluster record, the guard's flag
// included.
func (b rapiBackend) Cluster() (rapi.Cluster, error) {
	s := b.d.fsm.State()
	if !s.Initialised() {
		return rapi.Cluster{}, ErrNoIdentity
	}
	c := s.Cluster
	out := rapi.Cluster{Name: c.Name, UUID: c.UUID,
		CandidatePoolSize: c.CandidatePoolSize, ModifySSHSetup: c.ModifySSHSetup,
		MasterCapabilityRapiModifiable: c.MasterCapabilityRapiModifiable}
	if m := s.Nodes[c.MasterNode]; m != nil {
		out.Master = m.Name
	}
	return out, nil
}

// Nodes returns the committed nodes with the roles `list` shows.
func (b rapiBackend) Nodes() ([]rapi.Node, error) {
	s := b.d.fsm.State()
	if !s.Initialised() {
		return nil, ErrNoIdentity
	}
	var out []rapi.Node
	for _, n := range s.SortedNodes() {
		out = append(out, rapi.Node{Name: n.Name, UUID: n.UUID,
			PrimaryIP: n.PrimaryIP, Role: s.Role(n),
			MasterCandidate: n.MasterCandidate, MasterCapable: n.MasterCapable,
			VMCapable: n.VMCapable, Offline: n.Offline, Drained: n.Drained})
	}
	return out, nil
}

// Master says whether this node is the Raft leader and which node is.
func (b rapiBackend) Master() rapi.Master {
	b.d.mu.Lock()
	r := b.d.raft
	b.d.mu.Unlock()
	if r == nil {
		return rapi.Master{}
	}
	out := rapi.Master{Self: r.IsLeader()}
	_, id := r.Leader()
	if m := b.d.fsm.State().Nodes[id]; m != nil {
		out.Name, out.IP = m.Name, m.PrimaryIP
	}
	return out
}

// rapiOps maps RAPI operations to the CLI's.
var rapiOps = map[rapi.OpKind]string{
	rapi.OpPromote: OpPromote, rapi.OpDemote: OpDemote,
	rapi.OpOffline: OpOffline, rapi.OpOnline: OpOnline,
	rapi.OpModify: OpModify, rapi.OpDrain: OpDrain,
	rapi.OpUndrain: OpUndrain,
}

// Supports reports whether the CLI has an operation for k.
func (b rapiBackend) Supports(k rapi.OpKind) bool {
	_, ok := rapiOps[k]
	return ok
}

// Run sends op down the CLI's path: routeOp runs it here on the master
// or forwards it to the master.
func (b rapiBackend) Run(ctx context.Context, op rapi.Op) (rapi.Result, error) {
	name, ok := rapiOps[op.Kind]
	if !ok {
		return rapi.Result{}, fmt.Errorf("operation %q is not supported", op.Kind)
	}
	args, err := json.Marshal(NodeArgs{Node: op.Node,
		AutoPromote: op.AutoPromote, MasterCapable: op.MasterCapable})
	if err != nil {
		return rapi.Result{}, err
	}
	res, err := b.d.routeOp(ctx, OpRequest{Op: name, Args: args})
	if err != nil {
		return rapi.Result{}, err
	}
	return rapi.Result{Message: res.Message, Unreachable: res.Unreachable}, nil
}

// rapiLocalRoutes adds the CLI's `cluster rapi-users` and
// `cluster rapi-cert` endpoints. Changes are made on the master only,
// which then copies the users file to every candidate.
func (d *Daemon) rapiLocalRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/rapi/users", d.handleRAPIUsers)
	mux.HandleFunc("POST /v1/rapi/users", d.handleRAPIUserSet)
	mux.HandleFunc("PUT /v1/rapi/users", d.handleRAPIUsersImport)
	mux.HandleFunc("DELETE /v1/rapi/users/{name}", d.handleRAPIUserRemove)
	mux.HandleFunc("GET /v1/rapi/cert", d.handleRAPICert)
}

func (d *Daemon) handleRAPIUsers(w http.ResponseWriter, r *http.Request) {
	us, err := rapi.NewUsersFile(d.rapiPath(rapiUsersName)).Load()
	if errors.Is(err, os.ErrNotExist) {
		err = errors.New("this node has no RAPI users file: only master " +
			"candidates hold one, and only after `cluster rapi-users add`")
	}
	if err != nil {
		writeErr(w, http.StatusConflict, err)
		return
	}
	writeJSON(w, http.StatusOK, us.List())
}

func (d *Daemon) handleRAPIUserSet(w http.ResponseWriter, r *http.Request) {
	var a RAPIUserArgs
	if err := decodeBody(r, &a); err != nil {
		writeErr(w, http.StatusBadRequest, err)
		return
	}
	line, err := rapi.UserLine(a.Name, a.Password, a.Write)
	if err != nil {
		writeErr(w, http.StatusBadRequest, err)
		return
	}
	d.rapiUsersEdit(w, r, fmt.Sprintf("rapi user %s set (write=%t)", a.Name, a.Write),
		func(old []byte) ([]byte, error) { return rapi.SetUser(old, a.Name, line) })
}

func (d *Daemon) handleRAPIUserRemove(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	d.rapiUsersEdit(w, r, fmt.Sprintf("rapi user %s removed", name),
		func(old []byte) ([]byte, error) {
			out, found, err := rapi.RemoveUser(old, name)
			if err == nil && !found {
				err = fmt.Errorf("no rapi user %q; see `ganeti-node cluster "+
					"rapi-users list`", name)
			}
			return out, err
		})
}

func (d *Daemon) handleRAPIUsersImport(w http.ResponseWriter, r *http.Request) {
	var a RAPIUsersFile
	if err := decodeBody(r, &a); err != nil {
		writeErr(w, http.StatusBadRequest, err)
		return
	}
	us, err := rapi.ParseUsers([]byte(a.Data))
	if err != nil {
		writeErr(w, http.StatusBadRequest, err)
		return
	}
	msg := fmt.Sprintf("rapi users file imported (%d users)", len(us.List()))
	d.rapiUsersEdit(w, r, msg, func([]byte) ([]byte, error) {
		return []byte(a.Data), nil
	})
}

// rapiUsersEdit changes the master's users file with edit, keeping a
// backup of the old one, and copies it to every candidate.
func (d *Daemon) rapiUsersEdit(w http.ResponseWriter, r *http.Request, msg string,
	edit func(old []byte) ([]byte, error)) {
	if err := d.rapiRequireMaster(); err != nil {
		writeErr(w, http.StatusConflict, err)
		return
	}
	st := d.rapiSide()
	st.usersMu.Lock()
	defer st.usersMu.Unlock()
	path := d.rapiPath(rapiUsersName)
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		writeErr(w, http.StatusConflict, fmt.Errorf("reading %q: %w", path, err))
		return
	}
	data, err := edit(old)
	if err != nil {
		writeErr(w, http.StatusBadRequest, err)
		return
	}
	if _, err := atomicfile.Backup(path, time.Now()); err != nil {
		writeErr(w, http.StatusConflict, err)
		return
	}
	if err := atomicfile.Write(path, data, 0o600); err != nil {
		writeErr(w, http.StatusConflict, err)
		return
	}
	d.log.Info("rapi users changed", "component", "rapi", "change", msg)
	res := &OpResult{Message: msg, Unreachable: d.rapiDistribute(r.Context())}
	writeJSON(w, http.StatusOK, res)
}

// rapiRequireMaster refuses RAPI administration on any node but the
// master, naming the master.
func (d *Daemon) rapiRequireMaster() error {
	if d.isLeader() {
		return nil
	}
	m := rapiBackend{d}.Master()
	if m.Name == "" {
		return errors.New("no master is elected right now; retry in a few seconds")
	}
	return fmt.Errorf("RAPI users are changed on the master, which copies "+
		"them to the candidates; run this on %s", m.Name)
}

// rapiDistribute copies the RAPI files to every candidate now, under
// the operation lock, and returns the candidates it could not reach
// (the master keeps retrying them).
func (d *Daemon) rapiDistribute(ctx context.Context) []string {
	var uuids []string
	for _, n := range d.fsm.State().Candidates() {
		uuids = append(uuids, n.UUID)
	}
	d.opMu.Lock()
	defer d.opMu.Unlock()
	return d.reconcileAll(ctx, uuids)
}

// handleRAPICert prints the RAPI certificate (never its key), which
// clients trust explicitly.
func (d *Daemon) handleRAPICert(w http.ResponseWriter, r *http.Request) {
	if d.isLeader() {
		if err := d.ensureRAPICert(); err != nil {
			writeErr(w, http.StatusConflict, err)
			return
		}
	}
	data, err := os.ReadFile(d.rapiPath(rapiCertName))
	if errors.Is(err, os.ErrNotExist) {
		err = errors.New("this node has no rapi.pem: only master candidates " +
			"hold it; run this on the master")
	}
	var pub []byte
	if err == nil {
		pub, err = rapi.PublicPEM(data)
	}
	if err != nil {
		writeErr(w, http.StatusConflict, err)
		return
	}
	w.Header().Set("Content-Type", "application/x-pem-file")
	w.Write(pub)
}
