package sshdist

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"ganeti-node/rpcsec"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"ganeti-node/atomicfile"
	"ganeti-node/fsm"
)

// MaxRequestSize is the largest ssh-update request, in bytes, that
// ServeUpdate reads. It bounds the helper's memory whatever the master
// (or anyone who can reach root's shell) sends.
const MaxRequestSize = 4 << 20

// Locations on a node, relative to its root prefix.
const (
	// StateDir holds the node's cluster files.
	StateDir = "/var/lib/ganeti"
	// OwnKeyDir holds the node's own SSH key pair.
	OwnKeyDir = "/root/.ssh"
	// DefaultAuthorizedKeysFile is the authorized_keys file that a Reset
	// cleans when the request names no other.
	DefaultAuthorizedKeysFile = "/root/.ssh/authorized_keys"
)

var (
	// ErrInvalidRequest is returned when an ssh-update request is not a
	// single well-formed JSON document of the expected shape, or when a
	// value in it fails validation. Nothing has been changed.
	ErrInvalidRequest = errors.New("sshdist: invalid ssh-update request")
	// ErrRequestTooLarge is returned when an ssh-update request is longer
	// than MaxRequestSize. Nothing has been changed.
	ErrRequestTooLarge = errors.New("sshdist: ssh-update request too large")
	// ErrWrongCluster is returned when the node's node.json names another
	// cluster than the request (or none). Nothing has been changed.
	ErrWrongCluster = errors.New("sshdist: node belongs to another cluster")
	// ErrCertKeyMismatch is returned when a certificate to install does
	// not belong to the node's pending private key. Nothing has been
	// changed.
	ErrCertKeyMismatch = errors.New(
		"sshdist: certificate does not match the pending key")
	// ErrNoPendingKey is returned when certificates arrive for a node
	// that has no pending key (generate_tls was not run, or the
	// certificates were installed already). Nothing has been changed.
	ErrNoPendingKey = errors.New("sshdist: no pending TLS key")
	// ErrUnsupportedOp is returned when a request asks for an operation
	// that the helper was started without (Env.NewCSR or Env.Activate
	// is nil). Nothing has been changed.
	ErrUnsupportedOp = errors.New("sshdist: operation not available")
)

// Env is what ServeUpdate needs from its host. Root is required; the
// function fields are only called when a request asks for them.
type Env struct {
	// Root is the absolute root prefix under which all node files live;
	// "/" in production, a temporary directory in tests.
	Root string
	// Now gives the time used to name backups; nil means time.Now.
	Now func() time.Time
	// NewCSR makes a fresh TLS private key and a certificate signing
	// request for nodeName on this node. Nil refuses generate_tls.
	NewCSR func(nodeName string) (keyPEM, csrPEM []byte, err error)
	// Activate tells the local daemon to load its identity. Nil refuses
	// activate.
	Activate func() error
}

// Request is one ssh-update document, sent by the master on the
// helper's stdin. Its operations are applied in the order of the
// fields; absent (zero) fields are no-ops.
type Request struct {
	// Cluster is the name of the cluster the master acts for. Required;
	// a node whose node.json names another cluster refuses the request.
	Cluster string `json:"cluster"`
	// Reset removes ganeti_pub_keys and every managed authorized_keys
	// line (lines the admin wrote stay), as for a re-added or removed
	// node.
	Reset bool `json:"reset,omitempty"`
	// GenerateSSHKey replaces the node's own SSH key pair (the old one
	// is backed up); the response carries the new public key.
	GenerateSSHKey *KeyGen `json:"generate_ssh_key,omitempty"`
	// GenerateTLS makes new server and client TLS keys, kept pending
	// until InstallCerts; the response carries both CSRs.
	GenerateTLS *TLSGen `json:"generate_tls,omitempty"`
	// InstallCerts installs certificates for the pending keys.
	InstallCerts *Certs `json:"install_certs,omitempty"`
	// Files are written to the state directory, each with the fixed
	// mode its name has (see FileMode).
	Files []File `json:"files,omitempty"`
	// KnownHosts is known_hosts text merged into the node's
	// known_hosts (see MergeKnownHosts): pins it names are set, others
	// are kept.
	KnownHosts string `json:"known_hosts,omitempty"`
	// RemoveFiles are removed from the state directory, with their
	// backups (see RemovableFile).
	RemoveFiles []string `json:"remove_files,omitempty"`
	// PubKeys sets or removes the node's ganeti_pub_keys file.
	PubKeys *PubKeysOp `json:"pub_keys,omitempty"`
	// AuthorizedKeys sets the managed lines of an authorized_keys file.
	AuthorizedKeys *AuthKeysOp `json:"authorized_keys,omitempty"`
	// Activate asks the node's daemon to load its identity.
	Activate bool `json:"activate,omitempty"`
	// Report asks for Response.Report.
	Report bool `json:"report,omitempty"`
	// ReadCAKey asks for the node's CA key (Response.CAKey): a new
	// master that missed its promotion's fan-out takes it from another
	// candidate this way, over SSH, the only way the CA key travels.
	ReadCAKey bool `json:"read_ca_key,omitempty"`
	// ReadKnownHosts asks for the node's known_hosts
	// (Response.KnownHosts): a new master that missed a join's fan-out
	// takes the new host's pin from a candidate that has it.
	ReadKnownHosts bool `json:"read_known_hosts,omitempty"`
}

