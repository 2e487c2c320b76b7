package verify

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"ganeti-node/sshdist"
)

func newKey(t testing.TB) ssh.PublicKey {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func line(key ssh.PublicKey) string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key)))
}

// sshErrors are errors as sshdist's client returns them.
var sshErrors = map[string]error{
	"unreachable": fmt.Errorf("wrapped: %w", &sshdist.UnreachableError{
		Node: "n", Addr: "127.0.0.1:22", Err: errors.New("refused")}),
	"timeout": fmt.Errorf("sshdist: ssh-update on node: %w",
		context.DeadlineExceeded),
	"unknown host": fmt.Errorf("sshdist: connecting: %w",
		&sshdist.HostKeyError{Addr: "127.0.0.1:22", Got: "SHA256:x"}),
	"changed host": fmt.Errorf("sshdist: connecting: %w",
		&sshdist.HostKeyError{Addr: "127.0.0.1:22", Got: "SHA256:x",
			Want: []string{"SHA256:y"}}),
	"revoked host": fmt.Errorf("%w: revoked", sshdist.ErrHostKeyRevoked),
	"auth":         fmt.Errorf("%w: node %q", sshdist.ErrAuthRefused, "n"),
	"remote":       &sshdist.RemoteError{Node: "n", Msg: "wrong cluster"},
	"other":        errors.New("sshdist: loading the master's SSH key"),
}

func TestFailureOf_SortsByCause(t *testing.T) {
	want := map[string]FailureKind{
		"unreachable": Unreachable, "timeout": Unreachable,
		"unknown host": HostKey, "changed host": HostKey,
		"revoked host": HostKey, "auth": AuthRefused, "remote": Remote,
		"other": Other,
	}
	for name, err := range sshErrors {
		f := FailureOf(err)
		if f.Kind != want[name] || f.Message != err.Error() {
			t.Errorf("%s: got %+v, want kind %s with the error text",
				name, f, want[name])
		}
	}
}

func TestHostKeyOf_JudgesFromTheLogin(t *testing.T) {
	want := map[string]HostKeyStatus{
		"unreachable": HostKeyError, "timeout": HostKeyError,
		"unknown host": HostKeyUnknown, "changed host": HostKeyMismatch,
		"revoked host": HostKeyMismatch, "auth": HostKeyOK,
		"remote": HostKeyOK, "other": HostKeyError,
	}
	for name, err := range sshErrors {
		if got := HostKeyOf(err).Status; got != want[name] {
			t.Errorf("%s: got %s, want %s", name, got, want[name])
		}
	}
	if got := HostKeyOf(nil); got.Status != HostKeyOK {
		t.Errorf("success: got %+v, want ok", got)
	}
}

func TestAuthKeysOf_MarksManagedLines(t *testing.T) {
	admin, a, b := newKey(t), newKey(t), newKey(t)
	content := "# admin\n\n" + line(admin) + " root@laptop\n" +
		"garbage line\n" +
		`from="10.0.0.1" ` + line(a) + " ganeti-node:" + uuidOf(1) + "\n" +
		line(b) + " ganeti-node:\n" + line(admin) // no final newline
	got := AuthKeysOf([]byte(content))
	fp := ssh.FingerprintSHA256
	want := []AuthKeyFact{
		{Fingerprint: fp(admin)},
		{Fingerprint: fp(a), Managed: true, ManagedUUID: uuidOf(1)},
		{Fingerprint: fp(b), Managed: true},
		{Fingerprint: fp(admin)},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	if got := AuthKeysOf(nil); got == nil || len(got) != 0 {
		t.Fatalf("empty file: got %#v, want an empty, non-nil list", got)
	}
}

func TestSSHReportOf_KeepsExistingFiles(t *testing.T) {
	key := newKey(t)
	rep := &sshdist.Report{PublicKey: line(key) + " root@n",
		ClientCert: "PEM", Files: []sshdist.FileStatus{
			{Path: "/var/lib/ganeti/ca.pem", Exists: true, Mode: "0644"},
			{Path: "/var/lib/ganeti/ca-key.pem"},
		}}
	got := SSHReportOf(rep)
	want := &SSHReport{PublicKeyFP: ssh.FingerprintSHA256(key),
		ClientCert: "PEM",
		Files:      []FileFact{{"/var/lib/ganeti/ca.pem", "0644"}}}
	if got.PublicKeyFP != want.PublicKeyFP || got.ClientCert != "PEM" ||
		!slices.Equal(got.Files, want.Files) || got.PublicKeyErr != "" {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	bad := SSHReportOf(&sshdist.Report{PublicKey: "ssh-ed25519 !!"})
	if bad.PublicKeyFP != "" || bad.PublicKeyErr == "" {
		t.Fatalf("unusable key: got %+v, want an error", bad)
	}
}
