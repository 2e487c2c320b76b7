package sshdist

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

func TestClientConfig_Validate(t *testing.T) {
	valid := DefaultClientConfig()
	valid.KeyDir, valid.KnownHostsPath = "/k", "/kh"
	valid.RemoteCommand = "ganeti-node ssh-update"
	tests := []struct {
		name  string
		mod   func(*ClientConfig)
		field string // named in the error; "" for no error
	}{
		{"valid", func(*ClientConfig) {}, ""},
		{"zero values take defaults", func(c *ClientConfig) {
			c.User, c.ConnectTimeout, c.OpTimeout, c.Concurrency = "", 0, 0, 0
		}, ""},
		{"no key dir", func(c *ClientConfig) { c.KeyDir = "" }, "KeyDir"},
		{"no known hosts", func(c *ClientConfig) { c.KnownHostsPath = "" },
			"KnownHostsPath"},
		{"no command", func(c *ClientConfig) { c.RemoteCommand = " " },
			"RemoteCommand"},
		{"negative connect timeout", func(c *ClientConfig) {
			c.ConnectTimeout = -1
		}, "ConnectTimeout"},
		{"negative op timeout", func(c *ClientConfig) { c.OpTimeout = -1 },
			"OpTimeout"},
		{"negative concurrency", func(c *ClientConfig) { c.Concurrency = -1 },
			"Concurrency"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := valid
			tt.mod(&cfg)
			err := cfg.Validate()
			switch {
			case tt.field == "" && err != nil:
				t.Errorf("got %v, want no error", err)
			case tt.field != "" && (err == nil ||
				!strings.Contains(err.Error(), "ClientConfig."+tt.field)):
				t.Errorf("got %v, want an error naming %s", err, tt.field)
			}
		})
	}
}

func TestNewClient_RequiresKnownHostsFile(t *testing.T) {
	m := newTestMaster(t)
	cfg := DefaultClientConfig()
	cfg.KeyDir, cfg.RemoteCommand = m.keyDir, "true"
	cfg.KnownHostsPath = filepath.Join(t.TempDir(), "missing")
	if _, err := NewClient(cfg); err == nil {
		t.Errorf("got a client without a known_hosts file, want an error")
	}
}

func TestHostKeyAlgorithms_FollowKnownHosts(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaPub, err := ssh.NewPublicKey(&rsaKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	edPub, _ := newTestKey(t)
	path := filepath.Join(t.TempDir(), "known_hosts")
	for _, k := range []struct {
		addr string
		key  ssh.PublicKey
	}{{"127.0.0.1:2201", rsaPub}, {"127.0.0.2:2201", edPub}} {
		if err := AddKnownHost(path, k.addr, k.key); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		addr string
		want []string
	}{
		{"127.0.0.1:2201", []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256}},
		{"127.0.0.2:2201", []string{ssh.KeyAlgoED25519}},
		{"127.0.0.3:2201", preferredHostKeyAlgos},
	}
	for _, tt := range tests {
		if got := HostKeyAlgorithms(path, tt.addr); !slices.Equal(got, tt.want) {
			t.Errorf("HostKeyAlgorithms(%s): got %q, want %q", tt.addr, got, tt.want)
		}
	}
}

func TestSession_UpdateRoundTrip(t *testing.T) {
	m := newTestMaster(t)
	h := newHosts(t, m, 1)[0]
	s := session(t, m.client(t, nil))
	ctx := context.Background()
	_, peerLine := newTestKey(t)

	resp, err := s.Update(ctx, target(h), &Request{
		Cluster:        testCluster,
		GenerateSSHKey: &KeyGen{Type: "ed25519"},
		GenerateTLS:    &TLSGen{NodeName: h.Name},
		Files:          []File{{Name: "ca.pem", Data: "CA"}},
		PubKeys: &PubKeysOp{Entries: []KeyEntry{
			{UUID: uuidB, Key: peerLine}}},
		AuthorizedKeys: &AuthKeysOp{File: DefaultAuthorizedKeysFile,
			Keys: []KeyEntry{{UUID: uuidB, Key: peerLine}}},
	})
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	if got, _ := os.ReadFile(h.path(StateDir + "/ca.pem")); string(got) != "CA" {
		t.Errorf("remote ca.pem: got %q, want %q", got, "CA")
	}
	signer, err := LoadOwnKey(h.path(OwnKeyDir))
	if err != nil {
		t.Fatalf("remote own key: %v", err)
	}
	own := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey())))
	if !strings.HasPrefix(resp.SSHPublicKey, own) {
		t.Errorf("got public key %q, want the host's %q", resp.SSHPublicKey, own)
	}
	auth, _ := os.ReadFile(h.path(DefaultAuthorizedKeysFile))
	if !strings.HasPrefix(string(auth), m.pubLine+"\n") || len(ManagedKeys(auth)) != 1 {
		t.Errorf("remote authorized_keys %q: want the admin line and one managed key", auth)
	}

	// The certificates go back over the same connection.
	certs := &Certs{Server: signTestCSR(t, resp.ServerCSR),
		Client: signTestCSR(t, resp.ClientCSR)}
	if _, err := s.Update(ctx, target(h),
		&Request{Cluster: testCluster, InstallCerts: certs}); err != nil {
		t.Fatalf("installing certificates: %v", err)
	}
	if _, err := os.Stat(h.path(StateDir + "/client.pem")); err != nil {
		t.Errorf("remote client.pem: %v", err)
	}
	if got := s.dials.Load(); got != 1 {
		t.Errorf("got %d dials, want 1", got)
	}
}