// KeyGen asks for a new SSH key pair of a type KeyFileName accepts.
type KeyGen struct {
	// Type is the key type, for example "ed25519" or "rsa".
	Type string `json:"type"`
	// Bits is the key size; 0 means the type's default.
	Bits int `json:"bits,omitempty"`
}

// TLSGen asks for new TLS keys and CSRs.
type TLSGen struct {
	// NodeName is the node's name, put into the CSRs.
	NodeName string `json:"node_name"`
}

// Certs carries the signed certificates (PEM, leaf first, then any
// intermediates) for the pending keys. An empty field is skipped.
type Certs struct {
	Server string `json:"server,omitempty"`
	Client string `json:"client,omitempty"`
}

// File is one state-directory file to write.
type File struct {
	// Name is the file name; it must pass FileMode.
	Name string `json:"name"`
	// Data is the complete new content.
	Data string `json:"data"`
}

// KeyEntry pairs a node UUID with one of its SSH public keys, written
// as an authorized_keys line without options.
type KeyEntry struct {
	UUID string `json:"uuid"`
	Key  string `json:"key"`
}

// PubKeysOp sets ganeti_pub_keys to exactly Entries, or removes it.
type PubKeysOp struct {
	Entries []KeyEntry `json:"entries,omitempty"`
	// Remove deletes the file; Entries must then be empty.
	Remove bool `json:"remove,omitempty"`
}

// AuthKeysOp sets the managed lines of File to exactly Keys. Lines the
// tool did not write are kept as they are.
type AuthKeysOp struct {
	// File is the absolute, clean path of the authorized_keys file as
	// seen from the node's root, like DefaultAuthorizedKeysFile.
	File string     `json:"file"`
	Keys []KeyEntry `json:"keys"`
	// Revoke lists key lines ("type base64") to remove from every line
	// of the file, including lines the admin wrote: for keys that are
	// replaced or compromised, like a migrated cluster's shared key.
	Revoke []string `json:"revoke,omitempty"`
}

// Response is the helper's answer on stdout.
type Response struct {
	// SSHPublicKey is the node's own public key line, after
	// GenerateSSHKey or when a Report was asked for.
	SSHPublicKey string `json:"ssh_public_key,omitempty"`
	// ServerCSR and ClientCSR are PEM CSRs, after GenerateTLS.
	ServerCSR string `json:"server_csr,omitempty"`
	ClientCSR string `json:"client_csr,omitempty"`
	// Changed lists the files (root-relative paths) that changed, also
	// when the request failed part way.
	Changed []string `json:"changed,omitempty"`
	// Report is filled when the request asked for it.
	Report *Report `json:"report,omitempty"`
	// CAKey is the node's ca-key.pem, when ReadCAKey asked for it and
	// the node has one.
	CAKey string `json:"ca_key,omitempty"`
	// KnownHosts is the node's known_hosts, when ReadKnownHosts asked
	// for it and the node has one.
	KnownHosts string `json:"known_hosts,omitempty"`
	// Error says why the request failed; empty on success.
	Error string `json:"error,omitempty"`
}

// ServeUpdate reads one Request from in, applies it to the node under
// env.Root and writes one Response to out. It validates the whole
// request before it takes the node's update lock and changes anything,
// so a rejected request leaves every file as it was. Concurrent calls on
// one node are serialised by an exclusive flock. On failure the response
// carries the error and ServeUpdate returns it too, so that the command
// exits non-zero.
func ServeUpdate(env Env, in io.Reader, out io.Writer) error {
	resp := &Response{}
	err := serveUpdate(env, in, resp)
	if err != nil {
		resp.Error = err.Error()
	}
	if werr := json.NewEncoder(out).Encode(resp); werr != nil && err == nil {
		err = fmt.Errorf("sshdist: writing ssh-update response: %w", werr)
	}
	return err
}

