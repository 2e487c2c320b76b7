package sshdist

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// errScanned stops a handshake once the host key has been seen.
var errScanned = errors.New("sshdist: host key captured")

// HostKeyPolicy says what the SSH client does with a host that the
// cluster's known_hosts does not list. A host listed with other keys
// than the one it offers is refused under every policy.
type HostKeyPolicy int

const (
	// VerifyHostKey, the zero value, accepts only a host key that
	// known_hosts lists for the host.
	VerifyHostKey HostKeyPolicy = iota
	// RecordUnknownHostKey also accepts a host that known_hosts does not
	// list at all, and pins the key it offers there. Only join uses it,
	// for a host the operator has just named.
	RecordUnknownHostKey
)

// HostKeyError is returned when a host's key is refused. It carries the
// evidence: the key the host offered and the keys known_hosts pins for
// it (none when the host is unknown).
type HostKeyError struct {
	// Addr is the host as dialled, "ip:port".
	Addr string
	// KnownHosts is the known_hosts file consulted.
	KnownHosts string
	// Got is the SHA-256 fingerprint of the offered key.
	Got string
	// Want are the SHA-256 fingerprints known_hosts pins for the host;
	// empty when it lists no key for the host.
	Want []string
}

// Unknown reports whether the host is absent from known_hosts, as
// opposed to listed with a different key.
func (e *HostKeyError) Unknown() bool { return len(e.Want) == 0 }

func (e *HostKeyError) Error() string {
	if e.Unknown() {
		return fmt.Sprintf("sshdist: host %q offers key %s, which %q does "+
			"not list; join the node to record it, or pin it after "+
			"checking it out of band", e.Addr, e.Got, e.KnownHosts)
	}
	return fmt.Sprintf("sshdist: host %q offers key %s but %q pins %s; "+
		"if the host was reinstalled, check its new key out of band and "+
		"replace the entry, otherwise suspect impersonation",
		e.Addr, e.Got, e.KnownHosts, strings.Join(e.Want, ", "))
}

// recordMu serialises read-check-append of known_hosts within this
// process, so that parallel joins do not lose each other's lines.
var recordMu sync.Mutex

// HostKeyCallback returns an ssh.HostKeyCallback that checks host keys
// against the known_hosts file at path under policy. It reads the file
// on every call, because joins add to it while the master runs. A
// missing or unreadable file refuses every host: trust is never
// optional. Refusals are *HostKeyError values, or wrap
// ErrHostKeyRevoked for a key marked @revoked.
func HostKeyCallback(path string, policy HostKeyPolicy) ssh.HostKeyCallback {
	return func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		err := checkKnownHost(path, hostname, remote, key)
		var hkErr *HostKeyError
		if !errors.As(err, &hkErr) || !hkErr.Unknown() ||
			policy != RecordUnknownHostKey {
			return err
		}
		recordMu.Lock()
		defer recordMu.Unlock()
		// AddKnownHost refuses a key that another caller pinned for this
		// host since checkKnownHost read the file.
		if err := AddKnownHost(path, hostname, key); err != nil {
			return fmt.Errorf("sshdist: recording host key of %q: %w",
				hostname, err)
		}
		return nil
	}
}

// checkKnownHost checks key for hostname against a fresh read of path.
func checkKnownHost(path, hostname string, remote net.Addr,
	key ssh.PublicKey) error {
	check, err := knownhosts.New(path)
	if err != nil {
		return fmt.Errorf("sshdist: loading known hosts %q: %w; the "+
			"master's known_hosts must exist (it may be empty)", path, err)
	}
	err = check(hostname, remote, key)
	var keyErr *knownhosts.KeyError
	var revoked *knownhosts.RevokedError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &revoked):
		return fmt.Errorf("%w: %q offers %s, revoked in %q line %d",
			ErrHostKeyRevoked, hostname, ssh.FingerprintSHA256(key),
			path, revoked.Revoked.Line)
	case !errors.As(err, &keyErr):
		return fmt.Errorf("sshdist: checking host key of %q: %w",
			hostname, err)
	}
	hkErr := &HostKeyError{Addr: hostname, KnownHosts: path,
		Got: ssh.FingerprintSHA256(key)}
	for _, k := range keyErr.Want {
		hkErr.Want = append(hkErr.Want, ssh.FingerprintSHA256(k.Key))
	}
	return hkErr
}

// preferredHostKeyAlgos is the order offered to a host known_hosts does
// not list yet: ed25519 first, as the cluster's own keys are.
var preferredHostKeyAlgos = []string{
	ssh.KeyAlgoED25519,
	ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521,
	ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256,
}

// probeKey is a throwaway key no known_hosts can list; checking it
// makes knownhosts reveal which keys it pins for a host.
var probeKey = sync.OnceValue(func() ssh.PublicKey {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil
	}
	key, err := ssh.NewPublicKey(pub)
	if err != nil {
		return nil
	}
	return key
})

// HostKeyAlgorithms returns the host key algorithms to offer addr: the
// types of the keys the known_hosts file at path pins for it, so that a
// host with several host keys presents the pinned one rather than
// being refused for showing another type. For a host the file does not
// list (or a file that cannot be read) it returns an ed25519-first
// default order.
func HostKeyAlgorithms(path, addr string) []string {
	probe := probeKey()
	check, err := knownhosts.New(path)
	if err != nil || probe == nil {
		return slices.Clone(preferredHostKeyAlgos)
	}
	var keyErr *knownhosts.KeyError
	err = check(addr, stringAddr(addr), probe)
	if !errors.As(err, &keyErr) || len(keyErr.Want) == 0 {
		return slices.Clone(preferredHostKeyAlgos)
	}
	var algos []string
	for _, k := range keyErr.Want {
		for _, a := range algosForKeyType(k.Key.Type()) {
			if !slices.Contains(algos, a) {
				algos = append(algos, a)
			}
		}
	}
	return algos
}

// algosForKeyType maps a key type to the signature algorithms that
// prove it; RSA keys sign with SHA-2 only.
func algosForKeyType(keyType string) []string {
	if keyType == ssh.KeyAlgoRSA {
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256}
	}
	return []string{keyType}
}

// stringAddr is a net.Addr for an "ip:port" string.
type stringAddr string

func (a stringAddr) Network() string { return "tcp" }
func (a stringAddr) String() string  { return string(a) }

// ScanHostKey connects to addr ("ip:port") and returns the host key it
// presents, without trusting it and without authenticating: the
// handshake stops at the host key, so no command can run. It gives up
// after timeout (or when ctx ends). algos restricts and orders the host
// key algorithms offered (see HostKeyAlgorithms, to scan the type that
// known_hosts pins); none means ed25519 first, as the client offers to
// a host it does not know yet.
func ScanHostKey(ctx context.Context, addr string, timeout time.Duration,
	algos ...string) (ssh.PublicKey, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if len(algos) == 0 {
		algos = preferredHostKeyAlgos
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("sshdist: scanning host key of %q: %w", addr, err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	var got ssh.PublicKey
	cfg := &ssh.ClientConfig{
		User:              "host-key-scan",
		HostKeyAlgorithms: algos,
		HostKeyCallback: func(_ string, _ net.Addr, key ssh.PublicKey) error {
			got = key
			return errScanned
		},
	}
	_, _, _, err = ssh.NewClientConn(conn, addr, cfg)
	if got != nil {
		return got, nil
	}
	if ctx.Err() != nil {
		err = ctx.Err()
	}
	return nil, fmt.Errorf("sshdist: scanning host key of %q: %w", addr, err)
}
