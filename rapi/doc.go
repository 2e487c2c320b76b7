// Package rapi serves a subset of Ganeti's remote API (version 2
// paths, JSON) over HTTPS: cluster and node queries, node role changes
// and the outcome of the jobs those changes start.
//
// Security role: RAPI is the only way into the cluster that does not
// start on a master candidate's own disk, so it must never be a way
// around the rule that only master candidates control nodes. Every
// request needs HTTP basic authentication against the users file
// (rapi_users, which only candidates hold); failed logins are rate
// limited per client address; read-only users can only read; request
// bodies are size-limited and decoded strictly, so a malformed request
// changes nothing. Changes do not touch the configuration here: they
// become jobs that run the daemon's own operations (Backend.Run), the
// same code paths as the CLI, so every SSH and certificate rule still
// applies. Finally, master_capable can be changed through RAPI only
// when the committed cluster flag master_capability_rapi_modifiable
// is set, and that flag cannot be changed through RAPI at all: with
// RAPI credentials and one compromised normal node an attacker could
// otherwise make that node master-capable and then a candidate.
//
// The package knows nothing about Raft or SSH; it reaches the daemon
// only through the Backend interface, so its unit tests use a fake.
package rapi
