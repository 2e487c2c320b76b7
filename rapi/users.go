package rapi

import (
	"bytes"
	"crypto/md5"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Realm is the realm of HTTP authentication and the middle part of
// the string whose MD5 digest is a {HA1} password:
// md5("USER:" + Realm + ":PASSWORD"), as in Ganeti.
const Realm = "Ganeti Remote API"

// Limits of the users file.
const (
	// MaxUsersFileSize bounds the users file; larger files are refused.
	MaxUsersFileSize = 1 << 20
	// MaxUserNameLen bounds a user name.
	MaxUserNameLen = 64
	// MaxPasswordLen bounds a password, given or stored.
	MaxPasswordLen = 256
)

// ErrBadUsersFile is wrapped by every error of ParseUsers and of the
// users-file editors; the message names the line.
var ErrBadUsersFile = errors.New("rapi: bad users file")

// scheme is how a password is stored.
type scheme int

const (
	schemeClear scheme = iota + 1
	schemeHA1
)

// User is one entry of the users file. The zero value matches no
// password.
type User struct {
	// Name is the user name of basic authentication.
	Name string
	// Write lets the user change the cluster; without it the user can
	// only read.
	Write bool

	scheme scheme
	// secret is the SHA-256 of a clear-text password, or the 16 bytes
	// of an HA1 digest.
	secret []byte
}

// UserInfo is what may be shown about a user: never its password.
type UserInfo struct {
	Name  string `json:"name"`
	Write bool   `json:"write"`
}

// Users is a parsed users file. The zero value has no users and so
// refuses everyone.
type Users struct {
	byName map[string]*User
}

// ParseUsers parses a users file in Ganeti's format: one user per
// line, "NAME PASSWORD [OPTIONS]", blank lines and lines starting with
// # ignored. PASSWORD is clear text (it may not start with "{"),
// "{cleartext}TEXT" or "{ha1}HEX" (scheme names in any case). OPTIONS
// is a comma-separated list of "read" and "write". Anything else, or a
// user given twice, is refused with an error wrapping ErrBadUsersFile:
// a file that is half understood grants nothing.
func ParseUsers(data []byte) (*Users, error) {
	if len(data) > MaxUsersFileSize {
		return nil, fmt.Errorf("%w: %d bytes, more than %d",
			ErrBadUsersFile, len(data), MaxUsersFileSize)
	}
	us := &Users{byName: map[string]*User{}}
	for i, line := range strings.Split(string(data), "\n") {
		u, err := parseUserLine(line)
		if err != nil {
			return nil, fmt.Errorf("%w: line %d: %w", ErrBadUsersFile, i+1, err)
		}
		if u == nil {
			continue
		}
		if us.byName[u.Name] != nil {
			return nil, fmt.Errorf("%w: line %d: user %q given twice",
				ErrBadUsersFile, i+1, u.Name)
		}
		us.byName[u.Name] = u
	}
	return us, nil
}

// parseUserLine returns the user of one line, or nil for a blank line
// or a comment.
func parseUserLine(line string) (*User, error) {
	f := strings.Fields(line)
	if len(f) == 0 || strings.HasPrefix(f[0], "#") {
		return nil, nil
	}
	if len(f) < 2 || len(f) > 3 {
		return nil, fmt.Errorf("want NAME PASSWORD [OPTIONS], got %d fields", len(f))
	}
	if err := CheckUserName(f[0]); err != nil {
		return nil, err
	}
	u := &User{Name: f[0]}
	if err := u.setPassword(f[1]); err != nil {
		return nil, fmt.Errorf("user %q: %w", u.Name, err)
	}
	if len(f) == 3 {
		if err := u.setOptions(f[2]); err != nil {
			return nil, fmt.Errorf("user %q: %w", u.Name, err)
		}
	}
	return u, nil
}

// CheckUserName returns an error unless name can be a RAPI user: not
// empty, at most MaxUserNameLen bytes of printable ASCII without
// spaces, colons (basic authentication splits at the first one) or a
// leading # (a comment).
func CheckUserName(name string) error {
	if name == "" || len(name) > MaxUserNameLen {
		return fmt.Errorf("user name must have 1 to %d characters", MaxUserNameLen)
	}
	if strings.HasPrefix(name, "#") {
		return fmt.Errorf("user name %q starts with #", name)
	}
	for _, r := range name {
		if r <= ' ' || r > '~' || r == ':' {
			return fmt.Errorf("user name %q: only printable ASCII without "+
				"spaces and colons", name)
		}
	}
	return nil
}

func (u *User) setPassword(field string) error {
	if len(field) > MaxPasswordLen+len("{cleartext}") {
		return errors.New("password too long")
	}
	if !strings.HasPrefix(field, "{") {
		u.scheme, u.secret = schemeClear, clearSecret(field)
		return nil
	}
	end := strings.Index(field, "}")
	if end < 0 {
		return errors.New("password starts with { but has no scheme; " +
			"write {cleartext}PASSWORD or {ha1}HEX")
	}
	value := field[end+1:]
	switch strings.ToLower(field[1:end]) {
	case "cleartext":
		if value == "" {
			return errors.New("empty password")
		}
		u.scheme, u.secret = schemeClear, clearSecret(value)
	case "ha1":
		sum, err := hex.DecodeString(value)
		if err != nil || len(sum) != md5.Size {
			return errors.New("{ha1} needs 32 hexadecimal digits")
		}
		u.scheme, u.secret = schemeHA1, sum
	default:
		return fmt.Errorf("unknown password scheme %q", field[1:end])
	}
	return nil
}

func (u *User) setOptions(field string) error {
	for _, opt := range strings.Split(field, ",") {
		switch opt {
		case "write":
			u.Write = true
		case "read":
		default:
			return fmt.Errorf("unknown option %q: use read or write", opt)
		}
	}
	return nil
}

func clearSecret(password string) []byte {
	sum := sha256.Sum256([]byte(password))
	return sum[:]
}

// HA1 returns md5("user:Ganeti Remote API:password") in lowercase hex,
// the value of a "{ha1}" password.
func HA1(user, password string) string {
	return hex.EncodeToString(ha1Sum(user, password))
}

func ha1Sum(user, password string) []byte {
	sum := md5.Sum([]byte(user + ":" + Realm + ":" + password))
	return sum[:]
}

// matches reports whether password is u's, in time that does not
// depend on how much of it is right.
func (u *User) matches(password string) bool {
	var got []byte
	switch u.scheme {
	case schemeClear:
		got = clearSecret(password)
	case schemeHA1:
		got = ha1Sum(u.Name, password)
	default:
		return false
	}
	return subtle.ConstantTimeCompare(got, u.secret) == 1
}

// dummy makes a refusal of an unknown user cost as much as a wrong
// password, so that timing does not tell which names exist.
var dummy = &User{Name: "unknown", scheme: schemeHA1, secret: make([]byte, md5.Size)}

// Authenticate returns the user whose name and password match, or
// nil. It may be called on a nil or zero Users, which match nobody.
func (us *Users) Authenticate(name, password string) *User {
	var u *User
	if us != nil {
		u = us.byName[name]
	}
	if u == nil || len(password) > MaxPasswordLen {
		dummy.matches(password)
		return nil
	}
	if !u.matches(password) {
		return nil
	}
	return u
}

// List returns every user's name and access, sorted by name.
func (us *Users) List() []UserInfo {
	out := []UserInfo{}
	if us == nil {
		return out
	}
	for _, u := range us.byName {
		out = append(out, UserInfo{Name: u.Name, Write: u.Write})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// UserLine returns the users-file line for name with a hashed ({ha1})
// password, followed by " write" when write is set, without a newline.
func UserLine(name, password string, write bool) (string, error) {
	if err := CheckUserName(name); err != nil {
		return "", fmt.Errorf("%w: %w", ErrBadUsersFile, err)
	}
	if password == "" || len(password) > MaxPasswordLen {
		return "", fmt.Errorf("%w: password must have 1 to %d bytes",
			ErrBadUsersFile, MaxPasswordLen)
	}
	line := name + " {HA1}" + HA1(name, password)
	if write {
		line += " write"
	}
	return line, nil
}

// SetUser returns data with the line of user name replaced by line,
// or line appended when name has none. Other lines, comments included,
// are kept as they are. The result is parsed again before it is
// returned.
func SetUser(data []byte, name, line string) ([]byte, error) {
	lines, found := withoutUser(data, name)
	if found < 0 {
		found = len(lines)
	}
	lines = append(lines[:found], append([]string{line}, lines[found:]...)...)
	return reparse(lines)
}

// RemoveUser returns data without the line of user name, and whether
// there was one. The result is parsed again before it is returned.
func RemoveUser(data []byte, name string) ([]byte, bool, error) {
	lines, found := withoutUser(data, name)
	out, err := reparse(lines)
	return out, found >= 0, err
}

// withoutUser splits data into lines, drops those of user name and
// returns the index of the first dropped line (-1 if none).
func withoutUser(data []byte, name string) ([]string, int) {
	text := strings.TrimSuffix(string(data), "\n")
	var lines []string
	if text != "" {
		lines = strings.Split(text, "\n")
	}
	found := -1
	kept := lines[:0]
	for _, l := range lines {
		if f := strings.Fields(l); len(f) > 0 && f[0] == name {
			if found < 0 {
				found = len(kept)
			}
			continue
		}
		kept = append(kept, l)
	}
	return kept, found
}

func reparse(lines []string) ([]byte, error) {
	var b bytes.Buffer
	for _, l := range lines {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	if _, err := ParseUsers(b.Bytes()); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