func TestSession_UnknownHostKeyRefusedThenRecorded(t *testing.T) {
	m := newTestMaster(t)
	h := newSSHDHost(t, "node1")
	h.Authorize(m.pubLine)
	s := session(t, m.client(t, nil))
	req := &Request{Cluster: testCluster, Report: true}

	_, err := s.Update(context.Background(), target(h), req)
	var hkErr *HostKeyError
	if !errors.As(err, &hkErr) {
		t.Fatalf("got %v, want a *HostKeyError", err)
	}
	if !hkErr.Unknown() || hkErr.Got != ssh.FingerprintSHA256(h.HostKey()) {
		t.Errorf("got %+v, want unknown host offering %s", hkErr,
			ssh.FingerprintSHA256(h.HostKey()))
	}
	if _, err := os.Stat(h.path(StateDir)); err == nil {
		t.Errorf("helper ran on a host with an unknown key")
	}

	if _, err := s.UpdateRecordingHostKey(context.Background(), target(h), req); err != nil {
		t.Fatalf("UpdateRecordingHostKey: %v", err)
	}
	known, _ := os.ReadFile(m.knownHosts)
	if want := KnownHostsLine(h.Addr, h.HostKey()); string(known) != want {
		t.Errorf("known_hosts: got %q, want %q", known, want)
	}
	fresh := session(t, m.client(t, nil))
	if _, err := fresh.Update(context.Background(), target(h), req); err != nil {
		t.Errorf("strict Update after recording: %v", err)
	}
}

func TestSession_ChangedHostKeyRefusedByBothPolicies(t *testing.T) {
	m := newTestMaster(t)
	h := newHosts(t, m, 1)[0]
	oldKey := ssh.FingerprintSHA256(h.HostKey())
	h.RegenerateHostKey()
	before, _ := os.ReadFile(m.knownHosts)
	req := &Request{Cluster: testCluster, Report: true}

	for name, update := range map[string]func(*Session) error{
		"strict": func(s *Session) error {
			_, err := s.Update(context.Background(), target(h), req)
			return err
		},
		"recording": func(s *Session) error {
			_, err := s.UpdateRecordingHostKey(context.Background(), target(h), req)
			return err
		},
	} {
		err := update(session(t, m.client(t, nil)))
		var hkErr *HostKeyError
		if !errors.As(err, &hkErr) {
			t.Errorf("%s: got %v, want a *HostKeyError", name, err)
			continue
		}
		if !slices.Equal(hkErr.Want, []string{oldKey}) ||
			hkErr.Got != ssh.FingerprintSHA256(h.HostKey()) {
			t.Errorf("%s: got want=%q got=%s, want want=[%s] got=%s", name,
				hkErr.Want, hkErr.Got, oldKey, ssh.FingerprintSHA256(h.HostKey()))
		}
	}
	if after, _ := os.ReadFile(m.knownHosts); !bytes.Equal(after, before) {
		t.Errorf("known_hosts changed: got %q, want %q", after, before)
	}
}

func TestSession_UnreachableAddress(t *testing.T) {
	m := newTestMaster(t)
	addr := net.JoinHostPort("127.0.0.1", freePort(t, "127.0.0.1"))
	s := session(t, m.client(t, nil))
	_, err := s.Update(context.Background(), Target{Name: "gone", Addr: addr},
		&Request{Cluster: testCluster})
	var unErr *UnreachableError
	if !errors.As(err, &unErr) || unErr.Node != "gone" || unErr.Addr != addr {
		t.Errorf("got %v, want *UnreachableError for gone at %s", err, addr)
	}
}

func TestSession_KeyNotAuthorizedFailsAuth(t *testing.T) {
	m := newTestMaster(t)
	h := newHosts(t, m, 1)[0]
	_, other := newTestKey(t)
	h.Authorize(other)
	s := session(t, m.client(t, nil))
	_, err := s.Update(context.Background(), target(h), &Request{Cluster: testCluster})
	var unErr *UnreachableError
	if !errors.Is(err, ErrAuthRefused) || errors.As(err, &unErr) {
		t.Errorf("got %v, want ErrAuthRefused", err)
	}
}

