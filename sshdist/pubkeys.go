package sshdist

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"

	"golang.org/x/crypto/ssh"

	"ganeti-node/atomicfile"
)

var (
	// ErrNoPubKeysFile is returned by ReadPubKeys when the public keys
	// file does not exist.
	ErrNoPubKeysFile = errors.New("sshdist: public keys file does not exist")

	// ErrInvalidPubKeyEntry is returned by WritePubKeys when an entry has
	// no key or a UUID that is not a lowercase RFC 4122 string.
	ErrInvalidPubKeyEntry = errors.New("sshdist: invalid public key entry")
)

// PubKeyEntry is one line of ganeti_pub_keys, "NODE_UUID KEYLINE": the
// SSH public key of the node with that UUID. A node may have several
// entries while its key is being replaced.
type PubKeyEntry struct {
	UUID string
	Key  ssh.PublicKey
}

// PubKeysLineError is returned when a line of a public keys file cannot
// be parsed; it names the line so an operator can fix it.
type PubKeysLineError struct {
	Path string // the file, or "" when parsing bytes
	Line int    // 1-based line number
	Err  error  // what is wrong with the line
}

// Error names the file and line and says what to do.
func (e *PubKeysLineError) Error() string {
	where := "public keys"
	if e.Path != "" {
		where = fmt.Sprintf("public keys file %q", e.Path)
	}
	return fmt.Sprintf("sshdist: %s line %d: %v; fix or remove the line",
		where, e.Line, e.Err)
}

// Unwrap returns the cause.
func (e *PubKeysLineError) Unwrap() error { return e.Err }

// ParsePubKeys parses the content of a ganeti_pub_keys file. Each
// non-blank line must be a lowercase RFC 4122 node UUID, then spaces or
// tabs, then a key as "type base64" with an optional comment that is
// ignored; options are refused. Lines may end in "\r\n". The first bad
// line stops parsing with a *PubKeysLineError.
func ParsePubKeys(content []byte) ([]PubKeyEntry, error) {
	var entries []PubKeyEntry
	for i, line := range splitLines(content) {
		line = bytes.TrimSuffix(trimEOL(line), []byte("\r"))
		if len(bytes.Trim(line, " \t")) == 0 {
			continue
		}
		e, err := parsePubKeyLine(line)
		if err != nil {
			return nil, &PubKeysLineError{Line: i + 1, Err: err}
		}
		entries = append(entries, e)
	}
	return entries, nil
}

func parsePubKeyLine(line []byte) (PubKeyEntry, error) {
	uuid, keyText := line, []byte(nil)
	if i := bytes.IndexAny(line, " \t"); i >= 0 {
		uuid, keyText = line[:i], bytes.TrimLeft(line[i:], " \t")
	}
	if !validUUID(string(uuid)) {
		return PubKeyEntry{}, fmt.Errorf(
			"node UUID %q is not a lowercase RFC 4122 UUID", uuid)
	}
	if len(keyText) == 0 {
		return PubKeyEntry{}, errors.New("no key after the node UUID")
	}
	key, _, opts, _, err := ssh.ParseAuthorizedKey(keyText)
	if err != nil {
		return PubKeyEntry{}, fmt.Errorf("parsing key: %w", err)
	}
	if len(opts) > 0 {
		return PubKeyEntry{}, fmt.Errorf("options %q are not allowed here",
			strings.Join(opts, ","))
	}
	return PubKeyEntry{UUID: string(uuid), Key: key}, nil
}

// FormatPubKeys renders entries as the content of a ganeti_pub_keys
// file: one "UUID type base64" line each, ended by "\n", sorted by UUID
// and then by the key's wire encoding, without repeats. Entries with no
// key or an invalid UUID are left out; WritePubKeys refuses them.
func FormatPubKeys(entries []PubKeyEntry) []byte {
	type row struct{ uuid, wire, line string }
	rows := make([]row, 0, len(entries))
	for _, e := range entries {
		if e.check() != nil {
			continue
		}
		line := trimEOL(ssh.MarshalAuthorizedKey(e.Key))
		rows = append(rows, row{e.UUID, string(e.Key.Marshal()), string(line)})
	}
	slices.SortFunc(rows, func(a, b row) int {
		return cmp.Or(cmp.Compare(a.uuid, b.uuid), cmp.Compare(a.wire, b.wire))
	})
	rows = slices.CompactFunc(rows, func(a, b row) bool {
		return a.uuid == b.uuid && a.wire == b.wire
	})
	var buf bytes.Buffer
	for _, r := range rows {
		buf.WriteString(r.uuid + " " + r.line + "\n")
	}
	return buf.Bytes()
}

func (e PubKeyEntry) check() error {
	if e.Key == nil {
		return fmt.Errorf("%w: node %q has no key", ErrInvalidPubKeyEntry, e.UUID)
	}
	if !validUUID(e.UUID) {
		return fmt.Errorf("%w: node UUID %q is not a lowercase RFC 4122 UUID",
			ErrInvalidPubKeyEntry, e.UUID)
	}
	return nil
}

// ReadPubKeys reads and parses the public keys file at path. A missing
// file gives a nil slice and an error wrapping ErrNoPubKeysFile; a bad
// line gives a *PubKeysLineError naming path and the line.
func ReadPubKeys(path string) ([]PubKeyEntry, error) {
	content, _, err := readRegular(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %q; add the node's key with join or "+
			"promote, or copy the file from the master", ErrNoPubKeysFile, path)
	}
	if err != nil {
		return nil, err
	}
	entries, err := ParsePubKeys(content)
	var lineErr *PubKeysLineError
	if errors.As(err, &lineErr) {
		lineErr.Path = path
	}
	return entries, err
}

// WritePubKeys replaces the public keys file at path with entries, as
// FormatPubKeys renders them, atomically and with mode 0600. It returns
// an error wrapping ErrInvalidPubKeyEntry, and writes nothing, when an
// entry has no key or an invalid UUID.
func WritePubKeys(path string, entries []PubKeyEntry) error {
	for i, e := range entries {
		if err := e.check(); err != nil {
			return fmt.Errorf("%w (entry %d of %d)", err, i+1, len(entries))
		}
	}
	if err := atomicfile.Write(path, FormatPubKeys(entries), 0o600); err != nil {
		return fmt.Errorf("sshdist: writing public keys: %w", err)
	}
	return nil
}

// KeysFor returns the keys entries hold for the node uuid, in entry
// order and without repeats; nil when there are none.
func KeysFor(entries []PubKeyEntry, uuid string) []ssh.PublicKey {
	var keys []ssh.PublicKey
	seen := make(map[string]bool)
	for _, e := range entries {
		if e.UUID != uuid || e.Key == nil {
			continue
		}
		if wire := string(e.Key.Marshal()); !seen[wire] {
			seen[wire] = true
			keys = append(keys, e.Key)
		}
	}
	return keys
}
