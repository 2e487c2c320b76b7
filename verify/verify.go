package verify

import (
	"cmp"
	"fmt"
	"slices"

	"ganeti-node/fsm"
)

// Finding is one problem found on one node.
type Finding struct {
	Code Code `json:"code"`
	// Node is the name of the node the problem is on (or, for a Raft
	// server or map entry the configuration does not know, its UUID).
	Node    string `json:"node"`
	Message string `json:"message"`
}

// Result is the outcome of a verify, as `cluster verify --output json`
// prints it. Both lists are non-nil, so they encode as [] when empty.
type Result struct {
	Errors   []Finding `json:"errors"`
	Warnings []Finding `json:"warnings"`
}

// OK reports whether r has no error; warnings do not count.
func (r *Result) OK() bool { return len(r.Errors) == 0 }

// Check runs every check on f and returns the findings, each list
// sorted by node, code and message, without repeats. f.State must be
// initialised. Check does no I/O.
func Check(f *Facts) *Result {
	c := newChecker(f)
	for _, check := range checks {
		check(c)
	}
	return c.result()
}

// checks run in this order; the order only matters for readability
// of the code, since findings are sorted.
var checks = []func(*checker){
	checkReach, checkIdentity, checkLogins, checkHostKeys,
	checkOwnKeys, checkAuthKeys, checkPubKeys, checkSSHD,
	checkCerts, checkCandidateMap, checkFiles, checkRaft, checkLag,
}

// checker holds the facts and the findings of one Check.
type checker struct {
	f        *Facts
	findings []Finding
	seen     map[Finding]bool
}

func newChecker(f *Facts) *checker {
	return &checker{f: f, seen: map[Finding]bool{}}
}

// add records a finding on the node with UUID (or name) id.
func (c *checker) add(code Code, id, format string, args ...any) {
	fd := Finding{Code: code, Node: c.name(id),
		Message: fmt.Sprintf(format, args...)}
	if !c.seen[fd] {
		c.seen[fd] = true
		c.findings = append(c.findings, fd)
	}
}

func (c *checker) result() *Result {
	r := &Result{Errors: []Finding{}, Warnings: []Finding{}}
	slices.SortFunc(c.findings, func(a, b Finding) int {
		return cmp.Or(cmp.Compare(a.Node, b.Node),
			cmp.Compare(a.Code, b.Code), cmp.Compare(a.Message, b.Message))
	})
	for _, fd := range c.findings {
		if SeverityOf(fd.Code) == Warning {
			r.Warnings = append(r.Warnings, fd)
		} else {
			r.Errors = append(r.Errors, fd)
		}
	}
	return r
}

// name returns the name of the node with UUID id, or id itself.
func (c *checker) name(id string) string {
	if n := c.f.State.Nodes[id]; n != nil {
		return n.Name
	}
	return id
}

// online returns the nodes that are verified: every node not marked
// offline, ordered by name.
func (c *checker) online() []*fsm.Node {
	var out []*fsm.Node
	for _, n := range c.f.State.SortedNodes() {
		if !n.Offline {
			out = append(out, n)
		}
	}
	return out
}

// notGathered stands in for a node the gatherer has no entry for.
var notGathered = &NodeFacts{RPCErr: "not gathered",
	SSHErr: &Failure{Kind: Unreachable, Message: "not gathered"}}

// nf returns the facts of the node with UUID id.
func (c *checker) nf(id string) *NodeFacts {
	if nf := c.f.Nodes[id]; nf != nil {
		return nf
	}
	return notGathered
}

// sshDown reports whether the master could not connect to id's sshd.
func (c *checker) sshDown(id string) bool {
	e := c.nf(id).SSHErr
	return e != nil && e.Kind == Unreachable
}

// files returns id's existing files, from SSH or else from the node's
// own report; ok is false when neither told.
func (c *checker) files(id string) (files []FileFact, ok bool) {
	nf := c.nf(id)
	switch {
	case nf.SSH != nil:
		return nf.SSH.Files, true
	case nf.Self != nil:
		return nf.Self.Files, true
	}
	return nil, false
}

// hasFile reports whether id has the root-relative file p; known is
// false when no listing is available.
func (c *checker) hasFile(id, p string) (has, known bool) {
	files, ok := c.files(id)
	if !ok {
		return false, false
	}
	return slices.ContainsFunc(files, func(f FileFact) bool {
		return f.Path == p
	}), true
}

// clientCert returns the PEM of id's client certificate; ok is false
// when neither SSH nor the node told.
func (c *checker) clientCert(id string) (pemText string, ok bool) {
	nf := c.nf(id)
	switch {
	case nf.SSH != nil:
		return nf.SSH.ClientCert, true
	case nf.Self != nil:
		return nf.Self.ClientCert, true
	}
	return "", false
}

// keyFP returns the fingerprint of id's own SSH key and why it is
// missing; both are empty when nothing is known.
func (c *checker) keyFP(id string) (fp, missing string) {
	nf := c.nf(id)
	switch {
	case nf.SSH != nil:
		return nf.SSH.PublicKeyFP, nf.SSH.PublicKeyErr
	case nf.Self != nil:
		return nf.Self.PublicKeyFP, nf.Self.PublicKeyErr
	}
	return "", ""
}

// managesSSH reports whether the cluster manages SSH key files.
func (c *checker) managesSSH() bool {
	return c.f.State.Cluster.ModifySSHSetup
}
