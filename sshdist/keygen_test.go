package sshdist

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/pem"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"ganeti-node/atomicfile"
)

// testPair is a generated key pair of one type.
type testPair struct {
	keyType     string
	priv, pub   []byte
	fingerprint string
}

func generatePair(tb testing.TB, keyType string) testPair {
	tb.Helper()
	priv, pub, err := GenerateKeyPair(keyType, 0, "root@"+keyType)
	if err != nil {
		tb.Fatalf("GenerateKeyPair(%q): %v", keyType, err)
	}
	key, _, _, _, err := ssh.ParseAuthorizedKey(pub)
	if err != nil {
		tb.Fatalf("ParseAuthorizedKey: %v", err)
	}
	return testPair{keyType, priv, pub, ssh.FingerprintSHA256(key)}
}

var testNow = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func TestGenerateKeyPair_Types(t *testing.T) {
	tests := []struct {
		keyType  string
		bits     int
		wantAlgo string
		wantBits int // RSA modulus size, else 0
	}{
		{"", 0, ssh.KeyAlgoED25519, 0},
		{"ed25519", 256, ssh.KeyAlgoED25519, 0},
		{"ecdsa", 0, ssh.KeyAlgoECDSA256, 0},
		{"ecdsa", 384, ssh.KeyAlgoECDSA384, 0},
		{"ecdsa", 521, ssh.KeyAlgoECDSA521, 0},
		{"rsa", 2048, ssh.KeyAlgoRSA, 2048},
		{"rsa", 0, ssh.KeyAlgoRSA, 3072},
	}
	for _, tt := range tests {
		t.Run(tt.keyType+"/"+tt.wantAlgo, func(t *testing.T) {
			priv, pub, err := GenerateKeyPair(tt.keyType, tt.bits, "root@n1")
			if err != nil {
				t.Fatalf("GenerateKeyPair: %v", err)
			}
			if b, _ := pem.Decode(priv); b == nil || b.Type != "OPENSSH PRIVATE KEY" {
				t.Fatalf("got private key %.40q, want an OPENSSH PRIVATE KEY", priv)
			}
			signer, err := ssh.ParsePrivateKey(priv)
			if err != nil {
				t.Fatalf("ParsePrivateKey: %v", err)
			}
			if got := signer.PublicKey().Type(); got != tt.wantAlgo {
				t.Errorf("got type %q, want %q", got, tt.wantAlgo)
			}
			want := keyText(signer.PublicKey()) + " root@n1\n"
			if string(pub) != want {
				t.Errorf("got public line %q, want %q", pub, want)
			}
			if tt.wantBits != 0 {
				ck := signer.PublicKey().(ssh.CryptoPublicKey).CryptoPublicKey()
				if got := ck.(*rsa.PublicKey).N.BitLen(); got != tt.wantBits {
					t.Errorf("got %d bits, want %d", got, tt.wantBits)
				}
			}
		})
	}
}

func TestGenerateKeyPair_NoComment(t *testing.T) {
	_, pub, err := GenerateKeyPair("ed25519", 0, "")
	if err != nil {
		t.Fatalf("GenerateKeyPair: %v", err)
	}
	if f := strings.Fields(string(pub)); len(f) != 2 || !bytes.HasSuffix(pub, []byte("\n")) {
		t.Errorf("got %q, want \"type base64\\n\"", pub)
	}
}

