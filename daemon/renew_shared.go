package daemon

import (
	"fmt"
	"strings"

	"golang.org/x/crypto/ssh"
)

// Migrating from a shared root key pair (text for the README).
//
// Hosts set up by hand with one root key pair on every host, each
// authorising it, and then initialised with `init --no-ssh-init` (or
// joined with `join --no-node-setup`) run with SSH management off: the
// tool never touches an SSH file. To give each node its own key pair:
//
//  1. Check that the master can log in to every node with the shared
//     key (it does so today) and that every node is up.
//  2. On the master: `ganeti-node cluster renew-crypto --new-ssh-keys
//     --enable-ssh-management`. Every node makes its own key pair and
//     backs the shared pair up (id_*.bak-TIME); authorized_keys gets
//     the candidates' new keys; SSH management is switched on in the
//     same committed change.
//  3. Remove every line that authorises the shared key, on every node
//     (the command prints its fingerprint). ganeti-node does not change
//     lines it did not write; until those lines are gone, any node
//     holding the backup can still log in everywhere.
//
// Warning: from then on normal nodes lose SSH access to other nodes;
// only master candidates can log in anywhere. Scripts that ran from a
// normal node must run from a candidate.
//
// Downgrade to the shared layout (a step back in security, for hosts
// whose tooling needs it): create one key pair, install it as the own
// key pair on every node and authorise it everywhere by hand (as
// above, in reverse), and then switch SSH management off (`cluster
// modify`, proposed). The managed lines then stay as they are; remove
// them with `ganeti-node ssh-update` Reset or by hand.

// sharedKey returns the public key line that more than one node
// reported as its own in the preflight, and how many did: the layout
// of a cluster set up by hand with one root key pair on every host.
func (r *renewRun) sharedKey() (string, int) {
	count := map[string]int{}
	best, most := "", 1
	for _, st := range r.status {
		f := strings.Fields(st.oldKey)
		if len(f) < 2 {
			continue
		}
		k := f[0] + " " + f[1]
		count[k]++
		if count[k] > most {
			best, most = k, count[k]
		}
	}
	if best == "" {
		return "", 0
	}
	return best, most
}

// sharedKeyWarning tells the operator, after a migration from a shared
// key pair, what happened to it: each node's copy was backed up and
// replaced, and the push revoked it from every authorized_keys line of
// every reachable node (admin lines included).
func (r *renewRun) sharedKeyWarning() string {
	if !r.a.NewSSHKeys {
		return ""
	}
	line, n := r.sharedKey()
	if n < 2 {
		return ""
	}
	fp := line
	if key, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line)); err == nil {
		fp = ssh.FingerprintSHA256(key)
	}
	return fmt.Sprintf("note: %d nodes shared the key pair %s; each now has "+
		"its own, keeps the shared one as a backup (id_*.bak-*), and the "+
		"shared key was revoked from every authorized_keys line of every "+
		"reachable node; unreachable nodes get it when they return", n, fp)
}
