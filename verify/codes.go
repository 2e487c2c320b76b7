package verify

// Severity says whether a finding fails the verify (Error) or only
// draws attention (Warning).
type Severity int

// The severities. The zero value is Error, the safe default.
const (
	Error Severity = iota
	Warning
)

// String returns "error" or "warning".
func (s Severity) String() string {
	if s == Warning {
		return "warning"
	}
	return "error"
}

// Code identifies one kind of finding. Codes are stable: a script may
// match on them.
type Code string

// Reachability.
const (
	NodeUnreachable    Code = "NODE_UNREACHABLE"
	NodeRPCUnreachable Code = "NODE_RPC_UNREACHABLE"
	NodeSSHUnreachable Code = "NODE_SSH_UNREACHABLE"
	NodeReportFailed   Code = "NODE_REPORT_FAILED"
	NodeIdentity       Code = "NODE_IDENTITY_MISMATCH"
)

// SSH.
const (
	SSHLoginFailed      Code = "SSH_LOGIN_FAILED"
	SSHLoginUnchecked   Code = "SSH_LOGIN_UNCHECKED"
	SSHHostKeyMismatch  Code = "SSH_HOST_KEY_MISMATCH"
	SSHHostKeyUnknown   Code = "SSH_HOST_KEY_UNKNOWN"
	SSHHostKeyUnchecked Code = "SSH_HOST_KEY_UNCHECKED"
	AuthKeysNormalKey   Code = "AUTHKEYS_NORMAL_NODE_KEY"
	AuthKeysStale       Code = "AUTHKEYS_STALE_MANAGED_KEY"
	AuthKeysUnreadable  Code = "AUTHKEYS_UNREADABLE"
	PubKeysStale        Code = "PUBKEYS_STALE_ENTRY"
	PubKeysNotPotential Code = "PUBKEYS_NOT_POTENTIAL"
	PubKeysMissingEntry Code = "PUBKEYS_MISSING_ENTRY"
	PubKeysKeyMismatch  Code = "PUBKEYS_KEY_MISMATCH"
	PubKeysMisplaced    Code = "PUBKEYS_FILE_MISPLACED"
	PubKeysMissing      Code = "PUBKEYS_FILE_MISSING"
	PubKeysInvalid      Code = "PUBKEYS_INVALID"
	SSHKeyMissing       Code = "SSH_OWN_KEY_MISSING"
	SSHDAuthKeysFile    Code = "SSHD_AUTHKEYS_FILE"
	SSHDAuthKeysCommand Code = "SSHD_AUTHKEYS_COMMAND"
	SSHDUnchecked       Code = "SSHD_CONFIG_UNCHECKED"
)

// Certificates.
const (
	CertMissing        Code = "CERT_MISSING"
	CertWrongNode      Code = "CERT_WRONG_NODE"
	CertDuplicate      Code = "CERT_DUPLICATE"
	CertSelfSigned     Code = "CERT_SELF_SIGNED"
	CertUnknownCA      Code = "CERT_UNKNOWN_CA"
	CertExpired        Code = "CERT_EXPIRED"
	CertExpiring       Code = "CERT_EXPIRING"
	CertDigestMismatch Code = "CERT_DIGEST_MISMATCH"
	CertMapMissing     Code = "CERT_MAP_MISSING"
	CertMapNotMC       Code = "CERT_MAP_NOT_CANDIDATE"
	CertNotLoaded      Code = "CERT_NOT_LOADED"
)

// Leaks, hygiene and replication.
const (
	FileCAKeyLeak    Code = "FILE_CA_KEY_LEAK"
	FileCAKeyMissing Code = "FILE_CA_KEY_MISSING"
	FileRAPILeak     Code = "FILE_RAPI_LEAK"
	FileMode         Code = "FILE_MODE"
	RaftMembership   Code = "RAFT_MEMBERSHIP"
	RaftUnchecked    Code = "RAFT_UNCHECKED"
	ConfigLag        Code = "CONFIG_LAG"
)

// CodeInfo documents one code: its fixed severity and what it means.
type CodeInfo struct {
	Code     Code
	Severity Severity
	// Summary says, in one sentence, what was found and what to do.
	Summary string
}

// renewFix is the advice for a certificate the CA did not sign.
const renewFix = "run `ganeti-node cluster renew-crypto " +
	"--new-node-certificates`"

