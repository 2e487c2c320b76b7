package sshdist

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"ganeti-node/atomicfile"
)

var (
	// ErrBadHostAddress is returned when an address cannot be written
	// into known_hosts as a plain host name: it is empty or holds
	// spaces, commas, control characters or pattern characters.
	ErrBadHostAddress = errors.New("sshdist: invalid host address")

	// ErrNoHostKey is returned when a host key to record is nil.
	ErrNoHostKey = errors.New("sshdist: no host key given")

	// ErrHostKeyRevoked is returned when a host key to record is marked
	// @revoked in the known_hosts file.
	ErrHostKeyRevoked = errors.New("sshdist: host key is revoked")
)

// HostKeyConflictError is returned by AddKnownHost when known_hosts
// already pins a different key for the host. The caller must not
// trust the offered key without an operator's decision: the host may
// have been reinstalled, or someone may be impersonating it.
type HostKeyConflictError struct {
	Path    string // the known_hosts file
	Host    string // the host as written in known_hosts
	Line    int    // 1-based line of the pinned key
	Known   string // SHA-256 fingerprint of the pinned key
	Offered string // SHA-256 fingerprint of the key offered now
}

// Error gives both fingerprints and what to do.
func (e *HostKeyConflictError) Error() string {
	return fmt.Sprintf("sshdist: host %q offers key %s but %q line %d "+
		"pins %s; if the host was reinstalled, check its new key out of "+
		"band and replace the entry, otherwise suspect impersonation",
		e.Host, e.Offered, e.Path, e.Line, e.Known)
}

// KnownHostsLine returns the known_hosts line, ended by "\n", that pins
// key for the host at addr ("ip:port"; port 22 is written as the bare
// host, other ports as "[ip]:port"). It returns "" when key is nil or
// addr is refused as AddKnownHost refuses it, so a crafted address can
// never smuggle in a second entry.
func KnownHostsLine(addr string, key ssh.PublicKey) string {
	if _, err := knownHost(addr); err != nil || key == nil {
		return ""
	}
	return knownhosts.Line([]string{addr}, key) + "\n"
}

// AddKnownHost pins key for the host at addr in the known_hosts file at
// path, creating the file if missing. The file is rewritten atomically
// with mode 0644, or left alone when it already pins this key for the
// host. It returns a *HostKeyConflictError when the file pins another
// key for the host (see ReplaceKnownHost), and errors wrapping
// ErrBadHostAddress, ErrNoHostKey or ErrHostKeyRevoked.
func AddKnownHost(path, addr string, key ssh.PublicKey) error {
	host, content, err := loadKnownHosts(path, addr, key)
	if err != nil {
		return err
	}
	found, err := findHostKey(content, host, key)
	if err != nil {
		var conflict *HostKeyConflictError
		if errors.As(err, &conflict) {
			conflict.Path = path
		}
		return err
	}
	if found {
		return nil
	}
	return writeKnownHosts(path, appendLine(content, KnownHostsLine(addr, key)))
}

// ReplaceKnownHost pins key for the host at addr in the known_hosts
// file at path in place of whatever keys it pinned before, in one
// atomic rewrite with mode 0644. Call it only once the new key has
// been checked out of band, for example after reinstalling a host. It
// returns errors wrapping ErrBadHostAddress, ErrNoHostKey or
// ErrHostKeyRevoked.
func ReplaceKnownHost(path, addr string, key ssh.PublicKey) error {
	host, content, err := loadKnownHosts(path, addr, key)
	if err != nil {
		return err
	}
	kept, _ := dropHost(content, host)
	out := appendLine(kept, KnownHostsLine(addr, key))
	if bytes.Equal(out, content) {
		return nil
	}
	return writeKnownHosts(path, out)
}

