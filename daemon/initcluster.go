package daemon

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"ganeti-node/atomicfile"
	"ganeti-node/fsm"
	"ganeti-node/rpcsec"
	"ganeti-node/sshdist"
)

// Defaults for init and join.
const (
	DefaultRPCPort    = 1811
	DefaultGossipPort = 1813
	DefaultSSHPort    = 22
	DefaultPoolSize   = 3
	DefaultKeyType    = "ed25519"
	certValidity      = 5 * 365 * 24 * time.Hour
	caValidity        = 10 * 365 * 24 * time.Hour
)

func (a *InitArgs) normalise() error {
	if a.SSHPort == 0 {
		a.SSHPort = DefaultSSHPort
	}
	if a.RPCPort == 0 {
		a.RPCPort = DefaultRPCPort
	}
	if a.GossipPort == 0 {
		a.GossipPort = DefaultGossipPort
	}
	if a.CandidatePoolSize == 0 {
		a.CandidatePoolSize = DefaultPoolSize
	}
	if a.SSHKeyType == "" {
		a.SSHKeyType = DefaultKeyType
	}
	if a.AuthorizedKeysFile == "" {
		a.AuthorizedKeysFile = sshdist.DefaultAuthorizedKeysFile
	}
	switch {
	case !fsm.ValidName(a.Cluster):
		return fmt.Errorf("invalid cluster name %q: use a host-style name", a.Cluster)
	case !fsm.ValidName(a.NodeName):
		return fmt.Errorf("invalid node name %q: use a host-style name (--node-name)", a.NodeName)
	case net.ParseIP(a.PrimaryIP) == nil:
		return fmt.Errorf("invalid primary IP %q: give --primary-ip", a.PrimaryIP)
	case a.CandidatePoolSize < 1:
		return fmt.Errorf("candidate pool size %d is below 1", a.CandidatePoolSize)
	case !filepath.IsAbs(a.AuthorizedKeysFile):
		return fmt.Errorf("authorized keys file %q is not an absolute path", a.AuthorizedKeysFile)
	}
	if _, err := sshdist.KeyFileName(a.SSHKeyType); err != nil {
		return fmt.Errorf("unsupported --ssh-key-type %q: use ed25519, ecdsa or rsa", a.SSHKeyType)
	}
	return nil
}

// initCluster creates a new cluster with this node as its master.
func (d *Daemon) initCluster(ctx context.Context, a InitArgs) (*OpResult, error) {
	if err := a.normalise(); err != nil {
		return nil, err
	}
	if _, err := os.Stat(d.paths.NodeJSON()); err == nil {
		return nil, errors.New("this node is already part of a cluster " +
			"(node.json exists); nothing changed")
	}
	nf := &NodeFile{Cluster: a.Cluster, UUID: newUUID(), Name: a.NodeName,
		PrimaryIP: a.PrimaryIP, RPCPort: a.RPCPort, GossipPort: a.GossipPort,
		SSHPort: a.SSHPort}
	node := &fsm.Node{UUID: nf.UUID, Name: nf.Name, PrimaryIP: nf.PrimaryIP,
		RPCPort: nf.RPCPort, GossipPort: nf.GossipPort, SSHPort: nf.SSHPort,
		MasterCapable: true, VMCapable: true, MasterCandidate: true}

	created, digest, err := d.initFiles(a, nf, node)
	if err != nil {
		removeAll(created)
		return nil, err
	}
	if err := d.bootstrap(ctx, a, node, digest); err != nil {
		return nil, fmt.Errorf("%w; remove %s and the raft directory to retry",
			err, d.paths.NodeJSON())
	}
	return &OpResult{Message: fmt.Sprintf("cluster %q initialised; "+
		"%s is the master", a.Cluster, a.NodeName)}, nil
}

// initFiles writes every file of the first node and returns them (for
// cleanup on failure) and the client certificate digest.
func (d *Daemon) initFiles(a InitArgs, nf *NodeFile, node *fsm.Node) ([]string, string, error) {
	var created []string
	write := func(path string, data []byte, perm os.FileMode) error {
		created = append(created, path)
		return atomicfile.Write(path, data, perm)
	}

	// SSH first: the host key of our own sshd must be known before any
	// other candidate can ever log in here, and it proves sshd is up.
	hostKey, err := sshdist.ScanHostKey(context.Background(), node.SSHAddr(), 5*time.Second)
	if err != nil {
		return nil, "", fmt.Errorf("reading the host key of this node's sshd at %s: %w; "+
			"start sshd or pass --ssh-port", node.SSHAddr(), err)
	}
	created = append(created, d.paths.KnownHosts())
	if err := sshdist.AddKnownHost(d.paths.KnownHosts(), node.SSHAddr(), hostKey); err != nil {
		return created, "", err
	}
	if !a.NoSSHInit {
		if err := d.initOwnSSHKey(a, nf, &created); err != nil {
			return created, "", err
		}
	}

	digest, err := d.initTLS(a.Cluster, nf, write)
	if err != nil {
		return created, "", err
	}
	if err := write(d.paths.GossipKey(), newGossipKey(), 0o600); err != nil {
		return created, "", err
	}
	rec, _ := json.Marshal(admissionRecord{Map: map[string]string{nf.UUID: digest}})
	if err := write(d.paths.AdmissionFile(), rec, 0o644); err != nil {
		return created, "", err
	}
	return append(created, d.paths.NodeJSON()), digest, writeNodeFile(d.paths.NodeJSON(), nf)
}

