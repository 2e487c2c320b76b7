package sshdist

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

func TestKnownHostsLine_Formats(t *testing.T) {
	k := seededKey(t, 1)
	kt := keyText(k)
	tests := []struct{ addr, want string }{
		{"127.0.0.1:22", "127.0.0.1 " + kt + "\n"},
		{"127.0.0.2:2222", "[127.0.0.2]:2222 " + kt + "\n"},
		{"[::1]:22", "::1 " + kt + "\n"},
		{"[::1]:2200", "[::1]:2200 " + kt + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			if got := KnownHostsLine(tt.addr, k); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
	if got := KnownHostsLine("127.0.0.1:22", nil); got != "" {
		t.Errorf("nil key: got %q, want \"\"", got)
	}
	if got := KnownHostsLine("127.0.0.1\n* :22", k); got != "" {
		t.Errorf("bad address: got %q, want \"\"", got)
	}
}

func TestAddKnownHost_CreatesAndAppends(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lib", "known_hosts")
	k1, k2 := seededKey(t, 1), seededKey(t, 2)
	if err := AddKnownHost(path, "127.0.0.1:22", k1); err != nil {
		t.Fatalf("AddKnownHost: %v", err)
	}
	want := KnownHostsLine("127.0.0.1:22", k1)
	assertFile(t, path, want, 0o644)

	before, _ := os.Stat(path)
	if err := AddKnownHost(path, "127.0.0.1:22", k1); err != nil {
		t.Fatalf("AddKnownHost again: %v", err)
	}
	if after, _ := os.Stat(path); !os.SameFile(before, after) {
		t.Errorf("file rewritten although the entry existed")
	}

	if err := AddKnownHost(path, "127.0.0.2:2222", k2); err != nil {
		t.Fatalf("AddKnownHost second host: %v", err)
	}
	want += KnownHostsLine("127.0.0.2:2222", k2)
	assertFile(t, path, want, 0o644)
}

func TestAddKnownHost_RecognisesExistingEntries(t *testing.T) {
	k := seededKey(t, 1)
	kt := keyText(k)
	tests := []struct{ name, content string }{
		{"multi host", "127.0.0.9,127.0.0.3 " + kt + " c\n"},
		{"hashed", knownhosts.HashHostname("127.0.0.3") + " " + kt + "\n"},
		{"crlf no newline", "# x\r\n127.0.0.3 " + kt + "\r"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "known_hosts")
			writeTestFile(t, path, tt.content, 0o644)
			if err := AddKnownHost(path, "127.0.0.3:22", k); err != nil {
				t.Fatalf("AddKnownHost: %v", err)
			}
			assertFile(t, path, tt.content, 0o644)
		})
	}
}

func TestAddKnownHost_NoFinalNewline(t *testing.T) {
	path := filepath.Join(t.TempDir(), "known_hosts")
	first := "127.0.0.9 " + keyText(seededKey(t, 9))
	writeTestFile(t, path, first, 0o644)
	k := seededKey(t, 1)
	if err := AddKnownHost(path, "127.0.0.1:22", k); err != nil {
		t.Fatalf("AddKnownHost: %v", err)
	}
	assertFile(t, path, first+"\n"+KnownHostsLine("127.0.0.1:22", k), 0o644)
}

func TestAddKnownHost_RefusesConflict(t *testing.T) {
	path := filepath.Join(t.TempDir(), "known_hosts")
	old, offered := seededKey(t, 1), seededKey(t, 2)
	content := "# pinned\n" + KnownHostsLine("127.0.0.5:2222", old)
	writeTestFile(t, path, content, 0o644)

	err := AddKnownHost(path, "127.0.0.5:2222", offered)
	var ce *HostKeyConflictError
	if !errors.As(err, &ce) {
		t.Fatalf("got %v, want a *HostKeyConflictError", err)
	}
	want := HostKeyConflictError{Path: path, Host: "[127.0.0.5]:2222", Line: 2,
		Known: ssh.FingerprintSHA256(old), Offered: ssh.FingerprintSHA256(offered)}
	if *ce != want {
		t.Errorf("got %+v, want %+v", *ce, want)
	}
	assertFile(t, path, content, 0o644)
}

