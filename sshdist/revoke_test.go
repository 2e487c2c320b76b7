package sshdist

import (
	"crypto/ed25519"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

func newPub(t testing.TB) ssh.PublicKey {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func plainText(k ssh.PublicKey) string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
}

// TestUpdateAuthorizedKeys_RevokeRemovesEveryCopy checks that a revoked
// key goes from admin lines too (with options or another comment),
// while other admin lines stay byte for byte.
func TestUpdateAuthorizedKeys_RevokeRemovesEveryCopy(t *testing.T) {
	shared, other, mc := newPub(t), newPub(t), newPub(t)
	const id = "00000000-0000-4000-8000-000000000001"
	admin := "# admin\n" + `from="10.0.0.1" ` + plainText(shared) + " shared@host\r\n" +
		plainText(other) + " keep me\n" + plainText(shared)
	path := filepath.Join(t.TempDir(), "authorized_keys")
	if err := os.WriteFile(path, []byte(admin), 0o600); err != nil {
		t.Fatal(err)
	}
	changed, err := UpdateAuthorizedKeys(path,
		[]ManagedKey{{UUID: id, Key: mc}}, shared)
	if err != nil || !changed {
		t.Fatalf("got changed=%t err=%v, want a change", changed, err)
	}
	got, _ := os.ReadFile(path)
	want := "# admin\n" + plainText(other) + " keep me\n" +
		ManagedKey{UUID: id, Key: mc}.Line()
	if string(got) != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	if Authorizes(got, shared) {
		t.Fatalf("revoked key still authorised")
	}
}

// TestMergeKnownHosts_KeepsOtherPins checks that a merge sets the pins
// it names, replaces a changed one, and keeps pins it does not name.
func TestMergeKnownHosts_KeepsOtherPins(t *testing.T) {
	a, b, b2, c := newPub(t), newPub(t), newPub(t), newPub(t)
	path := filepath.Join(t.TempDir(), "known_hosts")
	old := KnownHostsLine("10.0.0.1:2222", a) + KnownHostsLine("10.0.0.2:2222", b)
	if err := os.WriteFile(path, []byte(old), 0o644); err != nil {
		t.Fatal(err)
	}
	update := KnownHostsLine("10.0.0.2:2222", b2) + KnownHostsLine("10.0.0.3:22", c)
	changed, err := MergeKnownHosts(path, []byte(update))
	if err != nil || !changed {
		t.Fatalf("got changed=%t err=%v, want a change", changed, err)
	}
	got, _ := os.ReadFile(path)
	want := KnownHostsLine("10.0.0.1:2222", a) + update
	if string(got) != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	if changed, err := MergeKnownHosts(path, []byte(update)); changed || err != nil {
		t.Fatalf("second merge: changed=%t err=%v, want no change", changed, err)
	}
	if _, err := MergeKnownHosts(path, []byte("garbage\n")); err == nil {
		t.Fatalf("merge of garbage succeeded")
	}
}
