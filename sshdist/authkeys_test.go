package sshdist

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

// seededKey returns a deterministic Ed25519 public key; different n
// give different keys.
func seededKey(tb testing.TB, n byte) ssh.PublicKey {
	tb.Helper()
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{n}, ed25519.SeedSize))
	pub, err := ssh.NewPublicKey(priv.Public())
	if err != nil {
		tb.Fatalf("NewPublicKey: %v", err)
	}
	return pub
}

// seededUUID returns a valid node UUID that depends on n.
func seededUUID(n byte) string {
	return fmt.Sprintf("%08x-0000-4000-8000-%012x", n, n)
}

// keyText returns "type base64" for key.
func keyText(key ssh.PublicKey) string {
	return strings.TrimSuffix(string(ssh.MarshalAuthorizedKey(key)), "\n")
}

// wantManaged is the managed line SetManagedKeys writes for n.
func wantManaged(tb testing.TB, n byte) string {
	tb.Helper()
	return keyText(seededKey(tb, n)) + " " + MarkerPrefix + seededUUID(n) + "\n"
}

func seededManaged(tb testing.TB, n byte) ManagedKey {
	tb.Helper()
	return ManagedKey{UUID: seededUUID(n), Key: seededKey(tb, n)}
}

func TestSetManagedKeys_KeepsForeignLines(t *testing.T) {
	admin := keyText(seededKey(t, 100))
	a := wantManaged(t, 1)
	tests := []struct {
		name, in, want string
	}{
		{"empty", "", a},
		{"from option", `from="10.0.0.1" ` + admin + " ops\n",
			`from="10.0.0.1" ` + admin + " ops\n" + a},
		{"command option", `command="/bin/true",no-pty ` + admin + "\n",
			`command="/bin/true",no-pty ` + admin + "\n" + a},
		{"restrict", "restrict " + admin + " backup\n",
			"restrict " + admin + " backup\n" + a},
		{"comments and blanks", "# admins\n\n" + admin + "\n\n",
			"# admins\n\n" + admin + "\n\n" + a},
		{"crlf", admin + " x\r\n# c\r\n", admin + " x\r\n# c\r\n" + a},
		{"trailing spaces", admin + " ops   \n  \n",
			admin + " ops   \n  \n" + a},
		{"duplicates", admin + "\n" + admin + "\n",
			admin + "\n" + admin + "\n" + a},
		{"no final newline", admin + " ops", admin + " ops\n" + a},
		{"no final newline crlf", admin + "\r", admin + "\r\n" + a},
		{"garbage", "not a key\x00\xff\n", "not a key\x00\xff\n" + a},
		{"commented managed line", "# " + a, "# " + a + a},
		{"broken managed line", "ssh-ed25519 AAAA " + MarkerPrefix +
			seededUUID(1) + "\n", "ssh-ed25519 AAAA " + MarkerPrefix +
			seededUUID(1) + "\n" + a},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, changed, err := SetManagedKeys([]byte(tt.in), []ManagedKey{seededManaged(t, 1)})
			if err != nil {
				t.Fatalf("SetManagedKeys: %v", err)
			}
			if string(got) != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
			if !changed {
				t.Errorf("got changed=false, want true")
			}
		})
	}
}

func TestSetManagedKeys_Edits(t *testing.T) {
	a, b, c := wantManaged(t, 1), wantManaged(t, 2), wantManaged(t, 3)
	admin := keyText(seededKey(t, 100)) + " admin\n"
	aByAdmin := keyText(seededKey(t, 1)) + " alice@laptop\n"
	tests := []struct {
		name string
		in   string
		keys []byte // seeds of the keys to set, in order
		want string
	}{
		{"remove one node keeps the other", a + b, []byte{2}, b},
		{"remove all", admin + a + b, nil, admin},
		{"stale generation removed", admin + c + a, []byte{1}, admin + a},
		{"duplicates collapsed", a + a + admin + a, []byte{1}, a + admin},
		{"order follows keys", a + b, []byte{2, 1}, b + a},
		{"block at first managed line", admin + a + admin + b,
			[]byte{1, 2}, admin + a + b + admin},
		{"edited comment still managed",
			strings.TrimSuffix(a, "\n") + " edited by bob\n", nil, ""},
		{"edited comment rewritten",
			strings.TrimSuffix(a, "\n") + " edited\n", []byte{1}, a},
		{"managed line with options",
			"restrict " + a, []byte{1}, a},
		{"managed crlf rewritten", strings.TrimSuffix(a, "\n") + "\r\n",
			[]byte{1}, a},
		{"managed last line without newline",
			admin + strings.TrimSuffix(a, "\n"), []byte{1}, admin + a},
		{"foreign copy of managed key kept on removal",
			aByAdmin + a, nil, aByAdmin},
		{"foreign copy of managed key kept on add",
			aByAdmin, []byte{1}, aByAdmin + a},
		{"uuid rewritten for key",
			strings.Replace(a, seededUUID(1), seededUUID(9), 1),
			[]byte{1}, a},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var keys []ManagedKey
			for _, n := range tt.keys {
				keys = append(keys, seededManaged(t, n))
			}
			got, changed, err := SetManagedKeys([]byte(tt.in), keys)
			if err != nil {
				t.Fatalf("SetManagedKeys: %v", err)
			}
			if string(got) != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
			if want := tt.in != tt.want; changed != want {
				t.Errorf("got changed=%v, want %v", changed, want)
			}
		})
	}
}

