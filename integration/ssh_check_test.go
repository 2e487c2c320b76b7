package integration

import (
	"os"
	"testing"
)

// The SSH tests are only as strict as their file checks: these cases
// show that authKeysState and pubKeysState notice every kind of change
// they are meant to, and accept what the tool may legitimately do.

func TestSSHCheck_AuthorizedKeys(t *testing.T) {
	h := &Host{Name: "nodeX", Root: t.TempDir()}
	admin := adminOptions + "ssh-ed25519 AAAAF admin@x\n" + adminComment +
		"\nssh-ed25519 AAAAM"
	w := &sshWorld{t: t, admin: map[*Host]string{h: admin}}
	a := "ssh-ed25519 AAAAA ganeti-node:aaaaaaaa-0000-4000-8000-000000000000\n"
	b := "ssh-ed25519 AAAAB ganeti-node:bbbbbbbb-0000-4000-8000-000000000000\n"
	managed := []string{a, b}

	cases := []struct {
		name    string
		member  bool
		content string
		ok      bool
	}{
		{"exact", true, admin + "\n" + a + b, true},
		{"managed reordered", true, admin + "\n" + b + a, true},
		{"managed missing", true, admin + "\n" + a, false},
		{"managed extra", true, admin + "\n" + a + b + b, false},
		{"managed with options", true, admin + "\nno-pty " + a + b, false},
		{"managed glued to admin", true, admin + a + b, false},
		{"blank line lost", true, adminOptions +
			"ssh-ed25519 AAAAF admin@x\n" + adminComment +
			"ssh-ed25519 AAAAM\n" + a + b, false},
		{"admin reordered", true, adminComment + adminOptions +
			"ssh-ed25519 AAAAF admin@x\n\nssh-ed25519 AAAAM\n" + a + b, false},
		{"managed before admin", true, a + b + admin + "\n", false},
		{"no member, untouched", false, admin, true},
		{"no member, ended", false, admin + "\n", true},
		{"no member, managed left", false, admin + "\n" + a, false},
	}
	for _, tc := range cases {
		writeFile(t, h.path(authKeysRel), tc.content, 0o600)
		state := w.authKeysState(h, tc.member, managed)
		if (state == "") != tc.ok {
			t.Errorf("%s: state %q, want ok=%v", tc.name, state, tc.ok)
		}
	}
}

func TestSSHCheck_PubKeys(t *testing.T) {
	h := &Host{Name: "nodeX", Root: t.TempDir()}
	want := "aaaaaaaa-0000-4000-8000-000000000000 ssh-ed25519 AAAAA\n"
	cases := []struct {
		name      string
		potential bool
		content   string // "" means no file
		mode      os.FileMode
		ok        bool
	}{
		{"exact", true, want, 0o600, true},
		{"mode 0644", true, want, 0o644, false},
		{"missing", true, "", 0, false},
		{"other key", true, want + want, 0o600, false},
		{"not potential, absent", false, "", 0, true},
		{"not potential, present", false, want, 0o600, false},
	}
	for _, tc := range cases {
		p := h.LibPath("ganeti_pub_keys")
		os.Remove(p)
		if tc.content != "" {
			writeFile(t, p, tc.content, tc.mode)
			os.Chmod(p, tc.mode) // the umask must not soften it
		}
		state := pubKeysState(h, tc.potential, want)
		if (state == "") != tc.ok {
			t.Errorf("%s: state %q, want ok=%v", tc.name, state, tc.ok)
		}
	}
}
