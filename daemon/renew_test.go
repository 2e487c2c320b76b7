package daemon

import (
	"strings"
	"testing"

	"ganeti-node/fsm"
)

func TestRenewArgs_Check(t *testing.T) {
	managed := &fsm.State{Cluster: fsm.Cluster{ModifySSHSetup: true,
		SSHKeyType: "ed25519"}}
	shared := &fsm.State{Cluster: fsm.Cluster{SSHKeyType: "ed25519"}}
	tests := []struct {
		name string
		s    *fsm.State
		a    RenewArgs
		want string // "" for success, else a part of the error
	}{
		{"nothing", managed, RenewArgs{}, "nothing to renew"},
		{"certs", managed, RenewArgs{NewNodeCertificates: true}, ""},
		{"ca", managed, RenewArgs{NewClusterCertificate: true}, ""},
		{"ssh", managed, RenewArgs{NewSSHKeys: true}, ""},
		{"type without keys", managed,
			RenewArgs{NewNodeCertificates: true, SSHKeyType: "rsa"}, "only go with"},
		{"bad type", managed, RenewArgs{NewSSHKeys: true, SSHKeyType: "dsa"},
			"--ssh-key-type"},
		{"bad rsa size", managed,
			RenewArgs{NewSSHKeys: true, SSHKeyType: "rsa", SSHKeyBits: 1024},
			"2048 to 16384"},
		{"bad ecdsa size", managed,
			RenewArgs{NewSSHKeys: true, SSHKeyType: "ecdsa", SSHKeyBits: 300},
			"--ssh-key-bits"},
		{"management off", shared, RenewArgs{NewSSHKeys: true},
			"--enable-ssh-management"},
		{"migration", shared,
			RenewArgs{NewSSHKeys: true, EnableSSHManagement: true}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := tt.a
			err := a.check(tt.s)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("got %v, want success", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("got %v, want an error with %q", err, tt.want)
			case err == nil && a.NewSSHKeys && a.SSHKeyType == "":
				t.Fatalf("key type left empty, want the cluster's")
			}
		})
	}
}

func TestRenewRun_SharedKey(t *testing.T) {
	k1 := "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHhyEyKeUdKW3jFvNsvdEefSZW5iVAPwrKQZTxCnh4oK"
	k2 := "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAID61tQ2cinm/GtT8DEXzxEkW8H7veUgJrzKeM3oV5Kz7"
	r := &renewRun{a: RenewArgs{NewSSHKeys: true}, status: map[string]*nodeRenewal{
		"a": {oldKey: k1 + " root@a"}, "b": {oldKey: k1 + " other"},
		"c": {oldKey: k2}, "d": {}}}
	if got, n := r.sharedKey(); got != k1 || n != 2 {
		t.Fatalf("sharedKey: got %q, %d; want %q, 2", got, n, k1)
	}
	if w := r.sharedKeyWarning(); !strings.Contains(w, "2 nodes shared") ||
		!strings.Contains(w, "SHA256:") {
		t.Fatalf("warning: got %q, want the count and a fingerprint", w)
	}
	delete(r.status, "b")
	if w := r.sharedKeyWarning(); w != "" {
		t.Fatalf("warning with distinct keys: got %q, want none", w)
	}
}