func serveUpdate(env Env, in io.Reader, resp *Response) error {
	req, err := decodeRequest(in)
	if err != nil {
		return err
	}
	p, err := req.plan()
	if err != nil {
		return err
	}
	if err := checkEnv(env, req); err != nil {
		return err
	}
	u := &updater{env: env, req: req, plan: p, resp: resp}
	if u.env.Now == nil {
		u.env.Now = time.Now
	}

	// Everything below runs under the node's lock, so two masters (or
	// a retry racing the original) never interleave their writes.
	unlock, err := lockUpdates(u.state(".ssh-update.lock"))
	if err != nil {
		return err
	}
	defer unlock()
	return u.run()
}

// decodeRequest reads exactly one JSON document of at most
// MaxRequestSize bytes, refusing unknown fields and trailing data.
//
// TODO: encoding/json matches field names case-insensitively and lets
// a repeated key win. Both are harmless while this is the only parser
// that reads a request; move to encoding/json/v2 once it is no longer
// an experiment, to refuse them too.
func decodeRequest(in io.Reader) (*Request, error) {
	data, err := io.ReadAll(io.LimitReader(in, MaxRequestSize+1))
	if err != nil {
		return nil, fmt.Errorf("sshdist: reading ssh-update request: %w", err)
	}
	if len(data) > MaxRequestSize {
		return nil, fmt.Errorf("%w: more than %d bytes",
			ErrRequestTooLarge, MaxRequestSize)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var req Request
	if err := dec.Decode(&req); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidRequest, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: data after the JSON document",
			ErrInvalidRequest)
	}
	return &req, nil
}

// checkEnv refuses requests for operations the host did not wire up.
func checkEnv(env Env, req *Request) error {
	if env.Root == "" || !filepath.IsAbs(env.Root) {
		return fmt.Errorf("sshdist: root prefix %q is not an absolute "+
			"path; set GANETI_ROOT or --root", env.Root)
	}
	if req.GenerateTLS != nil && env.NewCSR == nil {
		return fmt.Errorf("%w: generate_tls", ErrUnsupportedOp)
	}
	if req.Activate && env.Activate == nil {
		return fmt.Errorf("%w: activate", ErrUnsupportedOp)
	}
	return nil
}

// lockUpdates takes an exclusive flock on path, creating it (and the
// state directory) when missing. The returned function releases it.
func lockUpdates(path string) (func(), error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("sshdist: creating %q: %w",
			filepath.Dir(path), err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("sshdist: opening lock %q: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("sshdist: locking %q: %w", path, err)
	}
	return func() { f.Close() }, nil
}

// stateFileRule is the fixed mode of a state file that ssh-update may
// write, and whether its old content is kept as a backup.
type stateFileRule struct {
	mode   os.FileMode
	backup bool
}

// writableStateFiles is the allow-list for Request.Files, besides the
// ssconf_* files. Derived or frequently rewritten files get no backup.
var writableStateFiles = map[string]stateFileRule{
	"ca.pem":      {0o644, true},
	"ca-key.pem":  {0o600, true},
	"gossip.key":  {0o600, true},
	"known_hosts": {0o644, false},
	"node.json":   {0o644, true},
	"rapi.pem":    {0o600, true},
	"rapi_users":  {0o600, true},
}

// removableStateFiles is the allow-list for Request.RemoveFiles.
var removableStateFiles = map[string]bool{
	"ca-key.pem": true, "rapi.pem": true, "rapi_users": true,
	"node.json": true, "gossip.key": true, "server.pem": true,
	"client.pem": true, "ganeti_pub_keys": true,
}

const (
	ssconfFilePrefix = "ssconf_"
	maxSsconfName    = 64
)

// StateFileMode returns the fixed mode with which ssh-update writes the
// state-directory file name, and false when ssh-update never writes a
// file of that name.
func StateFileMode(name string) (os.FileMode, bool) {
	if rule, ok := writableStateFiles[name]; ok {
		return rule.mode, true
	}
	if validSsconfName(name) {
		return 0o644, true
	}
	return 0, false
}

// RemovableStateFile reports whether ssh-update may remove the
// state-directory file name.
func RemovableStateFile(name string) bool { return removableStateFiles[name] }

func validSsconfName(name string) bool {
	key, ok := strings.CutPrefix(name, ssconfFilePrefix)
	if !ok || key == "" || len(name) > maxSsconfName {
		return false
	}
	for _, c := range key {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// maxKeyBits bounds KeyGen.Bits so that a request cannot keep a node
// busy generating an enormous RSA key.
const maxKeyBits = 16384

// updatePlan is a validated request with its keys and certificates
// parsed, ready to apply.
type updatePlan struct {
	authFile    string // root-relative authorized_keys path
	authKeys    []ManagedKey
	authRevoke  []ssh.PublicKey
	pubKeys     []PubKeyEntry
	serverChain []*x509.Certificate
	clientChain []*x509.Certificate
}

// Validate checks r the way ServeUpdate does before it changes
// anything: the cluster name, every key line and UUID, file names,
// the authorized_keys path and certificate PEMs. It does not look at
// any node's files. The error wraps ErrInvalidRequest.
func (r *Request) Validate() error {
	_, err := r.plan()
	return err
}

func (r *Request) plan() (*updatePlan, error) {
	if r == nil {
		return nil, badRequest("no request")
	}
	if !fsm.ValidName(r.Cluster) {
		return nil, badRequest("cluster %q is not a valid cluster name",
			r.Cluster)
	}
	p := &updatePlan{authFile: DefaultAuthorizedKeysFile}
	checks := []func(*updatePlan) error{
		r.checkKeyGen, r.checkTLS, r.checkFiles, r.checkRemoveFiles,
		r.checkPubKeys, r.checkAuthKeys, r.checkKnownHosts,
	}
	for _, check := range checks {
		if err := check(p); err != nil {
			return nil, err
		}
	}
	return p, nil
}

func badRequest(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidRequest}, args...)...)
}

