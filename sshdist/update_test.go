package sshdist

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

const testCluster = "cluster1.example.com"

// Node UUIDs used by the tests.
const (
	uuidA = "0a0a0a0a-0000-4000-8000-00000000000a"
	uuidB = "0b0b0b0b-0000-4000-8000-00000000000b"
)

// adminLine is an authorized_keys line the admin wrote; ssh-update
// must never touch it.
const adminLine = `from="10.0.0.1" ssh-ed25519 ` +
	`AAAAC3NzaC1lZDI1NTE5AAAAIGl4hWwzK3dmxXlqDqaNQs6vU2bDqf2WSnMqjJ2dZ9cB admin`

// testNode is a node root for ServeUpdate with a test Env.
type testNode struct {
	root        string
	env         Env
	activations int
}

func newTestNode(t testing.TB) *testNode {
	t.Helper()
	n := &testNode{root: t.TempDir()}
	clock := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	n.env = Env{
		Root: n.root,
		Now: func() time.Time {
			clock = clock.Add(time.Second)
			return clock
		},
		NewCSR:   testNewCSR,
		Activate: func() error { n.activations++; return nil },
	}
	return n
}

func (n *testNode) path(rel string) string { return filepath.Join(n.root, rel) }

func (n *testNode) write(t testing.TB, rel, data string, mode fs.FileMode) {
	t.Helper()
	p := n.path(rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

func (n *testNode) read(t testing.TB, rel string) string {
	t.Helper()
	data, err := os.ReadFile(n.path(rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func (n *testNode) mode(t testing.TB, rel string) fs.FileMode {
	t.Helper()
	st, err := os.Stat(n.path(rel))
	if err != nil {
		t.Fatal(err)
	}
	return st.Mode().Perm()
}

func (n *testNode) exists(rel string) bool {
	_, err := os.Lstat(n.path(rel))
	return err == nil
}

// serve runs ServeUpdate on req (a *Request, or raw input as a string)
// and decodes the response, which must be one JSON document.
func (n *testNode) serve(t testing.TB, req any) (*Response, error) {
	t.Helper()
	in, ok := req.(string)
	if !ok {
		data, err := json.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		in = string(data)
	}
	var out bytes.Buffer
	err := ServeUpdate(n.env, strings.NewReader(in), &out)
	resp := &Response{}
	dec := json.NewDecoder(&out)
	dec.DisallowUnknownFields()
	if derr := dec.Decode(resp); derr != nil {
		t.Fatalf("decoding response %q: %v", out.String(), derr)
	}
	if (err != nil) != (resp.Error != "") {
		t.Fatalf("got error %v and response error %q, want both or neither",
			err, resp.Error)
	}
	return resp, err
}

func (n *testNode) mustServe(t testing.TB, req *Request) *Response {
	t.Helper()
	resp, err := n.serve(t, req)
	if err != nil {
		t.Fatalf("ServeUpdate: %v", err)
	}
	return resp
}

// snapshot maps every path under root to its mode and content.
func snapshot(t testing.TB, root string) map[string]string {
	t.Helper()
	files := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		data := []byte(nil)
		if d.Type().IsRegular() {
			if data, err = os.ReadFile(p); err != nil {
				return err
			}
		}
		files[p] = fmt.Sprintf("%v %q", info.Mode(), data)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func assertSameTree(t testing.TB, before, after map[string]string) {
	t.Helper()
	for p, want := range before {
		if got, ok := after[p]; !ok {
			t.Errorf("%s: gone, want %s", p, want)
		} else if got != want {
			t.Errorf("%s: got %s, want %s", p, got, want)
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			t.Errorf("%s: created, want nothing new", p)
		}
	}
}

func newTestKey(t testing.TB) (ssh.PublicKey, string) {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return key, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key)))
}

// testNewCSR is the test's Env.NewCSR: a P-256 key and a CSR.
func testNewCSR(nodeName string) (keyPEM, csrPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: nodeName}}
	csr, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr}),
		nil
}