func TestAddKnownHost_RefusesBadInput(t *testing.T) {
	k := seededKey(t, 1)
	revoked := "@revoked * " + keyText(k) + "\n"
	tests := []struct {
		name, addr string
		key        ssh.PublicKey
		want       error
	}{
		{"space", "127.0.0.1 x:22", k, ErrBadHostAddress},
		{"comma", "127.0.0.1,127.0.0.2:22", k, ErrBadHostAddress},
		{"pattern", "127.0.0.*:22", k, ErrBadHostAddress},
		{"newline", "127.0.0.1\n127.0.0.2", k, ErrBadHostAddress},
		{"empty", "", k, ErrBadHostAddress},
		{"nil key", "127.0.0.1:22", nil, ErrNoHostKey},
		{"revoked", "127.0.0.1:22", k, ErrHostKeyRevoked},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "known_hosts")
			writeTestFile(t, path, revoked, 0o644)
			err := AddKnownHost(path, tt.addr, tt.key)
			if !errors.Is(err, tt.want) {
				t.Errorf("got %v, want %v", err, tt.want)
			}
			assertFile(t, path, revoked, 0o644)
		})
	}
	if err := AddKnownHost(t.TempDir(), "127.0.0.1:22", k); !errors.Is(err, ErrNotRegularFile) {
		t.Errorf("directory: got %v, want ErrNotRegularFile", err)
	}
}

// TestAddKnownHost_PinsForClient checks that what AddKnownHost writes
// makes the x/crypto known_hosts callback accept the pinned key and
// reject any other.
func TestAddKnownHost_PinsForClient(t *testing.T) {
	path := filepath.Join(t.TempDir(), "known_hosts")
	pinned, other := seededKey(t, 1), seededKey(t, 2)
	for _, addr := range []string{"127.0.0.7:22", "127.0.0.7:2222"} {
		if err := AddKnownHost(path, addr, pinned); err != nil {
			t.Fatalf("AddKnownHost(%q): %v", addr, err)
		}
	}
	check, err := knownhosts.New(path)
	if err != nil {
		t.Fatalf("knownhosts.New: %v", err)
	}
	for _, port := range []int{22, 2222} {
		remote := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 7), Port: port}
		if err := check(remote.String(), remote, pinned); err != nil {
			t.Errorf("port %d pinned key: got %v, want nil", port, err)
		}
		var ke *knownhosts.KeyError
		if err := check(remote.String(), remote, other); !errors.As(err, &ke) ||
			len(ke.Want) == 0 {
			t.Errorf("port %d other key: got %v, want a key mismatch", port, err)
		}
	}
}

func TestRemoveKnownHost_DropsOnlyThatHost(t *testing.T) {
	k1, k2 := keyText(seededKey(t, 1)), keyText(seededKey(t, 2))
	keep := "# cluster hosts\r\n" +
		"127.0.0.9 " + k2 + "\n" +
		"[127.0.0.3]:2222 " + k1 + "\n" +
		"@revoked 127.0.0.3 " + k2 + "\n" +
		"@cert-authority 127.0.0.3,127.0.0.9 " + k2 + "\n" +
		"127.0.0.* " + k2 + "\n" +
		"not a known hosts line\n"
	content := keep +
		"127.0.0.3 " + k1 + " old\n" +
		"127.0.0.9,127.0.0.3\t" + k2 + " shared\n" +
		knownhosts.HashHostname("127.0.0.3") + " " + k1 + "\n" +
		"127.0.0.3 " + k2
	want := keep + "127.0.0.9\t" + k2 + " shared\n"

	path := filepath.Join(t.TempDir(), "known_hosts")
	writeTestFile(t, path, content, 0o644)
	if err := RemoveKnownHost(path, "127.0.0.3:22"); err != nil {
		t.Fatalf("RemoveKnownHost: %v", err)
	}
	assertFile(t, path, want, 0o644)

	before, _ := os.Stat(path)
	if err := RemoveKnownHost(path, "127.0.0.3:22"); err != nil {
		t.Fatalf("RemoveKnownHost again: %v", err)
	}
	if after, _ := os.Stat(path); !os.SameFile(before, after) {
		t.Errorf("unchanged file was rewritten")
	}
}

func TestRemoveKnownHost_MissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "known_hosts")
	if err := RemoveKnownHost(path, "127.0.0.1:22"); err != nil {
		t.Errorf("got %v, want nil", err)
	}
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Errorf("file created (err %v), want none", err)
	}
	if err := RemoveKnownHost(path, "a b"); !errors.Is(err, ErrBadHostAddress) {
		t.Errorf("bad address: got %v, want ErrBadHostAddress", err)
	}
}

