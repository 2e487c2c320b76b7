package rapi

import "net/http"

// Role names of PUT /2/nodes/NAME/role, as in Ganeti.
const (
	roleMaster    = "master"
	roleCandidate = "master-candidate"
	roleRegular   = "regular"
	roleDrained   = "drained"
	roleOffline   = "offline"
)

// errIsMaster refuses to take a role away from the master.
func errIsMaster(n Node) error {
	return errorf(http.StatusConflict, "node %s is the master; run "+
		"`ganeti-node cluster failover` on another candidate first", n.Name)
}

// planRole turns a role change of n into operations, in the order the
// CLI would run them.
func planRole(n Node, role string) ([]Op, error) {
	if role == roleMaster {
		return nil, planError("the master role cannot be set through RAPI; " +
			"run `ganeti-node cluster failover` on the new master")
	}
	if n.Role == "master" {
		return nil, errIsMaster(n)
	}
	op := func(k OpKind) Op { return Op{Kind: k, Node: n.Name} }
	var ops []Op
	switch role {
	case roleCandidate, roleRegular:
		if n.Offline {
			ops = append(ops, op(OpOnline))
		}
		if n.Drained {
			ops = append(ops, op(OpUndrain))
		}
		last := OpPromote
		if role == roleRegular {
			// Last, because onlining gives a former candidate its
			// role back.
			last = OpDemote
		}
		return append(ops, op(last)), nil
	case roleDrained:
		if n.Offline {
			ops = append(ops, op(OpOnline))
		}
		return append(ops, op(OpDrain)), nil
	case roleOffline:
		return []Op{op(OpOffline)}, nil
	}
	return nil, planError("unknown role %q; use %s, %s, %s or %s", clip(role),
		roleCandidate, roleRegular, roleDrained, roleOffline)
}

// planModify turns the flags of a node modify into operations:
// everything that adds a power or brings the node back first, then
// promotion, then everything that takes a power away.
func planModify(n Node, f map[string]bool) ([]Op, error) {
	if err := checkModify(n, f); err != nil {
		return nil, err
	}
	auto := f[fieldAutoPromote]
	op := func(k OpKind) Op { return Op{Kind: k, Node: n.Name} }
	set := func(k string, v bool) bool { got, ok := f[k]; return ok && got == v }
	var ops []Op
	if set(fieldOffline, false) {
		ops = append(ops, op(OpOnline))
	}
	if set(fieldDrained, false) && n.Drained {
		ops = append(ops, op(OpUndrain))
	}
	if set(fieldMasterCapable, true) {
		ops = append(ops, capable(n, true))
	}
	if set(fieldMasterCandidate, true) {
		ops = append(ops, op(OpPromote))
	}
	if set(fieldMasterCandidate, false) {
		ops = append(ops, Op{Kind: OpDemote, Node: n.Name, AutoPromote: auto})
	}
	if set(fieldDrained, true) && !n.Drained {
		ops = append(ops, Op{Kind: OpDrain, Node: n.Name, AutoPromote: auto})
	}
	if set(fieldOffline, true) {
		ops = append(ops, Op{Kind: OpOffline, Node: n.Name, AutoPromote: auto})
	}
	if set(fieldMasterCapable, false) {
		ops = append(ops, capable(n, false))
	}
	return ops, nil
}

func capable(n Node, v bool) Op {
	return Op{Kind: OpModify, Node: n.Name, MasterCapable: &v}
}

// checkModify refuses empty and contradictory modifications, and any
// that would take a power away from the master.
func checkModify(n Node, f map[string]bool) error {
	_, auto := f[fieldAutoPromote]
	if len(f) == 0 || (auto && len(f) == 1) {
		return planError("nothing to modify; give one of %v", modifyFields[:4])
	}
	mc, hasMC := f[fieldMasterCandidate]
	on := func(k string) bool { return f[k] }
	switch {
	case on(fieldOffline) && on(fieldDrained):
		return planError("a node cannot be both offline and drained")
	case mc && (on(fieldOffline) || on(fieldDrained)):
		return planError("a master candidate cannot be offline or drained")
	case mc && hasFalse(f, fieldMasterCapable):
		return planError("a master candidate must be master-capable")
	}
	if n.Role == "master" && ((hasMC && !mc) || on(fieldOffline) ||
		on(fieldDrained) || hasFalse(f, fieldMasterCapable)) {
		return errIsMaster(n)
	}
	return nil
}

func hasFalse(f map[string]bool, k string) bool {
	v, ok := f[k]
	return ok && !v
}