// signTestCSR self-signs a certificate for the key of csrPEM, standing
// in for the cluster CA.
func signTestCSR(t testing.TB, csrPEM string) string {
	t.Helper()
	block, _ := pem.Decode([]byte(csrPEM))
	if block == nil {
		t.Fatalf("no PEM in CSR %q", csrPEM)
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(42),
		Subject:      csr.Subject,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl,
		csr.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

func nodeJSON(cluster string) string {
	return fmt.Sprintf(`{"cluster": %q, "uuid": %q, "name": "node1"}`,
		cluster, uuidA)
}

func TestStateFileMode_AllowList(t *testing.T) {
	tests := []struct {
		name string
		mode fs.FileMode
		ok   bool
	}{
		{"ca.pem", 0o644, true},
		{"ca-key.pem", 0o600, true},
		{"gossip.key", 0o600, true},
		{"known_hosts", 0o644, true},
		{"node.json", 0o644, true},
		{"rapi.pem", 0o600, true},
		{"rapi_users", 0o600, true},
		{"ssconf_master_node", 0o644, true},
		{"ssconf_node_list2", 0o644, true},
		{"ssconf_", 0, false},
		{"ssconf_Master", 0, false},
		{"ssconf_a/../../x", 0, false},
		{"server.pem", 0, false},
		{"ganeti_pub_keys", 0, false},
		{"../ca.pem", 0, false},
		{"", 0, false},
	}
	for _, tt := range tests {
		mode, ok := StateFileMode(tt.name)
		if mode != tt.mode || ok != tt.ok {
			t.Errorf("StateFileMode(%q): got %#o %v, want %#o %v",
				tt.name, mode, ok, tt.mode, tt.ok)
		}
	}
}

func TestServeUpdate_WritesFilesWithFixedModes(t *testing.T) {
	n := newTestNode(t)
	req := &Request{Cluster: testCluster, Files: []File{
		{Name: "ca.pem", Data: "CA"},
		{Name: "ca-key.pem", Data: "CAKEY"},
		{Name: "gossip.key", Data: "GOSSIP"},
		{Name: "node.json", Data: nodeJSON(testCluster)},
		{Name: "ssconf_master_node", Data: "node1\n"},
	}}
	resp := n.mustServe(t, req)

	for _, f := range req.Files {
		rel := filepath.Join(StateDir, f.Name)
		want, _ := StateFileMode(f.Name)
		if got := n.read(t, rel); got != f.Data {
			t.Errorf("%s: got content %q, want %q", rel, got, f.Data)
		}
		if got := n.mode(t, rel); got != want {
			t.Errorf("%s: got mode %#o, want %#o", rel, got, want)
		}
		if !slices.Contains(resp.Changed, rel) {
			t.Errorf("changed %q: missing %s", resp.Changed, rel)
		}
	}

	// The same request again is a no-op.
	if resp := n.mustServe(t, req); len(resp.Changed) != 0 {
		t.Errorf("second run: got changed %q, want none", resp.Changed)
	}
}

func TestServeUpdate_BacksUpKeyMaterialOnly(t *testing.T) {
	n := newTestNode(t)
	n.write(t, StateDir+"/ca-key.pem", "OLD", 0o600)
	n.write(t, StateDir+"/ssconf_node_list", "old", 0o644)
	n.mustServe(t, &Request{Cluster: testCluster, Files: []File{
		{Name: "ca-key.pem", Data: "NEW"},
		{Name: "ssconf_node_list", Data: "new"},
	}})

	baks, _ := filepath.Glob(n.path(StateDir + "/*.bak-*"))
	if len(baks) != 1 || !strings.Contains(baks[0], "ca-key.pem.bak-") {
		t.Fatalf("got backups %q, want one of ca-key.pem", baks)
	}
	if got, _ := os.ReadFile(baks[0]); string(got) != "OLD" {
		t.Errorf("backup: got %q, want %q", got, "OLD")
	}
}

func TestServeUpdate_FixesModeOfSameContent(t *testing.T) {
	n := newTestNode(t)
	n.write(t, StateDir+"/gossip.key", "K", 0o644)
	resp := n.mustServe(t, &Request{Cluster: testCluster,
		Files: []File{{Name: "gossip.key", Data: "K"}}})
	if got := n.mode(t, StateDir+"/gossip.key"); got != 0o600 {
		t.Errorf("got mode %#o, want 0600", got)
	}
	if len(resp.Changed) != 1 {
		t.Errorf("got changed %q, want the key file", resp.Changed)
	}
}

func TestServeUpdate_RemovesFilesAndTheirBackups(t *testing.T) {
	n := newTestNode(t)
	n.write(t, StateDir+"/ca-key.pem", "K", 0o600)
	n.write(t, StateDir+"/ca-key.pem.bak-20200101T000000.000000000", "K0", 0o600)
	n.write(t, StateDir+"/ca.pem", "C", 0o644)
	resp := n.mustServe(t, &Request{Cluster: testCluster,
		RemoveFiles: []string{"ca-key.pem", "rapi.pem"}})

	if matches, _ := filepath.Glob(n.path(StateDir + "/ca-key*")); len(matches) != 0 {
		t.Errorf("got %q left, want no CA key or backup", matches)
	}
	if !n.exists(StateDir + "/ca.pem") {
		t.Errorf("ca.pem removed, want it kept")
	}
	if len(resp.Changed) != 2 {
		t.Errorf("got changed %q, want the key and its backup", resp.Changed)
	}
}

func TestServeUpdate_SetsAndRemovesPubKeys(t *testing.T) {
	n := newTestNode(t)
	keyA, lineA := newTestKey(t)
	_, lineB := newTestKey(t)
	n.mustServe(t, &Request{Cluster: testCluster, PubKeys: &PubKeysOp{
		Entries: []KeyEntry{{UUID: uuidB, Key: lineB}, {UUID: uuidA, Key: lineA}},
	}})

	rel := StateDir + "/ganeti_pub_keys"
	entries, err := ReadPubKeys(n.path(rel))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 || KeysFor(entries, uuidA) == nil ||
		!bytes.Equal(KeysFor(entries, uuidA)[0].Marshal(), keyA.Marshal()) {
		t.Errorf("got entries %v, want A and B", entries)
	}
	if got := n.mode(t, rel); got != 0o600 {
		t.Errorf("got mode %#o, want 0600", got)
	}

	n.mustServe(t, &Request{Cluster: testCluster,
		PubKeys: &PubKeysOp{Remove: true}})
	if n.exists(rel) {
		t.Errorf("%s still exists after remove", rel)
	}
}

func TestServeUpdate_SetsManagedKeysKeepingAdminLines(t *testing.T) {
	n := newTestNode(t)
	authFile := "/root/.ssh/authorized_keys"
	n.write(t, authFile, adminLine, 0o600) // no final newline
	keyA, lineA := newTestKey(t)
	resp := n.mustServe(t, &Request{Cluster: testCluster,
		AuthorizedKeys: &AuthKeysOp{File: authFile,
			Keys: []KeyEntry{{UUID: uuidA, Key: lineA}}}})

	content := n.read(t, authFile)
	if !strings.HasPrefix(content, adminLine+"\n") {
		t.Errorf("got %q, want the admin line first and intact", content)
	}
	managed := ManagedKeys([]byte(content))
	if len(managed) != 1 || managed[0].UUID != uuidA ||
		!bytes.Equal(managed[0].Key.Marshal(), keyA.Marshal()) {
		t.Errorf("got managed keys %v, want only node A's", managed)
	}
	if !slices.Equal(resp.Changed, []string{authFile}) {
		t.Errorf("got changed %q, want %q", resp.Changed, authFile)
	}
}

func TestServeUpdate_ResetKeepsAdminLines(t *testing.T) {
	n := newTestNode(t)
	authFile := "/root/.ssh/authorized_keys"
	keyA, _ := newTestKey(t)
	content, _, err := SetManagedKeys([]byte(adminLine+"\n"),
		[]ManagedKey{{UUID: uuidA, Key: keyA}})
	if err != nil {
		t.Fatal(err)
	}
	n.write(t, authFile, string(content), 0o600)
	n.write(t, StateDir+"/ganeti_pub_keys", "x", 0o600)
	n.mustServe(t, &Request{Cluster: testCluster, Reset: true})

	if got := n.read(t, authFile); got != adminLine+"\n" {
		t.Errorf("got %q, want only the admin line", got)
	}
	if n.exists(StateDir + "/ganeti_pub_keys") {
		t.Errorf("ganeti_pub_keys kept, want it removed")
	}
}

func TestServeUpdate_ResetThenSetGivesNewKeysOnly(t *testing.T) {
	n := newTestNode(t)
	authFile := "/srv/keys/authorized_keys"
	keyA, _ := newTestKey(t)
	keyB, lineB := newTestKey(t)
	content, _, _ := SetManagedKeys(nil, []ManagedKey{{UUID: uuidA, Key: keyA}})
	n.write(t, authFile, string(content), 0o600)
	n.mustServe(t, &Request{Cluster: testCluster, Reset: true,
		AuthorizedKeys: &AuthKeysOp{File: authFile,
			Keys: []KeyEntry{{UUID: uuidB, Key: lineB}}}})

	managed := ManagedKeys([]byte(n.read(t, authFile)))
	if len(managed) != 1 || !bytes.Equal(managed[0].Key.Marshal(), keyB.Marshal()) {
		t.Errorf("got managed keys %v, want only node B's", managed)
	}
}

func TestServeUpdate_GeneratesSSHKey(t *testing.T) {
	n := newTestNode(t)
	req := &Request{Cluster: testCluster,
		GenerateSSHKey: &KeyGen{Type: "ed25519"}}
	first := n.mustServe(t, req)
	second := n.mustServe(t, req)

	signer, err := LoadOwnKey(n.path(OwnKeyDir))
	if err != nil {
		t.Fatal(err)
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(second.SSHPublicKey))
	if err != nil {
		t.Fatalf("response key %q: %v", second.SSHPublicKey, err)
	}
	if !bytes.Equal(pub.Marshal(), signer.PublicKey().Marshal()) {
		t.Errorf("response key is not the installed key")
	}
	if first.SSHPublicKey == second.SSHPublicKey {
		t.Errorf("second generation returned the same key")
	}
	baks, _ := filepath.Glob(n.path(OwnKeyDir + "/id_ed25519.bak-*"))
	if len(baks) != 1 {
		t.Errorf("got backups %q, want the first private key", baks)
	}
}

func TestServeUpdate_TLSKeysAndCerts(t *testing.T) {
	n := newTestNode(t)
	gen := n.mustServe(t, &Request{Cluster: testCluster,
		GenerateTLS: &TLSGen{NodeName: "node1"}})
	for _, name := range []string{"server.key.pending", "client.key.pending"} {
		if got := n.mode(t, StateDir+"/"+name); got != 0o600 {
			t.Errorf("%s: got mode %#o, want 0600", name, got)
		}
	}
	serverKey := n.read(t, StateDir+"/server.key.pending")
	n.write(t, StateDir+"/server.pem", "OLD", 0o600)

	certs := &Certs{Server: signTestCSR(t, gen.ServerCSR),
		Client: signTestCSR(t, gen.ClientCSR)}
	n.mustServe(t, &Request{Cluster: testCluster, InstallCerts: certs})

	if got := n.read(t, StateDir+"/server.pem"); got != certs.Server+serverKey {
		t.Errorf("server.pem: got %q, want certificate then key", got)
	}
	if got := n.mode(t, StateDir+"/client.pem"); got != 0o600 {
		t.Errorf("client.pem: got mode %#o, want 0600", got)
	}
	rep := n.mustServe(t, &Request{Cluster: testCluster, Report: true})
	if rep.Report.ClientCert != certs.Client {
		t.Errorf("report: got client cert %q, want only %q",
			rep.Report.ClientCert, certs.Client)
	}
	if n.exists(StateDir+"/server.key.pending") ||
		n.exists(StateDir+"/client.key.pending") {
		t.Errorf("pending keys left after install")
	}
	if baks, _ := filepath.Glob(n.path(StateDir + "/server.pem.bak-*")); len(baks) != 1 {
		t.Errorf("got backups %q, want the old server.pem", baks)
	}
}

func TestServeUpdate_Activate(t *testing.T) {
	n := newTestNode(t)
	n.mustServe(t, &Request{Cluster: testCluster, Activate: true})
	if n.activations != 1 {
		t.Errorf("got %d activations, want 1", n.activations)
	}
	n.env.Activate = func() error { return errors.New("daemon down") }
	if _, err := n.serve(t, &Request{Cluster: testCluster, Activate: true}); err == nil {
		t.Errorf("got no error from a failing activation")
	}
}

func TestServeUpdate_Report(t *testing.T) {
	n := newTestNode(t)
	n.write(t, StateDir+"/ca.pem", "C", 0o644)
	n.write(t, StateDir+"/ssconf_master_node", "m", 0o640)
	n.mustServe(t, &Request{Cluster: testCluster,
		GenerateSSHKey: &KeyGen{Type: "ed25519"}})
	resp := n.mustServe(t, &Request{Cluster: testCluster, Report: true})

	if resp.Report == nil || resp.Report.PublicKey == "" ||
		resp.Report.PublicKey != resp.SSHPublicKey {
		t.Fatalf("got report %+v, want one with the own key", resp.Report)
	}
	got := map[string]FileStatus{}
	for _, f := range resp.Report.Files {
		got[f.Path] = f
	}
	want := []FileStatus{
		{Path: "/var/lib/ganeti/ca.pem", Exists: true, Mode: "0644"},
		{Path: "/var/lib/ganeti/ssconf_master_node", Exists: true, Mode: "0640"},
		{Path: "/var/lib/ganeti/ca-key.pem"},
		{Path: "/root/.ssh/id_ed25519", Exists: true, Mode: "0600"},
		{Path: "/root/.ssh/id_ed25519.pub", Exists: true, Mode: "0644"},
	}
	for _, w := range want {
		if got[w.Path] != w {
			t.Errorf("got %+v, want %+v", got[w.Path], w)
		}
	}
	if _, ok := got["/var/lib/ganeti/.ssh-update.lock"]; ok {
		t.Errorf("report lists the lock file")
	}
}

func TestServeUpdate_ReportWithoutOwnKey(t *testing.T) {
	n := newTestNode(t)
	resp := n.mustServe(t, &Request{Cluster: testCluster, Report: true})
	if resp.Report.PublicKey != "" || resp.Report.PublicKeyError == "" {
		t.Errorf("got key %q, error %q; want no key and a reason",
			resp.Report.PublicKey, resp.Report.PublicKeyError)
	}
}

func TestServeUpdate_AcceptsOwnCluster(t *testing.T) {
	n := newTestNode(t)
	n.write(t, StateDir+"/node.json", nodeJSON(testCluster), 0o644)
	if _, err := n.serve(t, &Request{Cluster: testCluster, Report: true}); err != nil {
		t.Errorf("got %v, want the node's own cluster accepted", err)
	}
}

// populatedNode is a joined node with files that a wrongly accepted
// request would change.
func populatedNode(t testing.TB) *testNode {
	t.Helper()
	n := newTestNode(t)
	keyA, lineA := newTestKey(t)
	auth, _, err := SetManagedKeys([]byte(adminLine+"\n"),
		[]ManagedKey{{UUID: uuidA, Key: keyA}})
	if err != nil {
		t.Fatal(err)
	}
	n.write(t, "/root/.ssh/authorized_keys", string(auth), 0o600)
	n.write(t, StateDir+"/node.json", nodeJSON(testCluster), 0o644)
	n.write(t, StateDir+"/ganeti_pub_keys", uuidA+" "+lineA+"\n", 0o600)
	n.write(t, StateDir+"/ca.pem", "CA", 0o644)
	n.write(t, StateDir+"/ca-key.pem", "CAKEY", 0o600)
	n.write(t, StateDir+"/.ssh-update.lock", "", 0o600)
	key, _, err := testNewCSR("node1")
	if err != nil {
		t.Fatal(err)
	}
	n.write(t, StateDir+"/server.key.pending", string(key), 0o600)
	return n
}

func mustJSON(t testing.TB, v any) string {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func TestServeUpdate_RejectsBadInputChangingNothing(t *testing.T) {
	_, line := newTestKey(t)
	_, otherCSR, _ := testNewCSR("node1")
	otherCert := signTestCSR(t, string(otherCSR))
	// rq renders a request that resets the node (so that any partial
	// application would show) plus the fields set by mod.
	rq := func(mod func(r *Request)) string {
		r := &Request{Cluster: testCluster, Reset: true,
			Files: []File{{Name: "ca.pem", Data: "NEW"}}}
		mod(r)
		return mustJSON(t, r)
	}
	auth := func(file, uuid, key string) func(r *Request) {
		return func(r *Request) {
			r.AuthorizedKeys = &AuthKeysOp{File: file,
				Keys: []KeyEntry{{UUID: uuid, Key: key}}}
		}
	}
	keysFile := "/root/.ssh/authorized_keys"
	huge := `{"cluster":"` + testCluster + `","files":[{"name":"ca.pem","data":"` +
		strings.Repeat("A", MaxRequestSize) + `"}]}`
	tests := []struct {
		name string
		in   string
		want error
	}{
		{"empty input", "", ErrInvalidRequest},
		{"null document", "null", ErrInvalidRequest},
		{"truncated JSON", rq(func(*Request) {})[:40], ErrInvalidRequest},
		{"unknown field", `{"cluster":"` + testCluster + `","reset":true,"rm":1}`,
			ErrInvalidRequest},
		{"trailing garbage", rq(func(*Request) {}) + "x", ErrInvalidRequest},
		{"second document", rq(func(*Request) {}) + "{}", ErrInvalidRequest},
		{"huge input", huge, ErrRequestTooLarge},
		{"missing cluster", `{"reset":true}`, ErrInvalidRequest},
		{"bad cluster name", rq(func(r *Request) { r.Cluster = "a b" }),
			ErrInvalidRequest},
		{"wrong cluster", rq(func(r *Request) { r.Cluster = "other" }),
			ErrWrongCluster},
		{"unparsable key", rq(auth(keysFile, uuidA, "ssh-ed25519 AAAA")),
			ErrInvalidRequest},
		{"key with options", rq(auth(keysFile, uuidA, `command="sh" `+line)),
			ErrInvalidRequest},
		{"two key lines", rq(auth(keysFile, uuidA, line+"\n"+line)),
			ErrInvalidRequest},
		{"uppercase uuid", rq(auth(keysFile, strings.ToUpper(uuidA), line)),
			ErrInvalidRequest},
		{"short uuid", rq(auth(keysFile, "0a0a0a0a", line)), ErrInvalidRequest},
		{"traversal in authorized_keys file",
			rq(auth("/root/../../etc/shadow", uuidA, line)), ErrInvalidRequest},
		{"relative authorized_keys file",
			rq(auth("root/.ssh/authorized_keys", uuidA, line)), ErrInvalidRequest},
		{"root as authorized_keys file", rq(auth("/", uuidA, line)),
			ErrInvalidRequest},
		{"bad pub key uuid", rq(func(r *Request) {
			r.PubKeys = &PubKeysOp{Entries: []KeyEntry{{UUID: "x", Key: line}}}
		}), ErrInvalidRequest},
		{"pub keys remove with entries", rq(func(r *Request) {
			r.PubKeys = &PubKeysOp{Remove: true,
				Entries: []KeyEntry{{UUID: uuidA, Key: line}}}
		}), ErrInvalidRequest},
		{"disallowed file name", rq(func(r *Request) {
			r.Files = append(r.Files, File{Name: "../../etc/passwd", Data: "x"})
		}), ErrInvalidRequest},
		{"server.pem as file", rq(func(r *Request) {
			r.Files = append(r.Files, File{Name: "server.pem", Data: "x"})
		}), ErrInvalidRequest},
		{"duplicate file", rq(func(r *Request) {
			r.Files = append(r.Files, File{Name: "ca.pem", Data: "x"})
		}), ErrInvalidRequest},
		{"node.json of another cluster", rq(func(r *Request) {
			r.Files = append(r.Files, File{Name: "node.json",
				Data: nodeJSON("other")})
		}), ErrWrongCluster},
		{"disallowed removal", rq(func(r *Request) {
			r.RemoveFiles = []string{"ca.pem"}
		}), ErrInvalidRequest},
		{"bad key type", rq(func(r *Request) {
			r.GenerateSSHKey = &KeyGen{Type: "dsa"}
		}), ErrInvalidRequest},
		{"bad key size", rq(func(r *Request) {
			r.GenerateSSHKey = &KeyGen{Type: "rsa", Bits: 1024}
		}), ErrBadKeySize},
		{"bad node name", rq(func(r *Request) {
			r.GenerateTLS = &TLSGen{NodeName: "-x"}
		}), ErrInvalidRequest},
		{"cert not PEM", rq(func(r *Request) {
			r.InstallCerts = &Certs{Server: "junk"}
		}), ErrInvalidRequest},
		{"key PEM as cert", rq(func(r *Request) {
			r.InstallCerts = &Certs{Server: n0KeyPEM(t)}
		}), ErrInvalidRequest},
		{"cert for another key", rq(func(r *Request) {
			r.InstallCerts = &Certs{Server: otherCert}
		}), ErrCertKeyMismatch},
		{"cert without pending key", rq(func(r *Request) {
			r.InstallCerts = &Certs{Client: otherCert}
		}), ErrNoPendingKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := populatedNode(t)
			before := snapshot(t, n.root)
			_, err := n.serve(t, tt.in)
			if !errors.Is(err, tt.want) {
				t.Errorf("got error %v, want %v", err, tt.want)
			}
			assertSameTree(t, before, snapshot(t, n.root))
		})
	}
}

// n0KeyPEM is a private key PEM, which is no certificate.
func n0KeyPEM(t testing.TB) string {
	t.Helper()
	key, _, err := testNewCSR("x")
	if err != nil {
		t.Fatal(err)
	}
	return string(key)
}

func TestServeUpdate_RefusesOpsNotWiredUp(t *testing.T) {
	n := populatedNode(t)
	n.env.NewCSR, n.env.Activate = nil, nil
	for _, req := range []*Request{
		{Cluster: testCluster, Reset: true, Activate: true},
		{Cluster: testCluster, Reset: true, GenerateTLS: &TLSGen{NodeName: "n"}},
	} {
		before := snapshot(t, n.root)
		if _, err := n.serve(t, req); !errors.Is(err, ErrUnsupportedOp) {
			t.Errorf("got %v, want ErrUnsupportedOp", err)
		}
		assertSameTree(t, before, snapshot(t, n.root))
	}
}

func TestServeUpdate_RefusesRelativeRoot(t *testing.T) {
	n := newTestNode(t)
	n.env.Root = "relative"
	if _, err := n.serve(t, &Request{Cluster: testCluster}); err == nil {
		t.Errorf("got no error for a relative root")
	}
}

func FuzzServeUpdate(f *testing.F) {
	f.Add([]byte(`{"cluster":"c1","reset":true}`))
	f.Add([]byte(`{"cluster":"c1","authorized_keys":{"file":"/a","keys":` +
		`[{"uuid":"` + uuidA + `","key":"` + strings.TrimSpace(adminLine[16:]) +
		`"}]}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := decodeRequest(bytes.NewReader(data))
		if err != nil {
			if !errors.Is(err, ErrInvalidRequest) &&
				!errors.Is(err, ErrRequestTooLarge) {
				t.Fatalf("decode error %v wraps no sentinel", err)
			}
			return
		}
		if err := req.Validate(); err != nil && !errors.Is(err, ErrInvalidRequest) {
			t.Fatalf("validation error %v does not wrap ErrInvalidRequest", err)
		}
	})
}

func TestServeUpdate_ConcurrentRequestsAllApply(t *testing.T) {
	n := newTestNode(t)
	n.env.Now = time.Now // the test clock is not safe for concurrent use
	const workers = 8
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for i := range workers {
		req := mustJSON(t, &Request{Cluster: testCluster, Files: []File{
			{Name: fmt.Sprintf("ssconf_key%d", i), Data: "v"}}})
		wg.Go(func() {
			var out bytes.Buffer
			errs <- ServeUpdate(n.env, strings.NewReader(req), &out)
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("ServeUpdate: %v", err)
		}
	}
	for i := range workers {
		if rel := fmt.Sprintf("%s/ssconf_key%d", StateDir, i); !n.exists(rel) {
			t.Errorf("%s missing", rel)
		}
	}
}

func TestRequest_ValidateNil(t *testing.T) {
	var r *Request
	if err := r.Validate(); !errors.Is(err, ErrInvalidRequest) {
		t.Errorf("got %v, want ErrInvalidRequest", err)
	}
}

func TestServeUpdate_ReadKnownHosts(t *testing.T) {
	n := newTestNode(t)
	n.write(t, StateDir+"/node.json", nodeJSON(testCluster), 0o644)
	req := &Request{Cluster: testCluster, ReadKnownHosts: true}
	if resp := n.mustServe(t, req); resp.KnownHosts != "" || len(resp.Changed) != 0 {
		t.Errorf("without known_hosts: got %q, changed %v; want nothing", resp.KnownHosts, resp.Changed)
	}
	line := KnownHostsLine("127.0.0.1:2222", seededKey(t, 1))
	n.write(t, StateDir+"/known_hosts", line, 0o644)
	if resp := n.mustServe(t, req); resp.KnownHosts != line || len(resp.Changed) != 0 {
		t.Errorf("got %q, changed %v; want %q and no change", resp.KnownHosts, resp.Changed, line)
	}
}