func TestReplaceKnownHost_ReplacesPinnedKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "known_hosts")
	old, next := seededKey(t, 1), seededKey(t, 2)
	other := KnownHostsLine("127.0.0.9:22", old)
	writeTestFile(t, path, KnownHostsLine("127.0.0.5:22", old)+other, 0o600)
	if err := ReplaceKnownHost(path, "127.0.0.5:22", next); err != nil {
		t.Fatalf("ReplaceKnownHost: %v", err)
	}
	assertFile(t, path, other+KnownHostsLine("127.0.0.5:22", next), 0o644)
	if err := AddKnownHost(path, "127.0.0.5:22", next); err != nil {
		t.Errorf("AddKnownHost after replace: got %v, want nil", err)
	}
}

// TestAddKnownHost_OpenSSHFindsIt checks the written lines with
// OpenSSH's own lookup, for the bare and the bracketed form.
func TestAddKnownHost_OpenSSHFindsIt(t *testing.T) {
	keygen := sshKeygen(t)
	path := filepath.Join(t.TempDir(), "known_hosts")
	k := seededKey(t, 1)
	for _, addr := range []string{"127.0.0.1:22", "127.0.0.2:2222"} {
		if err := AddKnownHost(path, addr, k); err != nil {
			t.Fatalf("AddKnownHost(%q): %v", addr, err)
		}
	}
	for _, host := range []string{"127.0.0.1", "[127.0.0.2]:2222"} {
		out, err := exec.Command(keygen, "-F", host, "-f", path).CombinedOutput()
		if err != nil || !strings.Contains(string(out), keyText(k)) {
			t.Errorf("ssh-keygen -F %s: got %q (err %v), want the key", host, out, err)
		}
	}
}

// TestRemoveKnownHost_OpenSSHHashedEntries checks the hashed-name match
// against entries hashed by OpenSSH itself.
func TestRemoveKnownHost_OpenSSHHashedEntries(t *testing.T) {
	keygen := sshKeygen(t)
	path := filepath.Join(t.TempDir(), "known_hosts")
	k1, k2 := keyText(seededKey(t, 1)), keyText(seededKey(t, 2))
	writeTestFile(t, path, "127.0.0.3 "+k1+"\n[127.0.0.4]:2222 "+k2+"\n"+
		"127.0.0.5 "+k2+"\n", 0o644)
	if out, err := exec.Command(keygen, "-H", "-f", path).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen -H: %v: %s", err, out)
	}
	for _, addr := range []string{"127.0.0.3:22", "127.0.0.4:2222"} {
		if err := RemoveKnownHost(path, addr); err != nil {
			t.Fatalf("RemoveKnownHost(%q): %v", addr, err)
		}
	}
	content, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("ReadFile: %v", err)
	}
	lines := strings.Split(strings.TrimSuffix(string(content), "\n"), "\n")
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "|1|") ||
		!strings.HasSuffix(lines[0], k2) {
		t.Errorf("got %q, want only the hashed line of 127.0.0.5", content)
	}
}

func TestParsePins_LooksUpHosts(t *testing.T) {
	k1, k2, k3 := seededKey(t, 1), seededKey(t, 2), seededKey(t, 3)
	hashed := knownhosts.HashHostname("[127.0.0.3]:2222")
	content := KnownHostsLine("127.0.0.1:2222", k1) +
		"# a comment\n\nnot a known_hosts line\n" +
		"@revoked [127.0.0.2]:2222 " + keyText(k3) + "\n" +
		KnownHostsLine("127.0.0.2:2222", k2) +
		hashed + " " + keyText(k3)
	p := ParsePins([]byte(content))
	tests := []struct {
		addr string
		want []ssh.PublicKey
	}{
		{"127.0.0.1:2222", []ssh.PublicKey{k1}},
		{"127.0.0.2:2222", []ssh.PublicKey{k2}}, // @revoked is not a pin
		{"127.0.0.3:2222", []ssh.PublicKey{k3}}, // hashed entry
		{"127.0.0.1:22", nil},
		{"127.0.0.9:2222", nil},
		{"not an address\n", nil},
	}
	for _, tt := range tests {
		got := p.Keys(tt.addr)
		if len(got) != len(tt.want) {
			t.Errorf("%q: got %d keys, want %d", tt.addr, len(got), len(tt.want))
			continue
		}
		for i := range got {
			if keyText(got[i]) != keyText(tt.want[i]) {
				t.Errorf("%q: key %d is %s, want %s", tt.addr, i,
					keyText(got[i]), keyText(tt.want[i]))
			}
		}
	}
}
