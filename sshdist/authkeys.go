package sshdist

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/crypto/ssh"

	"ganeti-node/atomicfile"
)

var (
	// ErrNotRegularFile is returned, inside a *NotRegularError, when a
	// path that should hold a regular file holds a directory, a symbolic
	// link, a device or a pipe. Nothing is changed in that case.
	ErrNotRegularFile = errors.New("sshdist: not a regular file")

	// ErrInvalidManagedKey is returned when a ManagedKey has no key or
	// a UUID that is not a lowercase RFC 4122 string.
	ErrInvalidManagedKey = errors.New("sshdist: invalid managed key")
)

// MarkerPrefix starts the comment of every authorized_keys line this
// tool manages: "ganeti-node:<node-uuid>". A line is managed when it
// parses as a key and its comment starts with MarkerPrefix, whatever
// follows the UUID and whatever options precede the key.
const MarkerPrefix = "ganeti-node:"

// ManagedKey is a key this tool puts in authorized_keys on behalf of a
// node. UUID is the node's lowercase RFC 4122 UUID; Key must not be nil.
type ManagedKey struct {
	UUID string
	Key  ssh.PublicKey
}

// SetManagedKeys returns content changed so that its managed lines are
// exactly keys, in the given order, each written as
// "<type> <base64> ganeti-node:<uuid>" and ended by "\n". A key given
// twice is written once, for the first UUID it was given with.
//
// Every other line, including lines that do not parse, is copied byte
// for byte and in order. The managed lines are written as one block
// where the first managed line was, or at the end when there was none;
// a last line without a final newline then gets one first, so a key is
// never glued onto it. changed reports whether out differs from
// content. It returns an error wrapping ErrInvalidManagedKey, and no
// content, when a key is invalid.
func SetManagedKeys(content []byte, keys []ManagedKey) (
	out []byte, changed bool, err error) {
	block, err := managedBlock(keys)
	if err != nil {
		return nil, false, err
	}
	var buf bytes.Buffer
	buf.Grow(len(content) + len(block))
	placed := false
	for _, line := range splitLines(content) {
		if _, ok := parseManaged(line); !ok {
			buf.Write(line)
			continue
		}
		if !placed {
			buf.Write(block)
			placed = true
		}
	}
	if !placed && len(block) > 0 {
		if n := buf.Len(); n > 0 && buf.Bytes()[n-1] != '\n' {
			buf.WriteByte('\n')
		}
		buf.Write(block)
	}
	out = buf.Bytes()
	return out, !bytes.Equal(out, content), nil
}

// managedBlock validates keys and renders the managed lines for them,
// dropping repeated keys.
func managedBlock(keys []ManagedKey) ([]byte, error) {
	var block bytes.Buffer
	seen := make(map[string]bool, len(keys))
	for i, k := range keys {
		if err := k.validate(); err != nil {
			return nil, fmt.Errorf("%w (key %d of %d)", err, i+1, len(keys))
		}
		wire := string(k.Key.Marshal())
		if seen[wire] {
			continue
		}
		seen[wire] = true
		block.WriteString(managedLine(k))
	}
	return block.Bytes(), nil
}

func (k ManagedKey) validate() error {
	if k.Key == nil {
		return fmt.Errorf("%w: node %q has no key", ErrInvalidManagedKey, k.UUID)
	}
	if !validUUID(k.UUID) {
		return fmt.Errorf("%w: node UUID %q is not a lowercase RFC 4122 UUID",
			ErrInvalidManagedKey, k.UUID)
	}
	return nil
}

// Line renders k as the managed authorized_keys line this tool writes,
// newline-terminated. `authorized-keys` prints it, so that the line an
// admin installs before a join is managed (and revoked) like any other.
func (k ManagedKey) Line() string { return managedLine(k) }

// RevokeKeys returns content without every line, managed or not, that
// authorises one of revoke (compared by type and key data). It is the
// one deliberate exception to leaving the admin's lines alone, used
// when a key is known to be compromised or replaced, such as the
// shared key of a migrated cluster.
func RevokeKeys(content []byte, revoke []ssh.PublicKey) []byte {
	if len(revoke) == 0 {
		return content
	}
	gone := make(map[string]bool, len(revoke))
	for _, k := range revoke {
		gone[string(k.Marshal())] = true
	}
	var buf bytes.Buffer
	for _, line := range splitLines(content) {
		key, _, _, _, err := ssh.ParseAuthorizedKey(trimEOL(line))
		if err == nil && gone[string(key.Marshal())] {
			continue
		}
		buf.Write(line)
	}
	return buf.Bytes()
}

// managedLine renders one managed authorized_keys line.
func managedLine(k ManagedKey) string {
	line := bytes.TrimSuffix(ssh.MarshalAuthorizedKey(k.Key), []byte("\n"))
	return string(line) + " " + MarkerPrefix + k.UUID + "\n"
}

// ManagedKeys lists the keys of content's managed lines in file order,
// repeats included. The UUID of each is the word that follows
// MarkerPrefix in its comment, whatever it is. Lines that do not parse
// are skipped.
func ManagedKeys(content []byte) []ManagedKey {
	var keys []ManagedKey
	for _, line := range splitLines(content) {
		if k, ok := parseManaged(line); ok {
			keys = append(keys, k)
		}
	}
	return keys
}

