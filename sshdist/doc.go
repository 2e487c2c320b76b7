// Package sshdist owns the SSH side of the cluster's trust: each node's
// own key pair, the ganeti_pub_keys file that lists which key belongs
// to which node, the lines this tool manages in authorized_keys, the
// cluster's known_hosts, the master's SSH client fan-out and the remote
// ssh-update helper that applies changes on a node.
//
// The security rule it serves is that only master candidates can log
// in to other nodes. A key reaches an authorized_keys file only through
// SetManagedKeys, which writes exactly the keys it is given and removes
// every other line it manages; callers pass only current master
// candidates' keys taken from the master's ganeti_pub_keys, never keys
// named in a request. Lines an administrator wrote are left byte for
// byte as they were, so an operator's own access is never lost.
//
// Managed lines are recognised by their comment, which starts with
// MarkerPrefix followed by the node UUID. The comment is only a label:
// keys are always compared by their wire encoding, never by comment.
//
// Host keys are pinned in known_hosts. AddKnownHost refuses to pin a
// second, different key for a host that already has one; replacing a
// host key is a separate, deliberate call (ReplaceKnownHost).
//
// Every file is written through package atomicfile, with its final
// permissions from the moment it exists, and a node's old key pair is
// backed up before a new one replaces it.
package sshdist