// initOwnSSHKey gives the first node its own key pair, records it in
// ganeti_pub_keys and authorises it.
func (d *Daemon) initOwnSSHKey(a InitArgs, nf *NodeFile, created *[]string) error {
	priv, pub, err := sshdist.GenerateKeyPair(a.SSHKeyType, 0, "ganeti-node@"+nf.Name)
	if err != nil {
		return err
	}
	if err := sshdist.InstallKeyPair(d.paths.SSHDir(), a.SSHKeyType, priv, pub, time.Now()); err != nil {
		return err
	}
	key, _, _, _, err := ssh.ParseAuthorizedKey(pub)
	if err != nil {
		return err
	}
	*created = append(*created, d.paths.PubKeys())
	if err := sshdist.WritePubKeys(d.paths.PubKeys(),
		[]sshdist.PubKeyEntry{{UUID: nf.UUID, Key: key}}); err != nil {
		return err
	}
	_, err = sshdist.UpdateAuthorizedKeys(d.paths.Under(a.AuthorizedKeysFile),
		[]sshdist.ManagedKey{{UUID: nf.UUID, Key: key}})
	return err
}

// initTLS creates the cluster CA and this node's certificates. The
// node's keys are made here as on any node; the CA signs their CSRs.
func (d *Daemon) initTLS(cluster string, nf *NodeFile,
	write func(string, []byte, os.FileMode) error) (string, error) {
	now := time.Now()
	ca, caKey, err := rpcsec.NewCA(cluster, now, caValidity)
	if err != nil {
		return "", err
	}
	if err := write(d.paths.CACert(), ca.CertPEM, 0o644); err != nil {
		return "", err
	}
	if err := write(d.paths.CAKey(), caKey, 0o600); err != nil {
		return "", err
	}
	server, client, err := issuePair(ca, nf.Name, nf.UUID, net.ParseIP(nf.PrimaryIP), now)
	if err != nil {
		return "", err
	}
	if err := write(d.paths.ServerPEM(), server, 0o600); err != nil {
		return "", err
	}
	if err := write(d.paths.ClientPEM(), client, 0o600); err != nil {
		return "", err
	}
	return rpcsec.DigestPEM(client)
}

// issuePair makes keys and certificates for a node locally (init only;
// joins have the node make its keys).
func issuePair(ca *rpcsec.CA, name, uuid string, ip net.IP, now time.Time) ([]byte, []byte, error) {
	sk, scsr, err := rpcsec.NewKeyAndCSR(name)
	if err != nil {
		return nil, nil, err
	}
	ck, ccsr, err := rpcsec.NewKeyAndCSR(name)
	if err != nil {
		return nil, nil, err
	}
	sc, err := ca.SignServer(scsr, name, ip, now, certValidity)
	if err != nil {
		return nil, nil, err
	}
	cc, err := ca.SignClient(ccsr, name, uuid, now, certValidity)
	if err != nil {
		return nil, nil, err
	}
	return append(sc, sk...), append(cc, ck...), nil
}

// bootstrap starts Raft as the only voter and commits the cluster.
func (d *Daemon) bootstrap(ctx context.Context, a InitArgs, node *fsm.Node, digest string) error {
	if err := d.activate(); err != nil {
		return err
	}
	if err := d.raft.Bootstrap(); err != nil {
		return err
	}
	if err := d.waitLeader(ctx, 10*time.Second); err != nil {
		return err
	}
	cl := &fsm.Cluster{Name: a.Cluster, UUID: newUUID(),
		CandidatePoolSize:              a.CandidatePoolSize,
		MasterCapabilityRapiModifiable: a.MasterCapabilityRapiModifiable,
		ModifySSHSetup:                 !a.NoSSHInit, SSHKeyType: a.SSHKeyType,
		AuthorizedKeysFile: a.AuthorizedKeysFile}
	cmd := &fsm.Command{Changes: []fsm.Change{{Op: fsm.OpInit, Cluster: cl,
		Node: node, Digest: digest}}}
	_, err := d.raft.Apply(cmd)
	return err
}

func (d *Daemon) waitLeader(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for !d.raft.IsLeader() {
		if time.Now().After(deadline) {
			return errors.New("raft did not elect this node within " + limit.String())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}

func removeAll(paths []string) {
	for _, p := range paths {
		atomicfile.Remove(p)
	}
}

// newUUID returns a random RFC 4122 version 4 UUID.
func newUUID() string {
	b := make([]byte, 16)
	rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// newGossipKey returns a fresh 32-byte AES key, base64 text so that it
// travels in JSON unchanged.
func newGossipKey() []byte {
	k := make([]byte, 32)
	rand.Read(k)
	return []byte(base64.StdEncoding.EncodeToString(k) + "\n")
}

// parseGossipKey reads a gossip.key written by newGossipKey.
func parseGossipKey(data []byte) ([]byte, error) {
	k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(data)))
	if err != nil {
		return nil, fmt.Errorf("gossip.key is not base64: %w", err)
	}
	return k, nil
}
