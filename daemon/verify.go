package daemon

// Cluster verify: the master gathers every online node's view in
// parallel, each source bounded by its own time-out, and hands the
// facts to the verify package, which judges them. Sources:
//
//   - the node's self-report over the secured RPC (certificates, own
//     key, files, authorized_keys, ganeti_pub_keys, sshd's key files,
//     applied index);
//   - the master's SSH Report, which is also the master's own login
//     and checks the host key sshd offers against known_hosts;
//   - each other candidate's own SSH logins to every node, asked over
//     the secured RPC.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"ganeti-node/fsm"
	"ganeti-node/rpcsec"
	"ganeti-node/sshdist"
	"ganeti-node/verify"
)

// Bounds of a verify. They keep an unreachable or wedged node from
// holding up the whole: a dead host costs nothing, a frozen one the
// longest of these time-outs, not their sum. They are generous so that
// a busy host is not reported unreachable.
const (
	// verifyTimeout bounds one verify end to end.
	verifyTimeout = 2 * time.Minute
	// verifyForwardTimeout bounds a candidate's wait for the master's
	// verify, which may first wait for a running operation.
	verifyForwardTimeout = 8 * time.Minute
	// verifyRPCTimeout bounds one self-report request.
	verifyRPCTimeout = 15 * time.Second
	// verifyIndexWait is how long a node waits to apply the master's
	// index before it reports a lag.
	verifyIndexWait = 2 * time.Second
	// verifySSHConnect and verifySSHOp bound one SSH connection and
	// one ssh-update run.
	verifySSHConnect = 10 * time.Second
	verifySSHOp      = 20 * time.Second
	// verifyLoginBudget bounds a candidate's whole round of logins;
	// verifyLoginWait is how long the master waits for its answer.
	verifyLoginBudget = 40 * time.Second
	verifyLoginWait   = verifyLoginBudget + 5*time.Second
	// verifySSHDTimeout bounds `sshd -T`.
	verifySSHDTimeout = 5 * time.Second
	// verifyConcurrency bounds the nodes asked at once per source.
	verifyConcurrency = 16
)

// sshdConfigPath is sshd's configuration, under the root prefix.
const sshdConfigPath = "/etc/ssh/sshd_config"

// verifyLocalRoutes adds the CLI's `cluster verify` endpoint.
func (d *Daemon) verifyLocalRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/verify", d.handleLocalVerify)
}

// verifyRPCRoutes adds the endpoints the master's verify calls over the
// secured RPC, and the one a candidate forwards `cluster verify` to.
func (d *Daemon) verifyRPCRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/verify", d.handleRemoteVerify)
	mux.HandleFunc("POST /v1/verify/self", d.handleSelfReport)
	mux.HandleFunc("POST /v1/verify/logins", d.handleLogins)
}

// selfReportArgs ask a node for its self-report once it has applied
// MinIndex (or verifyIndexWait has passed).
type selfReportArgs struct {
	MinIndex uint64 `json:"min_index"`
}

// loginArgs name, by UUID, the nodes a candidate must try to log in to.
type loginArgs struct {
	Targets []string `json:"targets"`
}

// loginResult is a candidate's answer to loginArgs.
type loginResult struct {
	Logins []verify.Login `json:"logins"`
}