// RemoveKnownHost drops the host at addr from every plain or hashed
// entry of the known_hosts file at path; an entry that also names other
// hosts keeps them. @cert-authority and @revoked lines, patterns and
// lines that do not parse are kept. A missing file is not an error; an
// unchanged file is not rewritten.
func RemoveKnownHost(path, addr string) error {
	host, err := knownHost(addr)
	if err != nil {
		return err
	}
	content, _, err := readRegular(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	out, changed := dropHost(content, host)
	if !changed {
		return nil
	}
	return writeKnownHosts(path, out)
}

// loadKnownHosts checks the arguments and reads path; a missing file
// reads as empty.
func loadKnownHosts(path, addr string, key ssh.PublicKey) (
	host string, content []byte, err error) {
	if host, err = knownHost(addr); err != nil {
		return "", nil, err
	}
	if key == nil {
		return "", nil, fmt.Errorf("%w for %q", ErrNoHostKey, host)
	}
	content, _, err = readRegular(path)
	if errors.Is(err, fs.ErrNotExist) {
		return host, nil, nil
	}
	if err != nil {
		return "", nil, err
	}
	if revokedIn(content, key) {
		return "", nil, fmt.Errorf("%w in %q: %s offered by %q; find out "+
			"why it was revoked before trusting the host",
			ErrHostKeyRevoked, path, ssh.FingerprintSHA256(key), host)
	}
	return host, content, nil
}

func writeKnownHosts(path string, content []byte) error {
	if err := atomicfile.Write(path, content, 0o644); err != nil {
		return fmt.Errorf("sshdist: writing known hosts: %w", err)
	}
	return nil
}

// knownHost normalises addr the way known_hosts writes it and refuses
// anything that would not be read back as exactly that one host.
func knownHost(addr string) (string, error) {
	host := knownhosts.Normalize(addr)
	bad := host == "" || strings.ContainsAny(host, ",*?!|@#\"") ||
		strings.ContainsFunc(host, func(r rune) bool {
			return r <= ' ' || r == 0x7f
		})
	if bad {
		return "", fmt.Errorf("%w %q; give an IP address and port such "+
			"as 192.0.2.1:22", ErrBadHostAddress, addr)
	}
	return host, nil
}

// knownLine is one parsed known_hosts entry.
type knownLine struct {
	marker string
	hosts  []string
	key    ssh.PublicKey
}

func parseKnownLine(line []byte) (knownLine, bool) {
	marker, hosts, key, _, _, err := ssh.ParseKnownHosts(trimEOL(line))
	if err != nil {
		return knownLine{}, false
	}
	return knownLine{marker: marker, hosts: hosts, key: key}, true
}

// findHostKey reports whether content pins key for host, and returns
// a *HostKeyConflictError when it pins another key for host.
func findHostKey(content []byte, host string, key ssh.PublicKey) (
	bool, error) {
	want := key.Marshal()
	var conflict error
	for i, line := range splitLines(content) {
		l, ok := parseKnownLine(line)
		if !ok || l.marker != "" || !l.names(host) {
			continue
		}
		if bytes.Equal(l.key.Marshal(), want) {
			return true, nil
		}
		if conflict == nil {
			conflict = &HostKeyConflictError{Host: host, Line: i + 1,
				Known:   ssh.FingerprintSHA256(l.key),
				Offered: ssh.FingerprintSHA256(key)}
		}
	}
	return false, conflict
}

// Pins is known_hosts text parsed once, to look up many hosts.
type Pins struct{ lines []knownLine }

// ParsePins parses known_hosts text; lines that do not parse and
// @-marked lines (which are not pins) are left out.
func ParsePins(content []byte) *Pins {
	p := &Pins{}
	for _, line := range splitLines(content) {
		if l, ok := parseKnownLine(line); ok && l.marker == "" {
			p.lines = append(p.lines, l)
		}
	}
	return p
}

// Keys returns the keys pinned for addr, plain or hashed.
func (p *Pins) Keys(addr string) []ssh.PublicKey {
	host, err := knownHost(addr)
	if err != nil {
		return nil
	}
	var keys []ssh.PublicKey
	for _, l := range p.lines {
		if l.names(host) {
			keys = append(keys, l.key)
		}
	}
	return keys
}

// revokedIn reports whether an @revoked line of content holds key.
func revokedIn(content []byte, key ssh.PublicKey) bool {
	want := key.Marshal()
	for _, line := range splitLines(content) {
		l, ok := parseKnownLine(line)
		if ok && l.marker == "revoked" && bytes.Equal(l.key.Marshal(), want) {
			return true
		}
	}
	return false
}

// names reports whether the entry names host, plainly or hashed.
func (l knownLine) names(host string) bool {
	for _, h := range l.hosts {
		if hostMatches(h, host) {
			return true
		}
	}
	return false
}

// dropHost removes host from the plain and hashed entries of content
// (not from @-marked lines) and reports whether anything changed.
func dropHost(content []byte, host string) ([]byte, bool) {
	var out bytes.Buffer
	changed := false
	for _, line := range splitLines(content) {
		l, ok := parseKnownLine(line)
		if !ok || l.marker != "" || !l.names(host) {
			out.Write(line)
			continue
		}
		changed = true
		var rest []string
		for _, h := range l.hosts {
			if !hostMatches(h, host) {
				rest = append(rest, h)
			}
		}
		if len(rest) > 0 {
			out.Write(replaceHosts(line, strings.Join(rest, ",")))
		}
	}
	return out.Bytes(), changed
}

// replaceHosts returns line with its host field replaced by hosts. The
// line is known to parse, so the field exists.
func replaceHosts(line []byte, hosts string) []byte {
	isBlank := func(b byte) bool { return b == ' ' || b == '\t' }
	i := 0
	for i < len(line) && isBlank(line[i]) {
		i++
	}
	start := i
	for i < len(line) && !isBlank(line[i]) {
		i++
	}
	out := make([]byte, 0, len(line))
	out = append(out, line[:start]...)
	out = append(out, hosts...)
	return append(out, line[i:]...)
}

// hostMatches reports whether one host field entry is host: equal
// ignoring case, or a "|1|salt|hash" entry hashing host.
func hostMatches(entry, host string) bool {
	if strings.EqualFold(entry, host) {
		return true
	}
	parts := strings.Split(entry, "|")
	if len(parts) != 4 || parts[0] != "" || parts[1] != "1" {
		return false
	}
	salt, err1 := base64.StdEncoding.DecodeString(parts[2])
	sum, err2 := base64.StdEncoding.DecodeString(parts[3])
	if err1 != nil || err2 != nil {
		return false
	}
	mac := hmac.New(sha1.New, salt)
	mac.Write([]byte(host))
	return hmac.Equal(mac.Sum(nil), sum)
}

// appendLine adds line to content, first ending an unterminated last
// line so the two are never glued together.
func appendLine(content []byte, line string) []byte {
	out := make([]byte, 0, len(content)+len(line)+1)
	out = append(out, content...)
	if len(out) > 0 && out[len(out)-1] != '\n' {
		out = append(out, '\n')
	}
	return append(out, line...)
}

// MergeKnownHosts merges the pins of update (known_hosts text from the
// master) into the file at path: a host it names is pinned to the key
// update gives, replacing any other pin for that host; hosts it does
// not name keep their pins. Merging instead of copying means a node
// never loses a pin that a master which had not yet heard of a host
// failed to send. Lines of update that do not parse are an error and
// nothing changes.
func MergeKnownHosts(path string, update []byte) (changed bool, err error) {
	lines, err := parseKnownUpdate(update)
	if err != nil {
		return false, err
	}
	content, _, err := readRegular(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, err
	}
	out := content
	for _, l := range lines {
		if ok, _ := findHostKey(out, l.hosts[0], l.key); ok {
			continue
		}
		out, _ = dropHost(out, l.hosts[0])
		out = appendLine(out, knownhosts.Line(l.hosts, l.key)+"\n")
	}
	if bytes.Equal(out, content) {
		return false, nil
	}
	return true, writeKnownHosts(path, out)
}

// parseKnownUpdate parses the lines MergeKnownHosts takes: plain pins
// of one host each.
func parseKnownUpdate(update []byte) ([]knownLine, error) {
	var lines []knownLine
	for i, line := range splitLines(update) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		l, ok := parseKnownLine(line)
		if !ok || l.marker != "" || len(l.hosts) != 1 {
			return nil, fmt.Errorf("%w: known_hosts update line %d is not "+
				"one plain host pin", ErrBadHostAddress, i+1)
		}
		lines = append(lines, l)
	}
	return lines, nil
}