func (r *Request) checkKeyGen(*updatePlan) error {
	g := r.GenerateSSHKey
	if g == nil {
		return nil
	}
	if _, err := KeyFileName(g.Type); err != nil {
		return badRequest("generate_ssh_key.type: %w", err)
	}
	if g.Bits < 0 || g.Bits > maxKeyBits {
		return badRequest("generate_ssh_key.bits %d is outside 0..%d",
			g.Bits, maxKeyBits)
	}
	return nil
}

func (r *Request) checkTLS(p *updatePlan) error {
	if g := r.GenerateTLS; g != nil && !fsm.ValidName(g.NodeName) {
		return badRequest("generate_tls.node_name %q is not a valid node name",
			g.NodeName)
	}
	c := r.InstallCerts
	if c == nil {
		return nil
	}
	if r.GenerateTLS != nil {
		return badRequest("install_certs cannot match keys that " +
			"generate_tls makes in the same request; send them separately")
	}
	if c.Server == "" && c.Client == "" {
		return badRequest("install_certs holds no certificate")
	}
	var err error
	p.serverChain, err = parseCertChain("install_certs.server", c.Server)
	if err != nil {
		return err
	}
	p.clientChain, err = parseCertChain("install_certs.client", c.Client)
	return err
}

// parseCertChain parses a PEM text made only of CERTIFICATE blocks
// (leaf first). An empty text gives a nil chain.
func parseCertChain(field, text string) ([]*x509.Certificate, error) {
	var chain []*x509.Certificate
	rest := bytes.TrimSpace([]byte(text))
	for len(rest) > 0 {
		if !bytes.HasPrefix(rest, []byte("-----BEGIN ")) {
			return nil, badRequest("%s: text outside PEM blocks", field)
		}
		block, after := pem.Decode(rest)
		if block == nil {
			return nil, badRequest("%s: malformed PEM block", field)
		}
		if block.Type != "CERTIFICATE" || len(block.Headers) != 0 {
			return nil, badRequest("%s: PEM block %q, want only CERTIFICATE",
				field, block.Type)
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, badRequest("%s: %w", field, err)
		}
		chain = append(chain, cert)
		rest = bytes.TrimSpace(after)
	}
	return chain, nil
}

func (r *Request) checkFiles(*updatePlan) error {
	seen := make(map[string]bool, len(r.Files))
	for i, f := range r.Files {
		if _, ok := StateFileMode(f.Name); !ok {
			return badRequest("files[%d].name %q is not a file ssh-update "+
				"writes", i, f.Name)
		}
		if seen[f.Name] {
			return badRequest("files[%d].name %q appears twice", i, f.Name)
		}
		seen[f.Name] = true
		if f.Name == "node.json" {
			if err := checkNodeJSON([]byte(f.Data), r.Cluster); err != nil {
				return badRequest("files[%d]: %w", i, err)
			}
		}
	}
	return nil
}