// Codes lists every code in the order the README documents them.
var Codes = []CodeInfo{
	{NodeUnreachable, Error, "neither the node's daemon (RPC) nor its sshd " +
		"answered; nothing else is checked on it"},
	{NodeRPCUnreachable, Error, "the node's daemon did not answer over " +
		"the secured RPC (SSH did); start the daemon"},
	{NodeSSHUnreachable, Error, "the master could not connect to the " +
		"node's sshd (the daemon answered); check sshd and the network"},
	{NodeReportFailed, Error, "the ssh-update helper failed on the node " +
		"(wrong cluster, missing binary)"},
	{NodeIdentity, Error, "the daemon at the node's address reports " +
		"another node identity than the configuration"},
	{SSHLoginFailed, Error, "a master candidate cannot log in to the " +
		"node over SSH with its own key"},
	{SSHLoginUnchecked, Warning, "a master candidate could not be " +
		"asked to try its SSH logins"},
	{SSHHostKeyMismatch, Error, "the node's sshd offers a host key that " +
		"known_hosts does not pin for it"},
	{SSHHostKeyUnknown, Error, "known_hosts lists no host key for the node"},
	{SSHHostKeyUnchecked, Warning, "the node's host key could not be read"},
	{AuthKeysNormalKey, Warning, "the node's authorized_keys holds the " +
		"key of a node that is not a master candidate, in a line " +
		"ganeti-node does not manage"},
	{AuthKeysStale, Error, "a line ganeti-node manages in the node's " +
		"authorized_keys holds a key of no current master candidate"},
	{AuthKeysUnreadable, Error, "the node's managed authorized_keys " +
		"file cannot be read"},
	{PubKeysStale, Error, "the node's ganeti_pub_keys holds a key of a " +
		"node that is not in the cluster"},
	{PubKeysNotPotential, Error, "the node's ganeti_pub_keys holds a key " +
		"of a node that is not a potential master candidate"},
	{PubKeysMissingEntry, Error, "the node's ganeti_pub_keys lacks a " +
		"potential master candidate"},
	{PubKeysKeyMismatch, Error, "the node's ganeti_pub_keys holds " +
		"another key for a node than the key that node has"},
	{PubKeysMisplaced, Error, "ganeti_pub_keys exists on a node that is " +
		"not a potential master candidate"},
	{PubKeysMissing, Error, "ganeti_pub_keys is missing on a potential " +
		"master candidate"},
	{PubKeysInvalid, Error, "the node's ganeti_pub_keys cannot be parsed"},
	{SSHKeyMissing, Error, "the node has no usable own SSH key pair"},
	{SSHDAuthKeysFile, Warning, "the node's sshd would not read the " +
		"authorized_keys file the cluster manages (sshd -T)"},
	{SSHDAuthKeysCommand, Warning, "the node's sshd also asks an " +
		"AuthorizedKeysCommand, which ganeti-node does not manage"},
	{SSHDUnchecked, Warning, "the node could not run `sshd -T` to show " +
		"which authorized_keys files sshd reads"},
	{CertMissing, Error, "the node has no readable client or server " +
		"certificate"},
	{CertWrongNode, Error, "the node's client certificate names another " +
		"node: it uses another node's certificate"},
	{CertDuplicate, Error, "two nodes present the same client certificate"},
	{CertSelfSigned, Error, "the node's certificate is self-signed; " +
		renewFix},
	{CertUnknownCA, Error, "the node's certificate is not signed by the " +
		"current cluster CA; " + renewFix},
	{CertExpired, Error, "a certificate has expired; " + renewFix},
	{CertExpiring, Warning, "a certificate expires within 30 days; " +
		renewFix},
	{CertDigestMismatch, Error, "a master candidate's client certificate " +
		"differs from its candidate-map entry"},
	{CertMapMissing, Error, "a master candidate has no candidate-map entry"},
	{CertMapNotMC, Error, "the candidate map has an entry for a node " +
		"that is not a current master candidate"},
	{CertNotLoaded, Warning, "the daemon runs with another client " +
		"certificate than client.pem holds (it changed on disk)"},
	{FileCAKeyLeak, Error, "the CA private key is on a node that is not " +
		"a master candidate"},
	{FileCAKeyMissing, Error, "a master candidate lacks the CA private key"},
	{FileRAPILeak, Error, "RAPI files (rapi.pem, rapi_users) are on a " +
		"node that is not a master candidate"},
	{FileMode, Error, "a secret file is readable or writable by others " +
		"than its owner (mode wider than 0600)"},
	{RaftMembership, Error, "the Raft configuration differs from the " +
		"roles: voters must be the master candidates"},
	{RaftUnchecked, Warning, "the Raft configuration could not be read"},
	{ConfigLag, Error, "the node has not applied the master's latest " +
		"configuration"},
}

// SeverityOf returns the fixed severity of code; unknown codes are
// errors.
func SeverityOf(code Code) Severity {
	for _, c := range Codes {
		if c.Code == code {
			return c.Severity
		}
	}
	return Error
}
