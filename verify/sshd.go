package verify

import (
	"bufio"
	"bytes"
	"path"
	"strings"
)

// SSHDKeySources reads the output of `sshd -T` (one lowercase keyword
// and its value per line) and returns the authorized_keys files sshd
// reads for root, whose home directory is home, as absolute clean
// paths, and its AuthorizedKeysCommand ("" when there is none). Tokens
// are expanded as sshd does for root: %h (home), %u (root), %U (0) and
// %%; a relative path is taken from home.
func SSHDKeySources(out []byte, home string) (files []string,
	command string) {
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		key, value, _ := strings.Cut(strings.TrimSpace(sc.Text()), " ")
		value = strings.TrimSpace(value)
		switch key {
		case "authorizedkeysfile":
			files = expandKeyFiles(value, home)
		case "authorizedkeyscommand":
			if value != "none" {
				command = value
			}
		}
	}
	return files, command
}

func expandKeyFiles(value, home string) []string {
	var files []string
	for _, f := range strings.Fields(value) {
		if f == "none" {
			continue
		}
		f = expandTokens(f, home)
		if !path.IsAbs(f) {
			f = path.Join(home, f)
		}
		files = append(files, path.Clean(f))
	}
	return files
}

// expandTokens replaces sshd's %-tokens for the user root.
func expandTokens(s, home string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		i++
		switch s[i] {
		case 'h':
			b.WriteString(home)
		case 'u':
			b.WriteString("root")
		case 'U':
			b.WriteString("0")
		case '%':
			b.WriteByte('%')
		default:
			b.WriteByte('%')
			b.WriteByte(s[i])
		}
	}
	return b.String()
}
