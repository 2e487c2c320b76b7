package verify

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/ssh"

	"ganeti-node/sshdist"
)

// FailureOf sorts an error of sshdist's client by what the operator
// must fix. err must not be nil.
func FailureOf(err error) *Failure {
	var unreach *sshdist.UnreachableError
	var hk *sshdist.HostKeyError
	var remote *sshdist.RemoteError
	kind := Other
	switch {
	case errors.As(err, &unreach),
		errors.Is(err, context.DeadlineExceeded):
		kind = Unreachable
	case errors.As(err, &hk), errors.Is(err, sshdist.ErrHostKeyRevoked):
		kind = HostKey
	case errors.Is(err, sshdist.ErrAuthRefused):
		kind = AuthRefused
	case errors.As(err, &remote):
		kind = Remote
	}
	return &Failure{Kind: kind, Message: err.Error()}
}

// HostKeyOf judges a host key from the outcome (nil for success) of
// an ssh-update run with sshdist's verifying client: its connection
// checked the key against known_hosts with the algorithms known_hosts
// pins, so no separate scan is needed. A refusal that comes after the
// key exchange (of the client key, or by the helper) means the host
// key was good.
func HostKeyOf(sshErr error) HostKeyResult {
	var hk *sshdist.HostKeyError
	var remote *sshdist.RemoteError
	switch {
	case sshErr == nil, errors.Is(sshErr, sshdist.ErrAuthRefused),
		errors.As(sshErr, &remote):
		return HostKeyResult{Status: HostKeyOK}
	case errors.As(sshErr, &hk) && hk.Unknown():
		return HostKeyResult{HostKeyUnknown, sshErr.Error()}
	case errors.As(sshErr, &hk),
		errors.Is(sshErr, sshdist.ErrHostKeyRevoked):
		return HostKeyResult{HostKeyMismatch, sshErr.Error()}
	}
	return HostKeyResult{HostKeyError, sshErr.Error()}
}

// SSHReportOf keeps what the checks need of an ssh-update Report: the
// own key's fingerprint, the client certificate and the existing files.
func SSHReportOf(rep *sshdist.Report) *SSHReport {
	out := &SSHReport{ClientCert: rep.ClientCert,
		PublicKeyErr: rep.PublicKeyError}
	if rep.PublicKey != "" {
		key, _, _, _, err := ssh.ParseAuthorizedKey([]byte(rep.PublicKey))
		if err != nil {
			out.PublicKeyErr = fmt.Sprintf("unusable public key: %v", err)
		} else {
			out.PublicKeyFP = ssh.FingerprintSHA256(key)
		}
	}
	for _, st := range rep.Files {
		if st.Exists {
			out.Files = append(out.Files, FileFact{st.Path, st.Mode})
		}
	}
	return out
}

// AuthKeysOf lists the keys of an authorized_keys file's content in
// file order, with the node UUID of the lines ganeti-node manages
// (comment "ganeti-node:<uuid>"). Lines that do not parse as a key are
// skipped, as sshd skips them; options do not matter.
func AuthKeysOf(content []byte) []AuthKeyFact {
	out := []AuthKeyFact{}
	for len(content) > 0 {
		key, comment, _, rest, err := ssh.ParseAuthorizedKey(content)
		if err != nil {
			return out
		}
		fact := AuthKeyFact{Fingerprint: ssh.FingerprintSHA256(key)}
		if m, ok := strings.CutPrefix(comment, sshdist.MarkerPrefix); ok {
			fact.Managed = true
			if words := strings.Fields(m); len(words) > 0 {
				fact.ManagedUUID = words[0]
			}
		}
		out = append(out, fact)
		content = rest
	}
	return out
}