// Authorizes reports whether any line of content, managed or not, with
// options or not, holds key. Keys are compared by their wire encoding.
// It errs on the side of reporting a key as present: a line that
// restricts the key (from=, command=, cert-authority) still counts, so
// a check that a revoked key is gone does not overlook it.
func Authorizes(content []byte, key ssh.PublicKey) bool {
	if key == nil {
		return false
	}
	want := key.Marshal()
	for _, line := range splitLines(content) {
		k, _, _, _, err := ssh.ParseAuthorizedKey(trimEOL(line))
		if err == nil && bytes.Equal(k.Marshal(), want) {
			return true
		}
	}
	return false
}

// UpdateAuthorizedKeys applies SetManagedKeys to the file at path and
// reports whether the file changed; an unchanged file is not rewritten.
// A missing file counts as empty and is created with mode 0600, its
// missing directories with 0700; an existing file keeps its mode. It
// returns a *NotRegularError, and changes nothing, when path is a
// directory, a symbolic link or another non-regular file.
//
// Lines authorising a key in revoke are removed whoever wrote them (see
// RevokeKeys).
func UpdateAuthorizedKeys(path string, keys []ManagedKey,
	revoke ...ssh.PublicKey) (changed bool, err error) {
	content, mode, err := readRegular(path)
	if errors.Is(err, fs.ErrNotExist) {
		content, mode = nil, 0o600
	} else if err != nil {
		return false, err
	}
	out, _, err := SetManagedKeys(RevokeKeys(content, revoke), keys)
	if err != nil {
		return false, err
	}
	if changed = !bytes.Equal(out, content); !changed {
		return false, nil
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return false, fmt.Errorf("sshdist: creating directory %q: %w", dir, err)
	}
	if err := atomicfile.Write(path, out, mode); err != nil {
		return false, fmt.Errorf("sshdist: writing authorized keys: %w", err)
	}
	return true, nil
}

// parseManaged reports whether line is a managed line and, if so,
// returns its key and the UUID from its marker.
func parseManaged(line []byte) (ManagedKey, bool) {
	key, comment, _, _, err := ssh.ParseAuthorizedKey(trimEOL(line))
	if err != nil {
		return ManagedKey{}, false
	}
	rest, ok := strings.CutPrefix(comment, MarkerPrefix)
	if !ok {
		return ManagedKey{}, false
	}
	uuid, _, _ := strings.Cut(rest, " ")
	uuid, _, _ = strings.Cut(uuid, "\t")
	return ManagedKey{UUID: uuid, Key: key}, true
}

// splitLines cuts content into lines that keep their "\n"; only the
// last line may lack it. Joining the lines gives content back.
func splitLines(content []byte) [][]byte {
	var lines [][]byte
	for len(content) > 0 {
		n := bytes.IndexByte(content, '\n') + 1
		if n == 0 {
			n = len(content)
		}
		lines = append(lines, content[:n:n])
		content = content[n:]
	}
	return lines
}

// trimEOL drops a line's "\n" so that the parsers see one line only.
func trimEOL(line []byte) []byte {
	return bytes.TrimSuffix(line, []byte("\n"))
}

// readRegular reads path and returns its content and permission bits.
// It never follows a symbolic link and never blocks on a pipe: a file
// that is not regular is refused with a *NotRegularError. A missing
// file gives an error wrapping fs.ErrNotExist.
func readRegular(path string) ([]byte, fs.FileMode, error) {
	st, err := os.Lstat(path)
	if err != nil {
		return nil, 0, readError(path, err)
	}
	if !st.Mode().IsRegular() {
		return nil, 0, &NotRegularError{Path: path, Mode: st.Mode()}
	}
	flags := os.O_RDONLY | syscall.O_NOFOLLOW | syscall.O_NONBLOCK
	f, err := os.OpenFile(path, flags, 0)
	if err != nil {
		return nil, 0, readError(path, err)
	}
	defer f.Close()
	if st, err = f.Stat(); err != nil {
		return nil, 0, readError(path, err)
	}
	if !st.Mode().IsRegular() {
		return nil, 0, &NotRegularError{Path: path, Mode: st.Mode()}
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return nil, 0, readError(path, err)
	}
	return data, st.Mode().Perm(), nil
}

// readError names path once, not twice as a wrapped *fs.PathError would.
func readError(path string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return fmt.Errorf("sshdist: reading %q: %w", path, err)
}

// NotRegularError is returned when a path that should hold a regular
// file holds something else; nothing is read or changed then. It
// matches ErrNotRegularFile with errors.Is.
type NotRegularError struct {
	Path string      // the path that was refused
	Mode fs.FileMode // what was found there
}

// Error says what was found at the path and what to do.
func (e *NotRegularError) Error() string {
	return fmt.Sprintf("sshdist: %q is a %s, not a regular file; "+
		"move it away and retry", e.Path, describeMode(e.Mode))
}

// Is makes errors.Is(err, ErrNotRegularFile) hold.
func (e *NotRegularError) Is(target error) bool {
	return target == ErrNotRegularFile
}

func describeMode(mode fs.FileMode) string {
	switch {
	case mode.IsDir():
		return "directory"
	case mode&fs.ModeSymlink != 0:
		return "symbolic link"
	case mode&fs.ModeNamedPipe != 0:
		return "named pipe"
	case mode&fs.ModeSocket != 0:
		return "socket"
	case mode&fs.ModeDevice != 0:
		return "device"
	}
	return "special file"
}

// validUUID reports whether u is a lowercase RFC 4122 UUID string
// (8-4-4-4-12 lowercase hex digits), the form node UUIDs take.
func validUUID(u string) bool {
	if len(u) != 36 {
		return false
	}
	for i := 0; i < len(u); i++ {
		c := u[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
				return false
			}
		}
	}
	return true
}
