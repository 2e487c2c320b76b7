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
