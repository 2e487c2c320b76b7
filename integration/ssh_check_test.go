package integration

import (
	"os"
	"testing"
)

// The SSH tests are only as strict as their file checks: these cases
// show that authKeysState and pubKeysState notice every kind of change
// they are meant to, and accept what the tool may legitimately do.

func TestSSHCheck_AuthorizedKeys(t *testing.T) {
	admin := adminOptions + "ssh-ed25519 AAAAF admin@x\n" + adminComment +
		"\nssh-ed25519 AAAAG admin@y"
	a := "ssh-ed25519 AAAAA ganeti-node:aaaaaaaa-0000-4000-8000-000000000000\n"
	b := "ssh-ed25519 AAAAB ganeti-node:bbbbbbbb-0000-4000-8000-000000000000\n"
	both := []string{a, b}

	cases := []struct {
		name    string
		content string
		managed []string
		ok      bool
	}{
		{"block on top", a + b + admin, both, true},
		{"block at the end", admin + "\n" + a + b, both, true},
		{"block reordered", b + a + admin, both, true},
		{"block inside", adminOptions + "ssh-ed25519 AAAAF admin@x\n" +
			a + b + adminComment + "\nssh-ed25519 AAAAG admin@y", both, true},
		{"block split", a + admin + "\n" + b, both, false},
		{"managed missing", a + admin, both, false},
		{"managed extra", a + b + b + admin, both, false},
		{"managed with options", "no-pty " + a + b + admin, both, false},
		{"managed glued to admin", admin + a + b, both, false},
		{"newline added above block", a + b + admin + "\n", both, false},
		{"blank line lost", a + b + adminOptions +
			"ssh-ed25519 AAAAF admin@x\n" + adminComment +
			"ssh-ed25519 AAAAG admin@y", both, false},
		{"admin reordered", a + b + adminComment + adminOptions +
			"ssh-ed25519 AAAAF admin@x\n\nssh-ed25519 AAAAG admin@y",
			both, false},
		{"cleared", admin, nil, true},
		{"cleared, ended", admin + "\n", nil, true},
		{"not cleared", a + admin, nil, false},
	}
	for _, tc := range cases {
		state := splitState("nodeX", tc.content, admin, tc.managed)
		if (state == "") != tc.ok {
			t.Errorf("%s: state %q, want ok=%v", tc.name, state, tc.ok)
		}
	}
}

func TestSSHCheck_NeverJoinedKeepsAdminFile(t *testing.T) {
	h := &Host{Name: "nodeX", Root: t.TempDir()}
	w := &sshWorld{t: t, seeded: map[*Host]string{},
		joined: map[*Host]bool{}}
	if state := w.authKeysState(h, false, nil); state != "" {
		t.Errorf("no file, none seeded: state %q, want ok", state)
	}
	writeFile(t, h.path(authKeysRel), "x\n", 0o600)
	if state := w.authKeysState(h, false, nil); state == "" {
		t.Errorf("file where none was seeded: state ok, want a problem")
	}
	w.seeded[h] = "ssh-ed25519 AAAAA ganeti-node:x\nx"
	if state := w.authKeysState(h, false, nil); state == "" {
		t.Errorf("seeded file changed: state ok, want a problem")
	}
	writeFile(t, h.path(authKeysRel), w.seeded[h], 0o600)
	if state := w.authKeysState(h, false, nil); state != "" {
		t.Errorf("seeded file as written: state %q, want ok", state)
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