func TestSetManagedKeys_Idempotent(t *testing.T) {
	admin := "restrict " + keyText(seededKey(t, 100)) + " admin\r\n# x"
	keys := []ManagedKey{seededManaged(t, 1), seededManaged(t, 2), seededManaged(t, 1)}
	once, changed, err := SetManagedKeys([]byte(admin), keys)
	if err != nil || !changed {
		t.Fatalf("first apply: changed=%v err=%v, want true, nil", changed, err)
	}
	twice, changed, err := SetManagedKeys(once, keys)
	if err != nil {
		t.Fatalf("second apply: %v", err)
	}
	if changed || !bytes.Equal(once, twice) {
		t.Errorf("second apply: got changed=%v %q, want false %q",
			changed, twice, once)
	}
}

func TestSetManagedKeys_DuplicateKeyFirstUUIDWins(t *testing.T) {
	k := seededKey(t, 1)
	keys := []ManagedKey{{seededUUID(1), k}, {seededUUID(2), k}}
	got, _, err := SetManagedKeys(nil, keys)
	if err != nil {
		t.Fatalf("SetManagedKeys: %v", err)
	}
	if want := wantManaged(t, 1); string(got) != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestSetManagedKeys_RejectsInvalidKeys(t *testing.T) {
	k := seededKey(t, 1)
	tests := []struct {
		name string
		key  ManagedKey
	}{
		{"nil key", ManagedKey{UUID: seededUUID(1)}},
		{"empty uuid", ManagedKey{Key: k}},
		{"uppercase uuid", ManagedKey{strings.ToUpper(seededUUID(10)), k}},
		{"newline injection", ManagedKey{seededUUID(1) + "\n" + keyText(k), k}},
		{"space", ManagedKey{"a b", k}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := []byte("keep\n")
			out, changed, err := SetManagedKeys(in, []ManagedKey{seededManaged(t, 2), tt.key})
			if !errors.Is(err, ErrInvalidManagedKey) {
				t.Fatalf("got err %v, want ErrInvalidManagedKey", err)
			}
			if out != nil || changed {
				t.Errorf("got %q changed=%v, want nil false", out, changed)
			}
		})
	}
}

