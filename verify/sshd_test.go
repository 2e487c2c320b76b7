package verify

import (
	"slices"
	"testing"
)

func TestSSHDKeySources_ExpandsAsSSHD(t *testing.T) {
	cases := []struct {
		name      string
		out       string
		wantFiles []string
		wantCmd   string
	}{
		{"debian default", "port 22\nauthorizedkeysfile .ssh/authorized_keys " +
			".ssh/authorized_keys2\nauthorizedkeyscommand none\n",
			[]string{"/root/.ssh/authorized_keys",
				"/root/.ssh/authorized_keys2"}, ""},
		{"absolute under a test root",
			"authorizedkeysfile /tmp/gn1/root/.ssh/authorized_keys\n",
			[]string{"/tmp/gn1/root/.ssh/authorized_keys"}, ""},
		{"tokens", "authorizedkeysfile /etc/ssh/keys/%u %h/k %%x/%U\n",
			[]string{"/etc/ssh/keys/root", "/root/k", "/root/%x/0"}, ""},
		{"none", "authorizedkeysfile none\n", nil, ""},
		{"command", "authorizedkeysfile .ssh/authorized_keys\n" +
			"authorizedkeyscommand /usr/bin/fetch %u\n",
			[]string{"/root/.ssh/authorized_keys"}, "/usr/bin/fetch %u"},
		{"absent", "port 22\n", nil, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			files, cmd := SSHDKeySources([]byte(tc.out), "/root")
			if !slices.Equal(files, tc.wantFiles) {
				t.Errorf("files: got %q, want %q", files, tc.wantFiles)
			}
			if cmd != tc.wantCmd {
				t.Errorf("command: got %q, want %q", cmd, tc.wantCmd)
			}
		})
	}
}

func TestSecretFile_Classifies(t *testing.T) {
	cases := []struct {
		path string
		want bool
	}{
		{"/var/lib/ganeti/ca-key.pem", true},
		{"/var/lib/ganeti/client.pem.bak-20300101T000000.000000000", true},
		{"/var/lib/ganeti/client.key.pending", true},
		{"/var/lib/ganeti/ganeti_pub_keys", true},
		{"/var/lib/ganeti/ca.pem", false},
		{"/var/lib/ganeti/known_hosts", false},
		{"/var/lib/ganeti/ssconf_node_list", false},
		{"/root/.ssh/id_ed25519", true},
		{"/root/.ssh/id_rsa.bak-20300101T000000.000000000", true},
		{"/root/.ssh/id_ed25519.pub", false},
		{"/root/.ssh/id_ed25519.pub.bak-20300101T000000.000000000", false},
		{"/root/.ssh/authorized_keys", false},
	}
	for _, tc := range cases {
		if got := secretFile(tc.path); got != tc.want {
			t.Errorf("secretFile(%q): got %v, want %v", tc.path, got, tc.want)
		}
	}
}