func TestGenerateKeyPair_Rejects(t *testing.T) {
	tests := []struct {
		name, keyType string
		bits          int
		comment       string
		want          error
	}{
		{"dsa", "dsa", 0, "", ErrUnknownKeyType},
		{"uppercase", "RSA", 0, "", ErrUnknownKeyType},
		{"ed25519 bits", "ed25519", 384, "", ErrBadKeySize},
		{"ecdsa bits", "ecdsa", 255, "", ErrBadKeySize},
		{"rsa small", "rsa", 1024, "", ErrBadKeySize},
		{"rsa huge", "rsa", 32768, "", ErrBadKeySize},
		{"rsa negative", "rsa", -1, "", ErrBadKeySize},
		{"newline comment", "ed25519", 0, "a\nssh-ed25519 AAAA", ErrBadKeyComment},
		{"nul comment", "ed25519", 0, "a\x00", ErrBadKeyComment},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			priv, pub, err := GenerateKeyPair(tt.keyType, tt.bits, tt.comment)
			if !errors.Is(err, tt.want) {
				t.Errorf("got %v, want %v", err, tt.want)
			}
			if priv != nil || pub != nil {
				t.Errorf("got key material with an error")
			}
		})
	}
}

func TestKeyFileName_Types(t *testing.T) {
	tests := []struct{ keyType, want string }{
		{"", "id_ed25519"},
		{"ed25519", "id_ed25519"},
		{"ecdsa", "id_ecdsa"},
		{"rsa", "id_rsa"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			got, err := KeyFileName(tt.keyType)
			if err != nil || got != tt.want {
				t.Errorf("got %q, %v, want %q, nil", got, err, tt.want)
			}
		})
	}
	if _, err := KeyFileName("dsa"); !errors.Is(err, ErrUnknownKeyType) {
		t.Errorf("dsa: got %v, want ErrUnknownKeyType", err)
	}
}

func TestInstallKeyPair_FreshDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "root", ".ssh")
	p := generatePair(t, "ed25519")
	if err := InstallKeyPair(dir, "", p.priv, p.pub, testNow); err != nil {
		t.Fatalf("InstallKeyPair: %v", err)
	}
	if st, err := os.Stat(dir); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("directory: got %v (err %v), want mode 0700", st.Mode(), err)
	}
	assertFile(t, filepath.Join(dir, "id_ed25519"), string(p.priv), 0o600)
	assertFile(t, filepath.Join(dir, "id_ed25519.pub"), string(p.pub), 0o644)
	assertLoads(t, dir, p)
}

func TestInstallKeyPair_BacksUpAndReplacesOtherType(t *testing.T) {
	dir := t.TempDir()
	old, next := generatePair(t, "ed25519"), generatePair(t, "ecdsa")
	if err := InstallKeyPair(dir, "ed25519", old.priv, old.pub, testNow); err != nil {
		t.Fatalf("InstallKeyPair(old): %v", err)
	}
	later := testNow.Add(time.Hour)
	if err := InstallKeyPair(dir, "ecdsa", next.priv, next.pub, later); err != nil {
		t.Fatalf("InstallKeyPair(next): %v", err)
	}
	for _, n := range []string{"id_ed25519", "id_ed25519.pub"} {
		if _, err := os.Lstat(filepath.Join(dir, n)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: got err %v, want it removed", n, err)
		}
	}
	bak := backupName(filepath.Join(dir, "id_ed25519"), later)
	assertFile(t, bak, string(old.priv), 0o600)
	assertFile(t, backupName(filepath.Join(dir, "id_ed25519.pub"), later),
		string(old.pub), 0o644)
	assertLoads(t, dir, next)
}

func TestInstallKeyPair_SameTimeKeepsEveryBackup(t *testing.T) {
	dir := t.TempDir()
	pairs := []testPair{generatePair(t, "ed25519"), generatePair(t, "ed25519"),
		generatePair(t, "ed25519")}
	for _, p := range pairs {
		if err := InstallKeyPair(dir, "ed25519", p.priv, p.pub, testNow); err != nil {
			t.Fatalf("InstallKeyPair: %v", err)
		}
	}
	baks, _ := filepath.Glob(filepath.Join(dir, "id_ed25519.bak-*"))
	if len(baks) != 2 {
		t.Fatalf("got backups %q, want 2", baks)
	}
	for i, b := range baks {
		assertFile(t, b, string(pairs[i].priv), 0o600)
	}
	assertLoads(t, dir, pairs[2])
}