// checkNodeJSON refuses a node.json for another cluster, so that a
// write cannot lock the node out of its own cluster.
func checkNodeJSON(data []byte, cluster string) error {
	var id struct {
		Cluster *string `json:"cluster"`
	}
	if err := json.Unmarshal(data, &id); err != nil {
		return fmt.Errorf("node.json is not a JSON object: %w", err)
	}
	if id.Cluster == nil || *id.Cluster != cluster {
		got := "<none>"
		if id.Cluster != nil {
			got = *id.Cluster
		}
		return fmt.Errorf("%w: node.json names cluster %q, request is for %q",
			ErrWrongCluster, got, cluster)
	}
	return nil
}

func (r *Request) checkRemoveFiles(*updatePlan) error {
	seen := make(map[string]bool, len(r.RemoveFiles))
	for i, name := range r.RemoveFiles {
		if !RemovableStateFile(name) {
			return badRequest("remove_files[%d] %q is not a file ssh-update "+
				"removes", i, name)
		}
		if seen[name] {
			return badRequest("remove_files[%d] %q appears twice", i, name)
		}
		seen[name] = true
		for _, f := range r.Files {
			if f.Name == name {
				return badRequest("remove_files[%d] %q is also in files", i, name)
			}
		}
	}
	return nil
}

func (r *Request) checkPubKeys(p *updatePlan) error {
	op := r.PubKeys
	if op == nil {
		return nil
	}
	if op.Remove && len(op.Entries) > 0 {
		return badRequest("pub_keys: remove with entries; send one or the other")
	}
	for i, e := range op.Entries {
		key, err := parseKeyEntry(fmt.Sprintf("pub_keys.entries[%d]", i), e)
		if err != nil {
			return err
		}
		p.pubKeys = append(p.pubKeys, PubKeyEntry{UUID: e.UUID, Key: key})
	}
	return nil
}

func (r *Request) checkAuthKeys(p *updatePlan) error {
	op := r.AuthorizedKeys
	if op == nil {
		return nil
	}
	if err := checkAuthFilePath(op.File); err != nil {
		return err
	}
	p.authFile = op.File
	for i, e := range op.Keys {
		key, err := parseKeyEntry(fmt.Sprintf("authorized_keys.keys[%d]", i), e)
		if err != nil {
			return err
		}
		p.authKeys = append(p.authKeys, ManagedKey{UUID: e.UUID, Key: key})
	}
	for i, line := range op.Revoke {
		key, err := parsePlainKeyLine(line)
		if err != nil {
			return badRequest("authorized_keys.revoke[%d]: %v", i, err)
		}
		p.authRevoke = append(p.authRevoke, key)
	}
	return nil
}

// checkAuthFilePath accepts an absolute, clean path below "/", so that
// joined to the root prefix it can never leave the node's root.
func checkAuthFilePath(file string) error {
	switch {
	case !filepath.IsAbs(file):
		return badRequest("authorized_keys.file %q is not absolute", file)
	case filepath.Clean(file) != file || strings.Contains(file, ".."):
		return badRequest("authorized_keys.file %q is not a clean path", file)
	case file == "/" || strings.ContainsRune(file, 0):
		return badRequest("authorized_keys.file %q is not a file path", file)
	}
	return nil
}

// parseKeyEntry checks the UUID and parses the key of e; field names
// the entry in error messages.
func parseKeyEntry(field string, e KeyEntry) (ssh.PublicKey, error) {
	if !fsm.ValidUUID(e.UUID) {
		return nil, badRequest("%s.uuid %q is not a lowercase RFC 4122 UUID",
			field, e.UUID)
	}
	key, err := parsePlainKeyLine(e.Key)
	if err != nil {
		return nil, badRequest("%s.key: %w", field, err)
	}
	return key, nil
}

// parsePlainKeyLine parses one authorized_keys line that carries no
// options and is not a certificate: the tool writes the options of its
// own lines, and a key must not smuggle in its own.
func parsePlainKeyLine(line string) (ssh.PublicKey, error) {
	if strings.ContainsAny(line, "\r\n\x00") {
		return nil, errors.New("key must be a single line")
	}
	key, _, opts, _, err := ssh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		return nil, err
	}
	if len(opts) > 0 {
		return nil, errors.New("key options are not allowed")
	}
	if _, ok := key.(*ssh.Certificate); ok {
		return nil, errors.New("certificates are not allowed, want a plain key")
	}
	return key, nil
}

// updater applies one validated request to one node.
type updater struct {
	env  Env
	req  *Request
	plan *updatePlan
	resp *Response
	gen  generated
}

// generated is the material made before the first write, so that a
// failure to make it (a bad key size, a CSR error, certificates that do
// not match) leaves the node unchanged.
type generated struct {
	sshPriv, sshPub      []byte
	serverKey, clientKey []byte
	serverPEM, clientPEM []byte // certificate chain + pending key
}