func TestManagedKeys_ListsManagedLines(t *testing.T) {
	admin := keyText(seededKey(t, 100)) + " " + MarkerPrefix + "x\n"
	content := "# c\n" + wantManaged(t, 2) + "restrict " +
		strings.TrimSuffix(wantManaged(t, 1), "\n") + " note\r\n" +
		"ssh-ed25519 AAAA " + MarkerPrefix + seededUUID(3) + "\n" +
		keyText(seededKey(t, 4)) + " other\n" + admin
	got := ManagedKeys([]byte(content))
	want := []ManagedKey{seededManaged(t, 2), seededManaged(t, 1),
		{UUID: "x", Key: seededKey(t, 100)}}
	if len(got) != len(want) {
		t.Fatalf("got %d managed keys, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].UUID != want[i].UUID ||
			!bytes.Equal(got[i].Key.Marshal(), want[i].Key.Marshal()) {
			t.Errorf("key %d: got %s %s, want %s %s", i, got[i].UUID,
				keyText(got[i].Key), want[i].UUID, keyText(want[i].Key))
		}
	}
}

func TestAuthorizes_MatchesByKeyData(t *testing.T) {
	k := seededKey(t, 1)
	kt := keyText(k)
	tests := []struct {
		name    string
		content string
		want    bool
	}{
		{"managed", wantManaged(t, 1), true},
		{"plain", kt + "\n", true},
		{"other comment", kt + " someone\n", true},
		{"options", `from="10.0.0.1",restrict ` + kt + " x\n", true},
		{"crlf no newline", "# x\r\n" + kt + "\r", true},
		{"commented out", "# " + kt + "\n", false},
		{"other key", wantManaged(t, 2), false},
		{"empty", "", false},
		{"garbage", "\x00\xff ssh-ed25519\n", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Authorizes([]byte(tt.content), k); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
	if Authorizes([]byte(wantManaged(t, 1)), nil) {
		t.Errorf("nil key: got true, want false")
	}
}

func TestUpdateAuthorizedKeys_MissingFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "root", ".ssh")
	path := filepath.Join(dir, "authorized_keys")
	changed, err := UpdateAuthorizedKeys(path, nil)
	if err != nil || changed {
		t.Fatalf("no keys: got changed=%v err=%v, want false, nil", changed, err)
	}
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Errorf("no keys: file exists (err %v), want none", err)
	}
	changed, err = UpdateAuthorizedKeys(path, []ManagedKey{seededManaged(t, 1)})
	if err != nil || !changed {
		t.Fatalf("got changed=%v err=%v, want true, nil", changed, err)
	}
	assertFile(t, path, wantManaged(t, 1), 0o600)
	if st, err := os.Stat(dir); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("directory: got %v (err %v), want mode 0700", st.Mode(), err)
	}
}

func TestUpdateAuthorizedKeys_ExistingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "authorized_keys")
	admin := "restrict " + keyText(seededKey(t, 100)) + " admin"
	writeTestFile(t, path, admin, 0o640)

	changed, err := UpdateAuthorizedKeys(path, []ManagedKey{seededManaged(t, 1)})
	if err != nil || !changed {
		t.Fatalf("got changed=%v err=%v, want true, nil", changed, err)
	}
	assertFile(t, path, admin+"\n"+wantManaged(t, 1), 0o640)

	before, _ := os.Stat(path)
	changed, err = UpdateAuthorizedKeys(path, []ManagedKey{seededManaged(t, 1)})
	if err != nil || changed {
		t.Fatalf("again: got changed=%v err=%v, want false, nil", changed, err)
	}
	if after, _ := os.Stat(path); !os.SameFile(before, after) {
		t.Errorf("unchanged file was rewritten")
	}

	if _, err := UpdateAuthorizedKeys(path, nil); err != nil {
		t.Fatalf("removing: %v", err)
	}
	assertFile(t, path, admin+"\n", 0o640)
}

func TestUpdateAuthorizedKeys_RefusesNonRegular(t *testing.T) {
	base := t.TempDir()
	target := filepath.Join(base, "real")
	writeTestFile(t, target, "keep\n", 0o600)
	link := filepath.Join(base, "link")
	if err := os.Symlink(target, link); err != nil {
		t.Fatalf("Symlink: %v", err)
	}
	dir := filepath.Join(base, "dir")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatalf("Mkdir: %v", err)
	}
	for _, path := range []string{dir, link} {
		t.Run(filepath.Base(path), func(t *testing.T) {
			changed, err := UpdateAuthorizedKeys(path, []ManagedKey{seededManaged(t, 1)})
			var nr *NotRegularError
			if !errors.Is(err, ErrNotRegularFile) || !errors.As(err, &nr) {
				t.Fatalf("got err %v, want a *NotRegularError", err)
			}
			if changed || nr.Path != path {
				t.Errorf("got changed=%v path %q, want false %q",
					changed, nr.Path, path)
			}
		})
	}
	assertFile(t, target, "keep\n", 0o600)
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("directory got %d entries, want 0", len(entries))
	}
}

func writeTestFile(tb testing.TB, path, content string, mode os.FileMode) {
	tb.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		tb.Fatalf("WriteFile: %v", err)
	}
	if err := os.Chmod(path, mode); err != nil {
		tb.Fatalf("Chmod: %v", err)
	}
}

func assertFile(tb testing.TB, path, want string, mode os.FileMode) {
	tb.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		tb.Fatalf("ReadFile: %v", err)
	}
	if string(got) != want {
		tb.Errorf("%s: got %q, want %q", filepath.Base(path), got, want)
	}
	st, err := os.Lstat(path)
	if err != nil {
		tb.Fatalf("Lstat: %v", err)
	}
	if st.Mode() != mode {
		tb.Errorf("%s: got mode %v, want %v", filepath.Base(path), st.Mode(), mode)
	}
}