func TestInstallKeyPair_SamePairTwiceIsNoOp(t *testing.T) {
	dir := t.TempDir()
	p := generatePair(t, "ecdsa")
	for range 2 {
		if err := InstallKeyPair(dir, "ecdsa", p.priv, p.pub, testNow); err != nil {
			t.Fatalf("InstallKeyPair: %v", err)
		}
	}
	if names, _ := os.ReadDir(dir); len(names) != 2 {
		t.Errorf("got %d files, want the pair only", len(names))
	}
}

func TestInstallKeyPair_RejectsBadPairs(t *testing.T) {
	a, b := generatePair(t, "ed25519"), generatePair(t, "ed25519")
	tests := []struct {
		name, keyType string
		priv, pub     []byte
	}{
		{"other public key", "ed25519", a.priv, b.pub},
		{"type not as named", "ecdsa", a.priv, a.pub},
		{"two lines", "ed25519", a.priv, append(append([]byte{}, a.pub...), a.pub...)},
		{"options", "ed25519", a.priv, append([]byte("restrict "), a.pub...)},
		{"not a key", "ed25519", []byte("junk"), a.pub},
		{"unknown type", "dsa", a.priv, a.pub},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			err := InstallKeyPair(dir, tt.keyType, tt.priv, tt.pub, testNow)
			if err == nil {
				t.Fatalf("got nil error, want a refusal")
			}
			if names, _ := os.ReadDir(dir); len(names) != 0 {
				t.Errorf("got %d files written, want none", len(names))
			}
		})
	}
	var mm *KeyMismatchError
	err := InstallKeyPair(t.TempDir(), "ed25519", a.priv, b.pub, testNow)
	if !errors.As(err, &mm) || mm.Want != a.fingerprint || mm.Got != b.fingerprint {
		t.Errorf("got %v, want a *KeyMismatchError with both fingerprints", err)
	}
}

func TestInstallKeyPair_FailedBackupChangesNothing(t *testing.T) {
	dir := t.TempDir()
	old, next := generatePair(t, "ed25519"), generatePair(t, "ed25519")
	if err := InstallKeyPair(dir, "ed25519", old.priv, old.pub, testNow); err != nil {
		t.Fatalf("InstallKeyPair(old): %v", err)
	}
	if err := os.Mkdir(filepath.Join(dir, "id_rsa"), 0o700); err != nil {
		t.Fatalf("Mkdir: %v", err)
	}
	if err := InstallKeyPair(dir, "ed25519", next.priv, next.pub, testNow); err == nil {
		t.Fatalf("got nil error with a directory at id_rsa, want one")
	}
	assertFile(t, filepath.Join(dir, "id_ed25519"), string(old.priv), 0o600)
	assertFile(t, filepath.Join(dir, "id_ed25519.pub"), string(old.pub), 0o644)
}

func TestLoadOwnKey_Refuses(t *testing.T) {
	ed, ec := generatePair(t, "ed25519"), generatePair(t, "ecdsa")
	encrypted := encryptedKey(t)
	tests := []struct {
		name  string
		files map[string]string
		mode  os.FileMode // of the private key
		want  error       // nil means a *KeyMismatchError
	}{
		{"none", nil, 0o600, ErrNoOwnKey},
		{"only public", map[string]string{"id_rsa.pub": string(ed.pub)},
			0o600, ErrNoOwnKey},
		{"two pairs", map[string]string{"id_ed25519": string(ed.priv),
			"id_ed25519.pub": string(ed.pub), "id_ecdsa": string(ec.priv),
			"id_ecdsa.pub": string(ec.pub)}, 0o600, ErrMultipleOwnKeys},
		{"group readable", map[string]string{"id_ed25519": string(ed.priv),
			"id_ed25519.pub": string(ed.pub)}, 0o640, ErrKeyFileMode},
		{"missing pub", map[string]string{"id_ed25519": string(ed.priv)},
			0o600, fs.ErrNotExist},
		{"encrypted", map[string]string{"id_ed25519": string(encrypted),
			"id_ed25519.pub": string(ed.pub)}, 0o600, &ssh.PassphraseMissingError{}},
		{"pub mismatch", map[string]string{"id_ed25519": string(ed.priv),
			"id_ed25519.pub": string(ec.pub)}, 0o600, nil},
		{"wrong name", map[string]string{"id_rsa": string(ed.priv),
			"id_rsa.pub": string(ed.pub)}, 0o600, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for n, c := range tt.files {
				mode := os.FileMode(0o644)
				if !strings.HasSuffix(n, ".pub") {
					mode = tt.mode
				}
				writeTestFile(t, filepath.Join(dir, n), c, mode)
			}
			signer, err := LoadOwnKey(dir)
			if signer != nil {
				t.Errorf("got a signer, want none")
			}
			checkLoadError(t, err, tt.want)
		})
	}
}