func (d *Daemon) handleLocalVerify(w http.ResponseWriter, r *http.Request) {
	res, err := d.routeVerify(r.Context())
	if err != nil {
		writeErr(w, http.StatusConflict, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// handleRemoteVerify runs a verify forwarded by a candidate.
func (d *Daemon) handleRemoteVerify(w http.ResponseWriter, r *http.Request) {
	if !d.admitVerifyCaller(w, r) {
		return
	}
	if !d.isLeader() {
		writeErr(w, http.StatusMisdirectedRequest, errNotLeaderNow)
		return
	}
	res, err := d.runVerify(r.Context())
	if err != nil {
		writeErr(w, http.StatusConflict, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// admitVerifyCaller answers 403 unless the RPC caller is a candidate;
// the handshake admitted it already, this makes the rule explicit.
func (d *Daemon) admitVerifyCaller(w http.ResponseWriter,
	r *http.Request) bool {
	if err := d.checkCallerIsCandidate(r); err != nil {
		d.log.Info("refused verify request", "peer", r.RemoteAddr,
			"path", r.URL.Path, "reason", err)
		writeErr(w, http.StatusForbidden, err)
		return false
	}
	return true
}

// routeVerify runs the verify on the master, forwards it there from a
// candidate, and refuses it on a normal node.
func (d *Daemon) routeVerify(ctx context.Context) (*verify.Result, error) {
	leaderAddr, local, err := d.route("verify the cluster")
	if err != nil {
		return nil, err
	}
	if local {
		return d.runVerify(ctx)
	}
	d.mu.Lock()
	id := d.id
	d.mu.Unlock()
	var res verify.Result
	client := rpcsec.HTTPClient(id, verifyForwardTimeout)
	if err := verifyPost(ctx, client, leaderAddr, "/v1/verify",
		struct{}{}, &res); err != nil {
		return nil, fmt.Errorf("forwarding verify to the master at %s: %w",
			leaderAddr, err)
	}
	return &res, nil
}

// runVerify gathers the facts and judges them. It holds the operation
// lock, so that no operation and no retry of pending nodes changes the
// cluster while it looks.
func (d *Daemon) runVerify(ctx context.Context) (*verify.Result, error) {
	if err := d.waitReady(ctx); err != nil {
		return nil, err
	}
	d.opMu.Lock()
	defer d.opMu.Unlock()
	if !d.isLeader() {
		return nil, errNotLeaderNow
	}
	ctx, cancel := context.WithTimeout(ctx, verifyTimeout)
	defer cancel()
	start := time.Now()
	f, err := d.gatherFacts(ctx)
	if err != nil {
		return nil, err
	}
	res := verify.Check(f)
	d.log.Info("cluster verify", "nodes", len(f.Nodes),
		"errors", len(res.Errors), "warnings", len(res.Warnings),
		"duration", time.Since(start))
	return res, nil
}

// gatherFacts collects every source for every online node, the
// sources in parallel with each other.
func (d *Daemon) gatherFacts(ctx context.Context) (*verify.Facts, error) {
	s := d.fsm.State()
	me := d.self(s)
	if me == nil {
		return nil, errors.New("the master is not in its own configuration")
	}
	ca, _ := os.ReadFile(d.paths.CACert()) // none: CERT_MISSING
	f := &verify.Facts{Now: time.Now(), State: s, Verifier: me.UUID,
		CAPEM: string(ca), Nodes: map[string]*verify.NodeFacts{}}
	servers, err := d.raft.Servers()
	if err != nil {
		f.RaftErr = err.Error()
	} else {
		f.Raft = servers
	}
	var nodes []*fsm.Node
	for _, n := range s.SortedNodes() {
		if !n.Offline {
			nodes = append(nodes, n)
			f.Nodes[n.UUID] = &verify.NodeFacts{}
		}
	}

	// Each source writes its own fields of the NodeFacts.
	var wg sync.WaitGroup
	wg.Go(func() { d.gatherSelf(ctx, s, nodes, f) })
	wg.Go(func() { d.gatherSSH(ctx, s, nodes, f) })
	wg.Go(func() { d.gatherLogins(ctx, me, nodes, f) })
	wg.Wait()

	// The master's own logins are its SSH reports.
	mine := f.Nodes[me.UUID]
	for _, n := range nodes {
		mine.Logins = append(mine.Logins, verify.Login{Target: n.UUID,
			Failure: f.Nodes[n.UUID].SSHErr})
	}
	return f, nil
}

// verifyEach runs fn for every node, verifyConcurrency at a time, and
// returns when all are done.
func verifyEach(nodes []*fsm.Node, fn func(n *fsm.Node)) {
	sem := make(chan struct{}, verifyConcurrency)
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			fn(n)
		})
	}
	wg.Wait()
}

// gatherSelf asks every node for its self-report.
func (d *Daemon) gatherSelf(ctx context.Context, s *fsm.State,
	nodes []*fsm.Node, f *verify.Facts) {
	client := rpcsec.HTTPClient(d.verifyIdentity(), verifyRPCTimeout)
	verifyEach(nodes, func(n *fsm.Node) {
		nf := f.Nodes[n.UUID]
		rep, err := d.selfReportOf(ctx, client, n, f.Verifier, s.Index)
		if err != nil {
			nf.RPCErr = err.Error()
			return
		}
		nf.Self = rep
	})
}

// selfReportOf fetches n's self-report over the secured RPC; the
// master (verifier) answers its own without the network.
func (d *Daemon) selfReportOf(ctx context.Context, client *http.Client,
	n *fsm.Node, verifier string, index uint64) (*verify.SelfReport, error) {
	if n.UUID == verifier {
		return d.selfReport(ctx, index)
	}
	var rep verify.SelfReport
	err := verifyPost(ctx, client, n.RPCAddr(), "/v1/verify/self",
		selfReportArgs{MinIndex: index}, &rep)
	if err != nil {
		return nil, err
	}
	return &rep, nil
}

// verifyIdentity returns the node's TLS identity, nil before
// activation.
func (d *Daemon) verifyIdentity() *rpcsec.Identity {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.id
}

// gatherSSH runs the ssh-update Report on every node with the master's
// own key: a real login and the helper's view of the node's files.
func (d *Daemon) gatherSSH(ctx context.Context, s *fsm.State,
	nodes []*fsm.Node, f *verify.Facts) {
	client, err := d.verifySSHClient()
	if err != nil {
		for _, n := range nodes {
			f.Nodes[n.UUID].SSHErr = &verify.Failure{Kind: verify.Other,
				Message: err.Error()}
		}
		return
	}
	sess := client.NewSession()
	defer sess.Close()
	targets := make([]sshdist.Target, len(nodes))
	for i, n := range nodes {
		targets[i] = target(n)
	}
	req := &sshdist.Request{Cluster: s.Cluster.Name, Report: true}
	results := sess.FanOut(ctx, "verify", targets,
		func(sshdist.Target) *sshdist.Request { return req })
	for i, r := range results {
		nf := f.Nodes[nodes[i].UUID]
		nf.HostKey = verify.HostKeyOf(r.Err)
		switch {
		case r.Err != nil:
			nf.SSHErr = verify.FailureOf(r.Err)
		case r.Resp == nil || r.Resp.Report == nil:
			nf.SSHErr = &verify.Failure{Kind: verify.Remote,
				Message: "the helper sent no report"}
		default:
			nf.SSH = verify.SSHReportOf(r.Resp.Report)
		}
	}
}

// verifySSHClient is the node's SSH client with verify's tight
// time-outs; host keys are checked against its known_hosts as always.
func (d *Daemon) verifySSHClient() (*sshdist.Client, error) {
	return d.sshClientWith(verifySSHConnect, verifySSHOp)
}

// gatherLogins asks every other online candidate to log in over SSH,
// with its own key, to every online node.
func (d *Daemon) gatherLogins(ctx context.Context, me *fsm.Node,
	nodes []*fsm.Node, f *verify.Facts) {
	args := loginArgs{}
	var mcs []*fsm.Node
	for _, n := range nodes {
		args.Targets = append(args.Targets, n.UUID)
		if n.MasterCandidate && n.UUID != me.UUID {
			mcs = append(mcs, n)
		}
	}
	client := rpcsec.HTTPClient(d.verifyIdentity(), verifyLoginWait)
	verifyEach(mcs, func(n *fsm.Node) {
		var res loginResult
		err := verifyPost(ctx, client, n.RPCAddr(), "/v1/verify/logins",
			args, &res)
		nf := f.Nodes[n.UUID]
		if err != nil {
			nf.LoginsErr = err.Error()
			return
		}
		nf.Logins = res.Logins
		if nf.Logins == nil {
			nf.Logins = []verify.Login{}
		}
	})
}

// handleLogins tries, on a candidate, a real SSH login with its own
// key to each node the master names.
func (d *Daemon) handleLogins(w http.ResponseWriter, r *http.Request) {
	if !d.admitVerifyCaller(w, r) {
		return
	}
	var a loginArgs
	if err := decodeBody(r, &a); err != nil {
		writeErr(w, http.StatusBadRequest, err)
		return
	}
	logins, err := d.tryLogins(r.Context(), a.Targets)
	if err != nil {
		writeErr(w, http.StatusConflict, err)
		return
	}
	writeJSON(w, http.StatusOK, loginResult{Logins: logins})
}

// tryLogins logs in to each target and runs the helper with an empty
// request. Addresses come from this node's own configuration, never
// from the request, and only a candidate does it: a normal node never
// initiates a connection.
func (d *Daemon) tryLogins(ctx context.Context,
	targets []string) ([]verify.Login, error) {
	s := d.fsm.State()
	if me := d.self(s); me == nil || !me.MasterCandidate {
		return nil, errors.New("this node is not a master candidate; " +
			"only candidates log in to other nodes")
	}
	if len(targets) > len(s.Nodes) {
		return nil, fmt.Errorf("asked to log in to %d nodes, but the "+
			"cluster has %d", len(targets), len(s.Nodes))
	}
	client, err := d.verifySSHClient()
	if err != nil {
		return nil, err
	}
	sess := client.NewSession()
	defer sess.Close()
	ctx, cancel := context.WithTimeout(ctx, verifyLoginBudget)
	defer cancel()

	logins, tgts, idx := loginTargets(s, targets)
	req := &sshdist.Request{Cluster: s.Cluster.Name}
	results := sess.FanOut(ctx, "verify-login", tgts,
		func(sshdist.Target) *sshdist.Request { return req })
	for j, r := range results {
		if r.Err != nil {
			logins[idx[j]].Failure = verify.FailureOf(r.Err)
		}
	}
	return logins, nil
}

// loginTargets resolves node UUIDs in s: one Login per UUID, failed
// for a node s does not know, and the SSH targets of the others with
// the index of their Login.
func loginTargets(s *fsm.State, uuids []string) ([]verify.Login,
	[]sshdist.Target, []int) {
	logins := make([]verify.Login, len(uuids))
	var tgts []sshdist.Target
	var idx []int
	for i, id := range uuids {
		logins[i].Target = id
		if n := s.Nodes[id]; n != nil {
			tgts, idx = append(tgts, target(n)), append(idx, i)
			continue
		}
		logins[i].Failure = &verify.Failure{Kind: verify.Other,
			Message: fmt.Sprintf("node %q is not in this candidate's "+
				"configuration", id)}
	}
	return logins, tgts, idx
}

// handleSelfReport answers the master's request for this node's view
// of itself.
func (d *Daemon) handleSelfReport(w http.ResponseWriter, r *http.Request) {
	if !d.admitVerifyCaller(w, r) {
		return
	}
	var a selfReportArgs
	if err := decodeBody(r, &a); err != nil {
		writeErr(w, http.StatusBadRequest, err)
		return
	}
	rep, err := d.selfReport(r.Context(), a.MinIndex)
	if err != nil {
		writeErr(w, http.StatusConflict, err)
		return
	}
	writeJSON(w, http.StatusOK, rep)
}

// selfReport describes this node: public material only (certificates
// without keys, fingerprints, file modes), never a secret.
func (d *Daemon) selfReport(ctx context.Context,
	minIndex uint64) (*verify.SelfReport, error) {
	d.mu.Lock()
	nf, id := d.node, d.id
	d.mu.Unlock()
	if nf == nil || id == nil {
		return nil, ErrNoIdentity
	}
	s := d.awaitIndex(ctx, minIndex)
	rep := &verify.SelfReport{UUID: nf.UUID, Name: nf.Name,
		AppliedIndex: s.Index, LoadedClientDigest: id.ClientDigest(),
		ClientCert: certBlocksOf(d.paths.ClientPEM()),
		ServerCert: certBlocksOf(d.paths.ServerPEM()),
		Files:      d.listStateFiles()}
	rep.PublicKeyFP, rep.PublicKeyErr = ownKeyFP(d.paths.SSHDir())
	if s.Cluster.ModifySSHSetup {
		d.reportAuthKeys(rep, d.paths.Under(s.Cluster.AuthorizedKeysFile))
		d.reportPubKeys(rep)
		rep.SSHD = d.sshdFact(ctx, s, nf)
	}
	return rep, nil
}

// awaitIndex returns the applied state once it has reached min, or
// the current one after verifyIndexWait.
func (d *Daemon) awaitIndex(ctx context.Context, min uint64) *fsm.State {
	ctx, cancel := context.WithTimeout(ctx, verifyIndexWait)
	defer cancel()
	d.applied.waitUntil(ctx, func() bool { return d.fsm.State().Index >= min })
	return d.fsm.State()
}

// certBlocksOf returns the certificates of the PEM file at path,
// without its key; "" when the file is missing or holds none.
func certBlocksOf(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return string(rpcsec.CertificatesOnly(data))
}

// ownKeyFP returns the fingerprint of the node's own SSH key, or why
// there is none.
func ownKeyFP(dir string) (fp, missing string) {
	signer, err := sshdist.LoadOwnKey(dir)
	if err != nil {
		return "", err.Error()
	}
	return ssh.FingerprintSHA256(signer.PublicKey()), ""
}

// listStateFiles lists the regular, non-hidden files of the state and
// own-key directories with their modes, as root-relative paths.
func (d *Daemon) listStateFiles() []verify.FileFact {
	var out []verify.FileFact
	for _, rel := range []string{sshdist.StateDir, sshdist.OwnKeyDir} {
		entries, err := os.ReadDir(d.paths.Under(rel))
		if err != nil {
			continue
		}
		for _, e := range entries {
			info, err := e.Info()
			if err != nil || !e.Type().IsRegular() ||
				strings.HasPrefix(e.Name(), ".") {
				continue
			}
			out = append(out, verify.FileFact{
				Path: filepath.Join(rel, e.Name()),
				Mode: fmt.Sprintf("%04o", info.Mode().Perm())})
		}
	}
	return out
}

// reportAuthKeys lists the keys of the managed authorized_keys file at
// path; a line that does not parse as a key is skipped, as sshd does.
func (d *Daemon) reportAuthKeys(rep *verify.SelfReport, path string) {
	rep.AuthorizedKeys = []verify.AuthKeyFact{}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	if err != nil {
		rep.AuthorizedKeysErr = fmt.Sprintf("reading %q: %v", path, err)
		return
	}
	rep.AuthorizedKeys = verify.AuthKeysOf(data)
}

// reportPubKeys lists this node's ganeti_pub_keys by fingerprint.
func (d *Daemon) reportPubKeys(rep *verify.SelfReport) {
	rep.PubKeys = []verify.PubKeyFact{}
	entries, err := sshdist.ReadPubKeys(d.paths.PubKeys())
	if errors.Is(err, sshdist.ErrNoPubKeysFile) {
		return
	}
	rep.PubKeysPresent = true
	if err != nil {
		rep.PubKeysErr = err.Error()
		return
	}
	for _, e := range entries {
		rep.PubKeys = append(rep.PubKeys, verify.PubKeyFact{UUID: e.UUID,
			Fingerprint: ssh.FingerprintSHA256(e.Key)})
	}
}

// sshdFact asks the host's sshd, with `sshd -T`, which authorized_keys
// files and command it would consult for root.
func (d *Daemon) sshdFact(ctx context.Context, s *fsm.State,
	nf *NodeFile) verify.SSHDFact {
	fact := verify.SSHDFact{
		Managed: d.paths.Under(s.Cluster.AuthorizedKeysFile)}
	bin, err := exec.LookPath("sshd")
	if err != nil {
		bin = "/usr/sbin/sshd"
	}
	ctx, cancel := context.WithTimeout(ctx, verifySSHDTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-T",
		"-f", d.paths.Under(sshdConfigPath),
		"-C", "user=root,host="+nf.Name+",addr="+nf.PrimaryIP)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		fact.Err = fmt.Sprintf("running %s -T: %v: %s", bin, err,
			strings.TrimSpace(stderr.String()))
		return fact
	}
	fact.Files, fact.Command = verify.SSHDKeySources(out, rootHome())
	fact.Checked = true
	return fact
}

// rootHome is root's home directory on this host, where sshd looks
// for relative authorized_keys paths.
func rootHome() string {
	if u, err := user.Lookup("root"); err == nil && u.HomeDir != "" {
		return u.HomeDir
	}
	return "/root"
}

// verifyPost sends in as JSON to path on the node at addr over the
// secured RPC and decodes the JSON answer into out.
func verifyPost(ctx context.Context, c *http.Client, addr, path string,
	in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost,
		"https://"+addr+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16*maxBody))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		var eb ErrorBody
		if json.Unmarshal(data, &eb) == nil && eb.Error != "" {
			return errors.New(eb.Error)
		}
		return fmt.Errorf("%s answered %s", addr, resp.Status)
	}
	return json.Unmarshal(data, out)
}
