package daemon

import (
	"bytes"
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"ganeti-node/atomicfile"
	"ganeti-node/fsm"
	"ganeti-node/rpcsec"
	"ganeti-node/sshdist"
)

// prepareCA chooses the CA that signs this run's certificates. For a
// rotation it makes a new one and, before any node can present a
// certificate it signed, makes the master trust it next to the old one
// (on disk, so a restart keeps it, and in the running identity).
func (r *renewRun) prepareCA() error {
	if !r.a.NewClusterCertificate {
		ca, err := r.d.loadCA()
		r.ca = ca
		return err
	}
	ca, key, err := rpcsec.NewCA(r.s.Cluster.Name, time.Now(), caValidity)
	if err != nil {
		return err
	}
	old, err := os.ReadFile(r.d.paths.CACert())
	if err != nil {
		return fmt.Errorf("reading the CA certificate: %w", err)
	}
	if len(old) > 0 && !bytes.HasSuffix(old, []byte("\n")) {
		old = append(old, '\n')
	}
	// The old CA stays first: loadCA signs with the first certificate
	// and ca-key.pem, which keeps the old key until the rotation ends.
	r.ca, r.caKey = ca, key
	r.bundle = append(old, ca.CertPEM...)
	if err := r.d.writeStateFile(r.d.paths.CACert(), r.bundle, 0o644); err != nil {
		return err
	}
	return r.d.reloadIdentity()
}

// signAll signs the CSRs of every active node with the run's CA. A
// node whose CSRs do not sign is marked failed.
func (r *renewRun) signAll() {
	now := time.Now()
	for _, n := range r.active() {
		st := r.status[n.UUID]
		if st.csr == nil || st.csr.ServerCSR == "" || st.csr.ClientCSR == "" {
			st.certErr = errors.New("it sent no CSRs")
			continue
		}
		sc, err := r.ca.SignServer([]byte(st.csr.ServerCSR), n.Name,
			net.ParseIP(n.PrimaryIP), now, certValidity)
		if err == nil {
			var cc []byte
			cc, err = r.ca.SignClient([]byte(st.csr.ClientCSR), n.Name,
				n.UUID, now, certValidity)
			r.certsOf[n.UUID] = &sshdist.Certs{Server: string(sc),
				Client: string(cc)}
			r.newDigest[n.UUID], _ = rpcsec.DigestPEM(cc)
		}
		if err != nil {
			st.certErr = fmt.Errorf("signing its certificates: %w", err)
			delete(r.certsOf, n.UUID)
		}
	}
}

// presentsServerCert dials n's daemon and checks that it presents the
// server certificate wantPEM, which proves it reloaded its identity.
func (r *renewRun) presentsServerCert(ctx context.Context, n *fsm.Node,
	wantPEM string) error {
	block, _ := pem.Decode([]byte(wantPEM))
	if block == nil {
		return errors.New("no server certificate to compare")
	}
	ctx, cancel := context.WithTimeout(ctx, daemonCheckTimeout)
	defer cancel()
	conn, err := rpcsec.Dial(ctx, n.RPCAddr(), r.id, rpcsec.ALPNRPC)
	if err != nil {
		return fmt.Errorf("checking its daemon: %w", err)
	}
	defer conn.Close()
	peers := conn.ConnectionState().PeerCertificates
	if len(peers) == 0 || !bytes.Equal(peers[0].Raw, block.Bytes) {
		return errNotReloaded
	}
	return nil
}

// identityFiles reads the files a node's identity is made of.
func (d *Daemon) identityFiles() (server, client, ca []byte, err error) {
	if server, err = os.ReadFile(d.paths.ServerPEM()); err != nil {
		return nil, nil, nil, err
	}
	if client, err = os.ReadFile(d.paths.ClientPEM()); err != nil {
		return nil, nil, nil, err
	}
	ca, err = os.ReadFile(d.paths.CACert())
	return server, client, ca, err
}

// checkIdentityFiles reports whether this node's certificate files
// would load, without loading them.
func (d *Daemon) checkIdentityFiles() error {
	server, client, ca, err := d.identityFiles()
	if err == nil {
		_, err = rpcsec.NewIdentity(server, client, ca)
	}
	if err != nil {
		return fmt.Errorf("the new identity files do not load: %w", err)
	}
	return nil
}

// reloadIdentity swaps the certificates and CAs on disk into the
// running identity; handshakes that start afterwards use them. It is
// what the activate endpoint should do on a node that is already
// active (see the README, issue 7).
func (d *Daemon) reloadIdentity() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.reloadIdentityLocked()
}

// reloadIdentityLocked is reloadIdentity with d.mu held.
func (d *Daemon) reloadIdentityLocked() error {
	if d.id == nil {
		return ErrNoIdentity
	}
	server, client, ca, err := d.identityFiles()
	if err != nil {
		return fmt.Errorf("reloading certificates: %w", err)
	}
	if err := d.id.Update(server, client, ca); err != nil {
		return fmt.Errorf("reloading certificates: %w", err)
	}
	d.log.Info("identity reloaded", "client_digest", d.id.ClientDigest())
	return nil
}

// writeStateFile replaces one of the master's own state files, keeping
// the old content as a backup (invariant 7).
func (d *Daemon) writeStateFile(path string, data []byte, mode os.FileMode) error {
	if _, err := atomicfile.Backup(path, time.Now()); err != nil {
		return err
	}
	return atomicfile.Write(path, data, mode)
}

// dropOldCA ends a rotation on the master: ca.pem trusts the new CA
// alone and ca-key.pem holds its key. The running identity follows.
// Reconciliation then carries both files to the other nodes.
func (r *renewRun) dropOldCA() error {
	if err := r.d.writeStateFile(r.d.paths.CAKey(), r.caKey, 0o600); err != nil {
		return err
	}
	if err := r.d.writeStateFile(r.d.paths.CACert(), r.ca.CertPEM, 0o644); err != nil {
		return err
	}
	return r.d.reloadIdentity()
}
