package rapi

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
	"time"
)

// ErrLooseMode is wrapped when a secret file (users or certificate) can
// be read by group or others: it is then not used at all.
var ErrLooseMode = errors.New("rapi: secret file readable by group or others")

// stamp identifies one version of a file: atomic replacement changes
// the inode, an edit in place the size or time.
type stamp struct {
	ino  uint64
	size int64
	mod  time.Time
}

// readSecret reads path if it is a regular file of at most limit
// bytes that only its owner can read, and returns its stamp.
func readSecret(path string, limit int64) ([]byte, stamp, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, stamp{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, stamp{}, err
	}
	if !st.Mode().IsRegular() {
		return nil, stamp{}, fmt.Errorf("rapi: %q is not a regular file", path)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, stamp{}, fmt.Errorf("%w: %q has mode %04o; run chmod 600",
			ErrLooseMode, path, st.Mode().Perm())
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, stamp{}, fmt.Errorf("rapi: reading %q: %w", path, err)
	}
	if int64(len(data)) > limit {
		return nil, stamp{}, fmt.Errorf("rapi: %q is larger than %d bytes", path, limit)
	}
	return data, stampOf(st), nil
}

func stampOf(st os.FileInfo) stamp {
	s := stamp{size: st.Size(), mod: st.ModTime()}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		s.ino = sys.Ino
	}
	return s
}

// currentStamp returns the stamp of path now.
func currentStamp(path string) (stamp, error) {
	st, err := os.Stat(path)
	if err != nil {
		return stamp{}, err
	}
	return stampOf(st), nil
}

// UsersFile is the users file on disk, parsed again whenever it
// changes (the master rewrites it, ssh-update replaces it on the
// other candidates). Create it with NewUsersFile; it is safe for
// concurrent use.
type UsersFile struct {
	path string

	mu    sync.Mutex
	stamp stamp
	users *Users
	err   error
}

// NewUsersFile returns the users file at path; nothing is read yet.
func NewUsersFile(path string) *UsersFile { return &UsersFile{path: path} }

// Load returns the users the file holds now. A missing, unreadable,
// loosely permitted or malformed file yields no users (everyone is
// refused) and the error saying why.
func (f *UsersFile) Load() (*Users, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if s, err := currentStamp(f.path); err == nil && s == f.stamp && f.users != nil {
		return f.users, f.err
	}
	data, s, err := readSecret(f.path, MaxUsersFileSize)
	if err == nil {
		f.users, f.err = ParseUsers(data)
	} else {
		f.users, f.err = nil, err
	}
	if f.err != nil {
		f.users = &Users{}
	}
	f.stamp = s
	return f.users, f.err
}

// maxCertFileSize bounds rapi.pem.
const maxCertFileSize = 64 << 10

// CertFile is the server certificate and key file (rapi.pem: the
// certificate chain, then the private key), loaded again whenever it
// changes. Create it with NewCertFile; it is safe for concurrent use.
type CertFile struct {
	path string

	mu    sync.Mutex
	stamp stamp
	cert  *tls.Certificate
}

// NewCertFile returns the certificate file at path; nothing is read
// yet.
func NewCertFile(path string) *CertFile { return &CertFile{path: path} }

// Load returns the certificate the file holds now, or an error if it
// is missing, readable by group or others, or not a certificate with
// its key.
func (c *CertFile) Load() (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s, err := currentStamp(c.path); err == nil && s == c.stamp && c.cert != nil {
		return c.cert, nil
	}
	data, s, err := readSecret(c.path, maxCertFileSize)
	if err != nil {
		return nil, err
	}
	cert, err := tls.X509KeyPair(data, data)
	if err != nil {
		return nil, fmt.Errorf("rapi: loading %q: %w", c.path, err)
	}
	c.cert, c.stamp = &cert, s
	return c.cert, nil
}

// TLSConfig returns the server TLS configuration: TLS 1.3 only, with
// the certificate of c, reloaded when the file changes.
func (c *CertFile) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		NextProtos: []string{"http/1.1"},
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return c.Load()
		},
	}
}