func (u *updater) root(rel string) string {
	return filepath.Join(u.env.Root, rel)
}

func (u *updater) state(name string) string {
	return filepath.Join(u.env.Root, StateDir, name)
}

func (u *updater) changed(rel string) {
	if !slices.Contains(u.resp.Changed, rel) {
		u.resp.Changed = append(u.resp.Changed, rel)
	}
}

// run applies the request in the fixed order the protocol defines.
func (u *updater) run() error {
	if err := u.checkCluster(); err != nil {
		return err
	}
	if err := u.prepare(); err != nil {
		return err
	}
	steps := []func() error{
		u.reset, u.installSSHKey, u.storePendingTLS, u.installCerts,
		u.writeFiles, u.removeFiles, u.setPubKeys, u.setAuthKeys,
		u.activate, u.report,
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return err
		}
	}
	return nil
}

// checkCluster refuses to act on a node that belongs to another
// cluster. A node without node.json has not joined yet and accepts.
func (u *updater) checkCluster() error {
	path := u.state("node.json")
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("sshdist: reading %q: %w", path, err)
	}
	if err := checkNodeJSON(data, u.req.Cluster); err != nil {
		return fmt.Errorf("sshdist: checking %q: %w", path, err)
	}
	return nil
}

// prepare makes every key and CSR and matches the certificates against
// the pending keys, all in memory.
func (u *updater) prepare() error {
	if g := u.req.GenerateSSHKey; g != nil {
		var err error
		u.gen.sshPriv, u.gen.sshPub, err = GenerateKeyPair(g.Type, g.Bits,
			"ganeti-node@"+u.req.Cluster)
		if err != nil {
			return fmt.Errorf("sshdist: generating %s SSH key: %w", g.Type, err)
		}
	}
	if err := u.makeCSRs(); err != nil {
		return err
	}
	var err error
	u.gen.serverPEM, err = u.matchCert("server", u.plan.serverChain)
	if err != nil {
		return err
	}
	u.gen.clientPEM, err = u.matchCert("client", u.plan.clientChain)
	return err
}

func (u *updater) makeCSRs() error {
	g := u.req.GenerateTLS
	if g == nil {
		return nil
	}
	var csr []byte
	var err error
	if u.gen.serverKey, csr, err = u.env.NewCSR(g.NodeName); err != nil {
		return fmt.Errorf("sshdist: making server CSR for %q: %w", g.NodeName, err)
	}
	u.resp.ServerCSR = string(csr)
	if u.gen.clientKey, csr, err = u.env.NewCSR(g.NodeName); err != nil {
		return fmt.Errorf("sshdist: making client CSR for %q: %w", g.NodeName, err)
	}
	u.resp.ClientCSR = string(csr)
	return nil
}

