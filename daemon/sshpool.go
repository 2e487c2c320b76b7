package daemon

import (
	"sync"

	"ganeti-node/sshdist"
)

// sshPool holds the master's open SSH connections between operations
// (sshdist.Pool). It exists only while this node is the master and its
// own key is the one the connections logged in with.
type sshPool struct {
	mu   sync.Mutex
	pool *sshdist.Pool
}

// opSession returns a Session over the master's pooled SSH connections,
// for the operations that change nodes. A changed own key (renew-crypto
// --new-ssh-keys) retires the connections opened with the old one.
//
// cluster verify does not use it: it proves logins with fresh
// connections (verifySSHClient).
func (d *Daemon) opSession() (*sshdist.Session, error) {
	c, err := d.sshClient()
	if err != nil {
		return nil, err
	}
	sp := &d.sshPool
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if sp.pool != nil && sp.pool.KeyFingerprint() != c.KeyFingerprint() {
		d.log.Info("own SSH key changed; closing connections opened with "+
			"the old one", "old", sp.pool.KeyFingerprint(),
			"new", c.KeyFingerprint())
		sp.pool.Close()
		sp.pool = nil
	}
	if sp.pool == nil {
		sp.pool = sshdist.NewPool(c, 0)
	}
	return sp.pool.NewSession(), nil
}

// closeSSHPool closes the master's pooled connections: it lost the
// mastership or is shutting down.
func (d *Daemon) closeSSHPool() {
	sp := &d.sshPool
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if sp.pool != nil {
		d.log.Debug("closing pooled SSH connections", "dials", sp.pool.Dials())
		sp.pool.Close()
		sp.pool = nil
	}
}

// forgetSSHHost closes the pooled connection to a host that left.
func (d *Daemon) forgetSSHHost(addr string) {
	sp := &d.sshPool
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if sp.pool != nil {
		sp.pool.Forget(addr)
	}
}