func TestSession_RemoteErrorCarriesMessage(t *testing.T) {
	m := newTestMaster(t)
	h := newHosts(t, m, 1)[0]
	if err := os.MkdirAll(h.path(StateDir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(h.path(StateDir+"/node.json"),
		[]byte(`{"cluster":"other"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	s := session(t, m.client(t, nil))
	_, err := s.Update(context.Background(), target(h),
		&Request{Cluster: testCluster, Reset: true})
	var remErr *RemoteError
	if !errors.As(err, &remErr) || remErr.Node != h.Name {
		t.Fatalf("got %v, want *RemoteError from %s", err, h.Name)
	}
	if !strings.Contains(remErr.Msg, ErrWrongCluster.Error()) {
		t.Errorf("got message %q, want the helper's wrong-cluster error", remErr.Msg)
	}
}

func TestSession_RemoteCommandExitStatus(t *testing.T) {
	m := newTestMaster(t)
	h := newHosts(t, m, 1)[0]
	c := m.client(t, func(c *ClientConfig) { c.RemoteCommand = "echo broken >&2; exit 3" })
	_, err := session(t, c).Update(context.Background(), target(h),
		&Request{Cluster: testCluster})
	var remErr *RemoteError
	if !errors.As(err, &remErr) || !strings.Contains(remErr.Msg, "broken") {
		t.Errorf("got %v, want *RemoteError with the helper's stderr", err)
	}
}

func TestSession_OpTimeoutEndsAHungHelper(t *testing.T) {
	m := newTestMaster(t)
	h := newHosts(t, m, 1)[0]
	c := m.client(t, func(c *ClientConfig) {
		c.RemoteCommand, c.OpTimeout = "sleep 5", 500*time.Millisecond
	})
	start := time.Now()
	_, err := session(t, c).Update(context.Background(), target(h),
		&Request{Cluster: testCluster})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("got %v, want context.DeadlineExceeded", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("took %v, want about the 500ms op timeout", took)
	}
}

func TestSession_InvalidRequestNeverDials(t *testing.T) {
	m := newTestMaster(t)
	s := session(t, m.client(t, nil))
	_, err := s.Update(context.Background(), Target{Name: "x", Addr: "127.0.0.1:1"},
		&Request{Cluster: "bad name"})
	if !errors.Is(err, ErrInvalidRequest) || s.dials.Load() != 0 {
		t.Errorf("got %v after %d dials, want ErrInvalidRequest and none",
			err, s.dials.Load())
	}
}

func TestSession_ReusesOneConnectionPerHost(t *testing.T) {
	m := newTestMaster(t)
	hosts := newHosts(t, m, 2)
	s := m.client(t, nil).NewSession()
	req := &Request{Cluster: testCluster, Report: true}
	targets := []Target{target(hosts[0]), target(hosts[1])}
	for range 3 {
		for _, r := range s.FanOut(context.Background(), "reuse", targets,
			func(Target) *Request { return req }) {
			if r.Err != nil {
				t.Fatalf("%s: %v", r.Target.Name, r.Err)
			}
		}
	}
	if got := s.dials.Load(); got != 2 {
		t.Errorf("got %d dials for 3 rounds to 2 hosts, want 2", got)
	}
	s.Close()
	if _, err := s.Update(context.Background(), targets[0], req); !errors.Is(err, ErrSessionClosed) {
		t.Errorf("after Close: got %v, want ErrSessionClosed", err)
	}
}

func TestSession_RedialsWhenHostDroppedConnection(t *testing.T) {
	m := newTestMaster(t)
	h := newHosts(t, m, 1)[0]
	s := session(t, m.client(t, nil))
	req := &Request{Cluster: testCluster}
	if _, err := s.Update(context.Background(), target(h), req); err != nil {
		t.Fatal(err)
	}
	s.pool.mu.Lock()
	s.pool.conns[h.Addr].client.Conn.Close() // as if the host had gone away
	s.pool.mu.Unlock()
	if _, err := s.Update(context.Background(), target(h), req); err != nil {
		t.Errorf("Update after a dropped connection: %v", err)
	}
	if got := s.dials.Load(); got != 2 {
		t.Errorf("got %d dials, want 2", got)
	}
}

// recordingHandler keeps the slog records it is given.
type recordingHandler struct {
	mu      sync.Mutex
	records []slog.Record
}

func (h *recordingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *recordingHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *recordingHandler) WithGroup(string) slog.Handler            { return h }

func (h *recordingHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.records = append(h.records, r.Clone())
	return nil
}

// find returns the attributes of the first record with message msg.
func (h *recordingHandler) find(msg string) map[string]slog.Value {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range h.records {
		if r.Message != msg {
			continue
		}
		attrs := map[string]slog.Value{}
		r.Attrs(func(a slog.Attr) bool {
			attrs[a.Key] = a.Value
			return true
		})
		return attrs
	}
	return nil
}

func TestSession_FanOutResultsInTargetOrder(t *testing.T) {
	m := newTestMaster(t)
	hosts := newHosts(t, m, 5)
	logs := &recordingHandler{}
	c := m.client(t, func(c *ClientConfig) { c.Log = slog.New(logs) })
	var targets []Target
	for _, h := range hosts {
		targets = append(targets, target(h))
	}
	gone := Target{Name: "gone", Addr: net.JoinHostPort("127.0.0.1",
		freePort(t, "127.0.0.1"))}
	targets = append(targets, gone)

	results := session(t, c).FanOut(context.Background(), "ssconf", targets,
		func(t Target) *Request {
			if t.Name == "node3" {
				return nil
			}
			return &Request{Cluster: testCluster, Files: []File{
				{Name: "ssconf_node_name", Data: t.Name}}}
		})

	if len(results) != len(targets) {
		t.Fatalf("got %d results, want %d", len(results), len(targets))
	}
	for i, r := range results {
		if r.Target != targets[i] {
			t.Errorf("result %d: got target %v, want %v", i, r.Target, targets[i])
		}
	}
	for i, h := range hosts {
		got, err := os.ReadFile(h.path(StateDir + "/ssconf_node_name"))
		switch {
		case h.Name == "node3":
			if !results[i].Skipped || err == nil {
				t.Errorf("node3: got skipped=%v, file err %v; want skipped, no file",
					results[i].Skipped, err)
			}
		case results[i].Err != nil || string(got) != h.Name:
			t.Errorf("%s: got %q, %v; want its own name", h.Name, got, results[i].Err)
		}
	}
	var unErr *UnreachableError
	if !errors.As(results[5].Err, &unErr) {
		t.Errorf("gone: got %v, want *UnreachableError", results[5].Err)
	}

	assertSummary(t, logs, "ssconf", map[string]int64{
		"nodes": 5, "changed": 4, "failed": 0, "unreachable": 1})
}

// assertSummary checks the counts of the "ssh fan-out" log record.
func assertSummary(t testing.TB, logs *recordingHandler, op string,
	want map[string]int64) {
	t.Helper()
	sum := logs.find("ssh fan-out")
	if sum["op"].String() != op {
		t.Errorf("summary op: got %q, want %q", sum["op"], op)
	}
	for k, v := range want {
		if got := sum[k]; got.Kind() != slog.KindInt64 || got.Int64() != v {
			t.Errorf("summary %s: got %v, want %d", k, got, v)
		}
	}
	if sum["duration"].Kind() != slog.KindDuration {
		t.Errorf("summary duration: got %v, want a duration", sum["duration"])
	}
}

func TestScanHostKey_ReturnsKeyWithoutLoggingIn(t *testing.T) {
	m := newTestMaster(t)
	h := newSSHDHost(t, "node1")
	h.Authorize(m.pubLine)
	got, err := ScanHostKey(context.Background(), h.Addr, 5*time.Second,
		HostKeyAlgorithms(m.knownHosts, h.Addr)...)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Marshal(), h.HostKey().Marshal()) {
		t.Errorf("got %s, want %s", ssh.FingerprintSHA256(got),
			ssh.FingerprintSHA256(h.HostKey()))
	}
	if known, _ := os.ReadFile(m.knownHosts); len(known) != 0 {
		t.Errorf("scan wrote known_hosts: %q", known)
	}
}

// benchFanOut fans a Report request out to 5 real sshd hosts per
// iteration, with a fresh Session per iteration unless reuse is set.
func benchFanOut(b *testing.B, reuse bool) {
	m := newTestMaster(b)
	hosts := newHosts(b, m, 5)
	c := m.client(b, nil)
	var targets []Target
	for _, h := range hosts {
		targets = append(targets, target(h))
	}
	req := &Request{Cluster: testCluster, Report: true}
	build := func(Target) *Request { return req }
	s := session(b, c)
	for b.Loop() {
		if !reuse {
			s.Close()
			s = session(b, c)
		}
		for _, r := range s.FanOut(context.Background(), "bench", targets, build) {
			if r.Err != nil {
				b.Fatalf("%s: %v", r.Target.Name, r.Err)
			}
		}
	}
}

func BenchmarkFanOut_5(b *testing.B) { benchFanOut(b, false) }

// BenchmarkFanOut_5_ReusedSession shows what the later phases of an
// operation cost once the connections are open.
func BenchmarkFanOut_5_ReusedSession(b *testing.B) { benchFanOut(b, true) }