// matchCert checks that the leaf of chain certifies the pending key of
// kind ("server" or "client") and returns the file to install.
func (u *updater) matchCert(kind string,
	chain []*x509.Certificate) ([]byte, error) {
	if len(chain) == 0 {
		return nil, nil
	}
	path := u.state(kind + ".key.pending")
	keyPEM, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %q is missing; run generate_tls first",
			ErrNoPendingKey, path)
	}
	if err != nil {
		return nil, fmt.Errorf("sshdist: reading %q: %w", path, err)
	}
	signer, err := parsePrivateKeyPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("sshdist: parsing %q: %w", path, err)
	}
	pub, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(chain[0].PublicKey) {
		return nil, fmt.Errorf("%w: %s certificate %q (serial %s) is not for %q",
			ErrCertKeyMismatch, kind, chain[0].Subject.CommonName,
			chain[0].SerialNumber, path)
	}
	var out []byte
	for _, c := range chain {
		out = append(out, pem.EncodeToMemory(
			&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return append(out, keyPEM...), nil
}

// parsePrivateKeyPEM parses the first PEM block of data as a PKCS #8,
// SEC 1 or PKCS #1 private key.
func parsePrivateKeyPEM(data []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	var key any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("PEM block %q is not a private key", block.Type)
	}
	if err != nil {
		return nil, err
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%T cannot sign", key)
	}
	return signer, nil
}

// reset forgets the node's cluster SSH state: the pub-key file and
// every managed authorized_keys line. Lines the admin wrote stay.
func (u *updater) reset() error {
	if !u.req.Reset {
		return nil
	}
	if err := u.removeState("ganeti_pub_keys"); err != nil {
		return err
	}
	return u.updateAuthKeys(nil)
}

func (u *updater) installSSHKey() error {
	g := u.req.GenerateSSHKey
	if g == nil {
		return nil
	}
	err := InstallKeyPair(u.root(OwnKeyDir), g.Type, u.gen.sshPriv,
		u.gen.sshPub, u.env.Now())
	if err != nil {
		return fmt.Errorf("sshdist: installing %s SSH key: %w", g.Type, err)
	}
	if name, err := KeyFileName(g.Type); err == nil {
		rel := filepath.Join(OwnKeyDir, name)
		u.changed(rel)
		u.changed(rel + ".pub")
	}
	u.resp.SSHPublicKey = strings.TrimSpace(string(u.gen.sshPub))
	return nil
}

// storePendingTLS keeps the new TLS keys until their certificates come
// back. A pending key that never got a certificate is worthless, so an
// older one is replaced rather than backed up.
func (u *updater) storePendingTLS() error {
	if u.req.GenerateTLS == nil {
		return nil
	}
	pending := map[string][]byte{
		"server.key.pending": u.gen.serverKey,
		"client.key.pending": u.gen.clientKey,
	}
	for _, name := range []string{"server.key.pending", "client.key.pending"} {
		if err := atomicfile.Write(u.state(name), pending[name], 0o600); err != nil {
			return err
		}
		u.changed(filepath.Join(StateDir, name))
	}
	return nil
}

func (u *updater) installCerts() error {
	for _, kind := range []string{"server", "client"} {
		data := u.gen.serverPEM
		if kind == "client" {
			data = u.gen.clientPEM
		}
		if data == nil {
			continue
		}
		if err := u.writeState(kind+".pem", data, 0o600, true); err != nil {
			return err
		}
		if err := atomicfile.Remove(u.state(kind + ".key.pending")); err != nil {
			return err
		}
	}
	return nil
}

func (r *Request) checkKnownHosts(*updatePlan) error {
	if _, err := parseKnownUpdate([]byte(r.KnownHosts)); err != nil {
		return badRequest("known_hosts: %v", err)
	}
	return nil
}

func (u *updater) writeFiles() error {
	if u.req.KnownHosts != "" {
		path := u.state("known_hosts")
		changed, err := MergeKnownHosts(path, []byte(u.req.KnownHosts))
		if err != nil {
			return fmt.Errorf("sshdist: merging %q: %w", path, err)
		}
		if changed {
			u.changed(filepath.Join(StateDir, "known_hosts"))
		}
	}
	for _, f := range u.req.Files {
		mode, _ := StateFileMode(f.Name)
		backup := writableStateFiles[f.Name].backup
		if err := u.writeState(f.Name, []byte(f.Data), mode, backup); err != nil {
			return err
		}
	}
	return nil
}

// writeState replaces a state file unless it already has this content
// and mode. With backup, the old content is kept first.
func (u *updater) writeState(name string, data []byte, mode os.FileMode,
	backup bool) error {
	path := u.state(name)
	if st, err := os.Stat(path); err == nil && st.Mode().Perm() == mode {
		if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
			return nil
		}
	}
	if backup {
		if _, err := atomicfile.Backup(path, u.env.Now()); err != nil {
			return err
		}
	}
	if err := atomicfile.Write(path, data, mode); err != nil {
		return err
	}
	u.changed(filepath.Join(StateDir, name))
	return nil
}

func (u *updater) removeFiles() error {
	for _, name := range u.req.RemoveFiles {
		if err := u.removeState(name); err != nil {
			return err
		}
	}
	return nil
}

// removeState removes a state file and its backups: a removed file is
// revoked material (a demoted node must keep no copy of the CA key).
func (u *updater) removeState(name string) error {
	entries, err := os.ReadDir(u.state(""))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("sshdist: listing %q: %w", u.state(""), err)
	}
	for _, e := range entries {
		n := e.Name()
		if n != name && !strings.HasPrefix(n, name+".bak-") {
			continue
		}
		if err := atomicfile.Remove(u.state(n)); err != nil {
			return err
		}
		u.changed(filepath.Join(StateDir, n))
	}
	return nil
}

func (u *updater) setPubKeys() error {
	op := u.req.PubKeys
	if op == nil {
		return nil
	}
	if op.Remove {
		return u.removeState("ganeti_pub_keys")
	}
	path := u.state("ganeti_pub_keys")
	want := FormatPubKeys(u.plan.pubKeys)
	if st, err := os.Stat(path); err == nil && st.Mode().Perm() == 0o600 {
		if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, want) {
			return nil
		}
	}
	if err := WritePubKeys(path, u.plan.pubKeys); err != nil {
		return fmt.Errorf("sshdist: writing %q: %w", path, err)
	}
	u.changed(filepath.Join(StateDir, "ganeti_pub_keys"))
	return nil
}

