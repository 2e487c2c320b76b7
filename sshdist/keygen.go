package sshdist

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"ganeti-node/atomicfile"
)

var (
	// ErrUnknownKeyType is returned when a key type is not one of
	// "ed25519", "ecdsa" and "rsa".
	ErrUnknownKeyType = errors.New("sshdist: unknown SSH key type")

	// ErrBadKeySize is returned when a key size does not suit its type.
	ErrBadKeySize = errors.New("sshdist: unsupported SSH key size")

	// ErrBadKeyComment is returned when a key comment holds a line break
	// or another control character.
	ErrBadKeyComment = errors.New("sshdist: invalid SSH key comment")

	// ErrNoOwnKey is returned by LoadOwnKey when the directory holds no
	// private key under any of the names KeyFileName gives.
	ErrNoOwnKey = errors.New("sshdist: no own SSH key pair")

	// ErrMultipleOwnKeys is returned by LoadOwnKey when the directory
	// holds private keys under more than one of those names.
	ErrMultipleOwnKeys = errors.New("sshdist: more than one own SSH key pair")

	// ErrKeyFileMode is returned by LoadOwnKey when the private key file
	// can be read or written by group or others.
	ErrKeyFileMode = errors.New("sshdist: private key file is not private")
)

// KeyMismatchError is returned when a public key does not belong to the
// private key it is paired with, or is not of the expected type. It
// carries the SHA-256 fingerprints as evidence.
type KeyMismatchError struct {
	Path    string // the private key file, or "" for keys in memory
	Want    string // fingerprint or type derived from the private key
	Got     string // fingerprint or type of the public key or file name
	Problem string // what does not match, e.g. "public key"
}

// Error gives both sides of the mismatch and what to do.
func (e *KeyMismatchError) Error() string {
	where := "key pair"
	if e.Path != "" {
		where = fmt.Sprintf("key pair %q", e.Path)
	}
	return fmt.Sprintf("sshdist: %s: %s is %s, want %s; restore the "+
		"matching files from a .bak copy or generate a new key pair",
		where, e.Problem, e.Got, e.Want)
}

// keyTypes lists the supported key types: the name used on the command
// line, the OpenSSH file name and the SSH algorithm names.
var keyTypes = []struct {
	name, file string
	algos      []string
}{
	{"ed25519", "id_ed25519", []string{ssh.KeyAlgoED25519}},
	{"ecdsa", "id_ecdsa", []string{
		ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521}},
	{"rsa", "id_rsa", []string{ssh.KeyAlgoRSA}},
}

// KeyFileName maps a key type ("ed25519", the default when "",
// "ecdsa" or "rsa") to the OpenSSH name of the private key file:
// id_ed25519, id_ecdsa or id_rsa. The public key file adds ".pub". It
// returns an error wrapping ErrUnknownKeyType for other types.
func KeyFileName(keyType string) (string, error) {
	if keyType == "" {
		keyType = "ed25519"
	}
	for _, t := range keyTypes {
		if t.name == keyType {
			return t.file, nil
		}
	}
	return "", fmt.Errorf("%w %q; use ed25519, ecdsa or rsa",
		ErrUnknownKeyType, keyType)
}

// GenerateKeyPair makes a new SSH key pair. keyType is "ed25519" (the
// default when "", bits must be 0 or 256), "ecdsa" (bits 256, 384 or
// 521; 0 means 256) or "rsa" (bits 2048 to 16384; 0 means 3072).
// privPEM is the private key in OpenSSH format ("OPENSSH PRIVATE KEY")
// and pubLine the authorized_keys line carrying comment, ended by
// "\n". Errors wrap ErrUnknownKeyType, ErrBadKeySize or
// ErrBadKeyComment, or come from the random source.
func GenerateKeyPair(keyType string, bits int, comment string) (
	privPEM, pubLine []byte, err error) {
	if strings.ContainsFunc(comment, isControl) {
		return nil, nil, fmt.Errorf("%w %q: control characters are not "+
			"allowed", ErrBadKeyComment, comment)
	}
	priv, err := newPrivateKey(keyType, bits)
	if err != nil {
		return nil, nil, err
	}
	block, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return nil, nil, fmt.Errorf("sshdist: encoding private key: %w", err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, nil, fmt.Errorf("sshdist: deriving public key: %w", err)
	}
	return pem.EncodeToMemory(block), authorizedLine(signer.PublicKey(), comment), nil
}