func checkLoadError(tb testing.TB, err, want error) {
	tb.Helper()
	var mm *KeyMismatchError
	var pm *ssh.PassphraseMissingError
	switch {
	case want == nil:
		if !errors.As(err, &mm) {
			tb.Errorf("got %v, want a *KeyMismatchError", err)
		}
	case errors.As(want, &pm):
		if !errors.As(err, &pm) {
			tb.Errorf("got %v, want a *ssh.PassphraseMissingError", err)
		}
	case !errors.Is(err, want):
		tb.Errorf("got %v, want %v", err, want)
	}
}

func encryptedKey(tb testing.TB) []byte {
	tb.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatalf("GenerateKey: %v", err)
	}
	block, err := ssh.MarshalPrivateKeyWithPassphrase(priv, "", []byte("pw"))
	if err != nil {
		tb.Fatalf("MarshalPrivateKeyWithPassphrase: %v", err)
	}
	return pem.EncodeToMemory(block)
}

func assertLoads(tb testing.TB, dir string, p testPair) {
	tb.Helper()
	signer, err := LoadOwnKey(dir)
	if err != nil {
		tb.Fatalf("LoadOwnKey: %v", err)
	}
	if got := ssh.FingerprintSHA256(signer.PublicKey()); got != p.fingerprint {
		tb.Errorf("got key %s, want %s", got, p.fingerprint)
	}
}

func TestBackupName_MatchesAtomicfile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "id_ed25519")
	writeTestFile(t, path, "x", 0o600)
	now := time.Date(2024, 1, 2, 3, 4, 5, 6, time.FixedZone("x", 3600))
	got, err := atomicfile.Backup(path, now)
	if err != nil {
		t.Fatalf("Backup: %v", err)
	}
	if want := backupName(path, now); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// sshKeygen returns the path of OpenSSH's ssh-keygen, skipping the test
// when it is not installed.
func sshKeygen(tb testing.TB) string {
	tb.Helper()
	path, err := exec.LookPath("ssh-keygen")
	if err != nil {
		tb.Skip("ssh-keygen not installed")
	}
	return path
}

func TestGenerateKeyPair_OpenSSHReadsIt(t *testing.T) {
	keygen := sshKeygen(t)
	for _, keyType := range []string{"ed25519", "ecdsa", "rsa"} {
		t.Run(keyType, func(t *testing.T) {
			p := generatePair(t, keyType)
			dir := t.TempDir()
			if err := InstallKeyPair(dir, keyType, p.priv, p.pub, testNow); err != nil {
				t.Fatalf("InstallKeyPair: %v", err)
			}
			name, _ := KeyFileName(keyType)
			out, err := exec.Command(keygen, "-y", "-f",
				filepath.Join(dir, name)).CombinedOutput()
			if err != nil {
				t.Fatalf("ssh-keygen -y: %v: %s", err, out)
			}
			got := strings.Fields(string(out))
			want := strings.Fields(string(p.pub))
			if len(got) < 2 || got[0] != want[0] || got[1] != want[1] {
				t.Errorf("got %q from ssh-keygen, want %q", out, p.pub)
			}
		})
	}
}