func (u *updater) setAuthKeys() error {
	if u.req.AuthorizedKeys == nil {
		return nil
	}
	return u.updateAuthKeys(u.plan.authKeys)
}

func (u *updater) updateAuthKeys(keys []ManagedKey) error {
	path := u.root(u.plan.authFile)
	changed, err := UpdateAuthorizedKeys(path, keys, u.plan.authRevoke...)
	if err != nil {
		return fmt.Errorf("sshdist: updating %q: %w", path, err)
	}
	if changed {
		u.changed(u.plan.authFile)
	}
	return nil
}

func (u *updater) activate() error {
	if !u.req.Activate {
		return nil
	}
	if err := u.env.Activate(); err != nil {
		return fmt.Errorf("sshdist: activating the node daemon: %w", err)
	}
	return nil
}

// Report describes a node's SSH and cluster files, for verify.
type Report struct {
	// PublicKey is the node's own SSH public key line; empty when the
	// key could not be loaded, and PublicKeyError says why.
	PublicKey      string `json:"public_key,omitempty"`
	PublicKeyError string `json:"public_key_error,omitempty"`
	// ClientCert holds the certificate blocks of client.pem (PEM, leaf
	// first), never its key; empty when the node has none. The master
	// takes the node's candidate-map digest from it.
	ClientCert string `json:"client_cert,omitempty"`
	// Files lists every file of the state directory and of the own key
	// directory, plus the well-known state files that are missing,
	// sorted by path.
	Files []FileStatus `json:"files"`
}

// FileStatus is one file of a Report.
type FileStatus struct {
	// Path is root-relative, like "/var/lib/ganeti/ca.pem".
	Path   string `json:"path"`
	Exists bool   `json:"exists"`
	// Mode is the permission bits in octal, like "0600"; empty when the
	// file does not exist.
	Mode string `json:"mode,omitempty"`
}

// knownStateFiles are reported even when missing, so that verify can
// tell "absent" from "not looked at".
var knownStateFiles = []string{
	"ca.pem", "ca-key.pem", "client.pem", "ganeti_pub_keys",
	"gossip.key", "known_hosts", "node.json", "rapi.pem", "rapi_users",
	"server.pem",
}

func (u *updater) report() error {
	if u.req.ReadCAKey {
		if data, err := os.ReadFile(u.state("ca-key.pem")); err == nil {
			u.resp.CAKey = string(data)
		}
	}
	if u.req.ReadKnownHosts {
		if data, err := os.ReadFile(u.state("known_hosts")); err == nil {
			u.resp.KnownHosts = string(data)
		}
	}
	if !u.req.Report {
		return nil
	}
	rep := &Report{}
	if signer, err := LoadOwnKey(u.root(OwnKeyDir)); err != nil {
		rep.PublicKeyError = err.Error()
	} else {
		line := ssh.MarshalAuthorizedKey(signer.PublicKey())
		rep.PublicKey = strings.TrimSpace(string(line))
	}
	rep.ClientCert = u.certsOf("client.pem")
	files := map[string]FileStatus{}
	for _, name := range knownStateFiles {
		rel := filepath.Join(StateDir, name)
		files[rel] = FileStatus{Path: rel}
	}
	for _, dir := range []string{StateDir, OwnKeyDir} {
		if err := u.statDir(dir, files); err != nil {
			return err
		}
	}
	for _, st := range files {
		rep.Files = append(rep.Files, st)
	}
	slices.SortFunc(rep.Files, func(a, b FileStatus) int {
		return strings.Compare(a.Path, b.Path)
	})
	u.resp.Report = rep
	u.resp.SSHPublicKey = rep.PublicKey
	return nil
}

// certsOf returns the certificates of the state file name, without
// its key; "" when it is missing or holds none.
func (u *updater) certsOf(name string) string {
	data, err := os.ReadFile(u.state(name))
	if err != nil {
		return ""
	}
	return string(rpcsec.CertificatesOnly(data))
}

// statDir adds the regular, non-hidden files of the root-relative dir.
func (u *updater) statDir(dir string, files map[string]FileStatus) error {
	entries, err := os.ReadDir(u.root(dir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("sshdist: listing %q: %w", u.root(dir), err)
	}
	for _, e := range entries {
		if !e.Type().IsRegular() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue // removed since ReadDir
		}
		rel := filepath.Join(dir, e.Name())
		files[rel] = FileStatus{Path: rel, Exists: true,
			Mode: fmt.Sprintf("%04o", info.Mode().Perm())}
	}
	return nil
}
