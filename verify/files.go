package verify

import (
	"path"
	"slices"
	"strconv"
	"strings"
)

// Directories a node report lists, root-relative.
const (
	stateDir  = "/var/lib/ganeti"
	ownKeyDir = "/root/.ssh"
	caKeyPath = stateDir + "/ca-key.pem"
)

// backupMark separates a file name from the time stamp of its backup.
const backupMark = ".bak-"

// secretStateFiles are the state-directory files that hold private
// keys or credentials, and so must be 0600 or narrower. ganeti_pub_keys
// holds public keys only, but the design gives it 0600 too: it decides
// who may be authorised.
var secretStateFiles = []string{
	"ca-key.pem", "server.pem", "client.pem", "gossip.key", "rapi.pem",
	"rapi_users", "ganeti_pub_keys", "server.key.pending",
	"client.key.pending",
}

// baseName returns the name of p without a backup suffix.
func baseName(p string) string {
	base := path.Base(p)
	if i := strings.Index(base, backupMark); i > 0 {
		return base[:i]
	}
	return base
}

// secretFile reports whether the root-relative p must be 0600 or
// narrower: a secret state file, or a node's own private SSH key, or a
// backup of one of them.
func secretFile(p string) bool {
	name := baseName(p)
	switch path.Dir(p) {
	case stateDir:
		return slices.Contains(secretStateFiles, name)
	case ownKeyDir:
		return strings.HasPrefix(name, "id_") &&
			!strings.HasSuffix(name, ".pub")
	}
	return false
}

// widerThan0600 reports whether the octal mode grants any permission
// beyond owner read and write. An unparsable mode counts as wider.
func widerThan0600(mode string) bool {
	m, err := strconv.ParseUint(mode, 8, 32)
	return err != nil || m&^0o600 != 0
}

// leakedBy names the problem with a candidate-only state file on a node
// that is not a candidate, or returns "".
func leakedBy(p string) Code {
	if path.Dir(p) != stateDir {
		return ""
	}
	switch baseName(p) {
	case "ca-key.pem":
		return FileCAKeyLeak
	case "rapi.pem", "rapi_users":
		return FileRAPILeak
	}
	return ""
}

// checkFiles reports candidate-only files on other nodes, candidates
// without the CA key, and secret files with wide permissions.
func checkFiles(c *checker) {
	for _, n := range c.online() {
		files, ok := c.files(n.UUID)
		if !ok {
			continue
		}
		for _, f := range files {
			c.judgeFile(n.UUID, n.MasterCandidate, f)
		}
		if has, _ := c.hasFile(n.UUID, caKeyPath); n.MasterCandidate && !has {
			c.add(FileCAKeyMissing, n.UUID, "is a master candidate "+
				"without %s; it could not sign certificates as master",
				caKeyPath)
		}
	}
}

func (c *checker) judgeFile(id string, candidate bool, f FileFact) {
	if code := leakedBy(f.Path); code != "" && !candidate {
		c.add(code, id, "holds %s but is not a master candidate; only "+
			"candidates may (the master's reconcile removes it)", f.Path)
	}
	if secretFile(f.Path) && widerThan0600(f.Mode) {
		c.add(FileMode, id, "%s has mode %s; secret files must be 0600 "+
			"or narrower (chmod 0600 it)", f.Path, f.Mode)
	}
}
