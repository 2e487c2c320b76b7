// Package verify turns what the master gathered about every node into
// findings: errors and warnings with stable codes, as printed by
// `ganeti-node cluster verify`.
//
// Security role: verify is how an operator learns whether the security
// boundary holds: that only master candidates can log in over SSH and
// hold the candidate-only files, that every candidate-map entry is the
// certificate its node really presents, that no node carries another
// node's identity, and that every node follows the committed
// configuration. The package gathers nothing itself: Check is a pure
// function of Facts, which the daemon collects over the secured RPC
// and over SSH. A node that lies about itself can fool verify; what
// verify catches is drift, mistakes and leftovers, not a compromised
// host that hides its tracks.
//
// Every Code is documented in Codes and in the README; codes never
// change meaning once released, so scripts may match on them.
package verify