func newPrivateKey(keyType string, bits int) (crypto.Signer, error) {
	if _, err := KeyFileName(keyType); err != nil {
		return nil, err
	}
	switch keyType {
	case "ecdsa":
		curve, err := ecdsaCurve(bits)
		if err != nil {
			return nil, err
		}
		return ecdsa.GenerateKey(curve, rand.Reader)
	case "rsa":
		if bits == 0 {
			bits = 3072
		}
		if bits < 2048 || bits > 16384 {
			return nil, keySizeError(keyType, bits, "2048 to 16384")
		}
		return rsa.GenerateKey(rand.Reader, bits)
	}
	if bits != 0 && bits != 256 {
		return nil, keySizeError("ed25519", bits, "256")
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	return priv, err
}

func ecdsaCurve(bits int) (elliptic.Curve, error) {
	switch bits {
	case 0, 256:
		return elliptic.P256(), nil
	case 384:
		return elliptic.P384(), nil
	case 521:
		return elliptic.P521(), nil
	}
	return nil, keySizeError("ecdsa", bits, "256, 384 or 521")
}

func keySizeError(keyType string, bits int, want string) error {
	return fmt.Errorf("%w: %d bits for %s; use %s",
		ErrBadKeySize, bits, keyType, want)
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

// authorizedLine renders key as "type base64[ comment]\n".
func authorizedLine(key ssh.PublicKey, comment string) []byte {
	line := trimEOL(ssh.MarshalAuthorizedKey(key))
	if comment != "" {
		line = append(line, ' ')
		line = append(line, comment...)
	}
	return append(line, '\n')
}

// InstallKeyPair makes privPEM and pubLine the node's own key pair in
// dir: dir/<KeyFileName> with mode 0600 and dir/<KeyFileName>.pub with
// mode 0644. dir is created with mode 0700 if missing. It first checks
// that the two halves belong together and are of keyType, then backs up
// every existing own key file of any type with atomicfile.Backup and
// removes those of other types, so the node ends up with exactly one
// own key pair and no old key material is lost. Installing the pair
// that is already installed changes nothing.
func InstallKeyPair(dir, keyType string, privPEM, pubLine []byte,
	now time.Time) error {
	name, err := KeyFileName(keyType)
	if err != nil {
		return err
	}
	if err := checkPair("", keyType, privPEM, pubLine); err != nil {
		return err
	}
	if !bytes.HasSuffix(pubLine, []byte("\n")) {
		pubLine = append(pubLine[:len(pubLine):len(pubLine)], '\n')
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("sshdist: creating key directory %q: %w", dir, err)
	}
	priv := filepath.Join(dir, name)
	if onlyPair(dir, priv, privPEM, pubLine) {
		return nil
	}

	// Back up everything before changing anything, so that a failed
	// backup leaves the old pair in place.
	if err := backupOwnKeys(dir, now); err != nil {
		return err
	}
	if err := atomicfile.Write(priv, privPEM, 0o600); err != nil {
		return fmt.Errorf("sshdist: installing key pair: %w", err)
	}
	if err := atomicfile.Write(priv+".pub", pubLine, 0o644); err != nil {
		return fmt.Errorf("sshdist: installing key pair: %w", err)
	}
	return removeOtherKeys(dir, name)
}

// ownKeyFiles lists every file name an own key pair may use.
func ownKeyFiles() []string {
	var names []string
	for _, t := range keyTypes {
		names = append(names, t.file, t.file+".pub")
	}
	return names
}

// onlyPair reports whether priv and priv.pub already hold exactly
// these bytes and no other own key file exists.
func onlyPair(dir, priv string, privPEM, pubLine []byte) bool {
	for _, n := range ownKeyFiles() {
		p := filepath.Join(dir, n)
		if p == priv || p == priv+".pub" {
			continue
		}
		if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
			return false
		}
	}
	oldPriv, _, err1 := readRegular(priv)
	oldPub, _, err2 := readRegular(priv + ".pub")
	return err1 == nil && err2 == nil &&
		bytes.Equal(oldPriv, privPEM) && bytes.Equal(oldPub, pubLine)
}

func backupOwnKeys(dir string, now time.Time) error {
	for _, n := range ownKeyFiles() {
		p := filepath.Join(dir, n)
		if _, err := os.Lstat(p); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if _, err := backupUnique(p, now); err != nil {
			return fmt.Errorf("sshdist: backing up old key: %w; nothing "+
				"was changed, fix the cause and retry", err)
		}
	}
	return nil
}

// backupUnique backs path up like atomicfile.Backup but never replaces
// an earlier backup: when a backup with now's time stamp exists, it
// moves the time stamp on by a nanosecond until the name is free.
func backupUnique(path string, now time.Time) (string, error) {
	for range 1000 {
		if _, err := os.Lstat(backupName(path, now)); errors.Is(err, fs.ErrNotExist) {
			return atomicfile.Backup(path, now)
		}
		now = now.Add(time.Nanosecond)
	}
	return "", fmt.Errorf("no free backup name for %q", path)
}

// backupName is the name atomicfile.Backup gives the backup of path
// made at now; a test keeps the two in step.
func backupName(path string, now time.Time) string {
	return path + ".bak-" + now.UTC().Format("20060102T150405.000000000")
}

func removeOtherKeys(dir, keep string) error {
	for _, n := range ownKeyFiles() {
		if n == keep || n == keep+".pub" {
			continue
		}
		if err := atomicfile.Remove(filepath.Join(dir, n)); err != nil {
			return fmt.Errorf("sshdist: removing old key: %w", err)
		}
	}
	return nil
}

// LoadOwnKey returns a signer for the node's own key pair in dir,
// whichever of id_ed25519, id_ecdsa and id_rsa holds it. It fails with
// an error wrapping ErrNoOwnKey when there is none, ErrMultipleOwnKeys
// when there are several, ErrKeyFileMode when the private key file is
// open to group or others, and a *KeyMismatchError when the .pub file
// or the file name does not match the private key. An encrypted
// private key is refused.
func LoadOwnKey(dir string) (ssh.Signer, error) {
	name, keyType, err := findOwnKey(dir)
	if err != nil {
		return nil, err
	}
	priv := filepath.Join(dir, name)
	privPEM, mode, err := readRegular(priv)
	if err != nil {
		return nil, err
	}
	if mode&0o077 != 0 {
		return nil, fmt.Errorf("%w: %q has mode %#o; run chmod 600 on it",
			ErrKeyFileMode, priv, mode)
	}
	pubLine, _, err := readRegular(priv + ".pub")
	if err != nil {
		return nil, fmt.Errorf("%w; restore it from a .bak copy or "+
			"generate a new key pair", err)
	}
	if err := checkPair(priv, keyType, privPEM, pubLine); err != nil {
		return nil, err
	}
	return ssh.ParsePrivateKey(privPEM)
}

// findOwnKey returns the single own private key file name in dir and
// its key type.
func findOwnKey(dir string) (name, keyType string, err error) {
	var found []string
	for _, t := range keyTypes {
		_, err := os.Lstat(filepath.Join(dir, t.file))
		if err == nil {
			name, keyType = t.file, t.name
			found = append(found, t.file)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return "", "", readError(filepath.Join(dir, t.file), err)
		}
	}
	switch len(found) {
	case 0:
		return "", "", fmt.Errorf("%w in %q; generate one with join or "+
			"renew-crypto", ErrNoOwnKey, dir)
	case 1:
		return name, keyType, nil
	}
	return "", "", fmt.Errorf("%w in %q: %s; keep one pair and move the "+
		"others away", ErrMultipleOwnKeys, dir, strings.Join(found, ", "))
}

// checkPair verifies that privPEM is an unencrypted private key of
// keyType and that pubLine holds exactly its public key. path only
// names the pair in errors.
func checkPair(path, keyType string, privPEM, pubLine []byte) error {
	signer, err := ssh.ParsePrivateKey(privPEM)
	if err != nil {
		return fmt.Errorf("sshdist: parsing private key %q: %w", path, err)
	}
	want := signer.PublicKey()
	if !algoOf(keyType, want.Type()) {
		return &KeyMismatchError{Path: path, Problem: "private key type",
			Got: want.Type(), Want: keyType}
	}
	line := trimEOL(pubLine)
	if bytes.IndexByte(line, '\n') >= 0 {
		return fmt.Errorf("sshdist: public key of %q must be one line", path)
	}
	pub, _, opts, _, err := ssh.ParseAuthorizedKey(line)
	if err != nil {
		return fmt.Errorf("sshdist: parsing public key of %q: %w", path, err)
	}
	if len(opts) > 0 {
		return fmt.Errorf("sshdist: public key of %q must not have "+
			"options", path)
	}
	if !bytes.Equal(pub.Marshal(), want.Marshal()) {
		return &KeyMismatchError{Path: path, Problem: "public key",
			Got: ssh.FingerprintSHA256(pub), Want: ssh.FingerprintSHA256(want)}
	}
	return nil
}

// algoOf reports whether algo is an SSH algorithm of keyType.
func algoOf(keyType, algo string) bool {
	if keyType == "" {
		keyType = "ed25519"
	}
	for _, t := range keyTypes {
		if t.name == keyType {
			for _, a := range t.algos {
				if a == algo {
					return true
				}
			}
		}
	}
	return false
}
