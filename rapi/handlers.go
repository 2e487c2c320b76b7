package rapi

import (
	"context"
	"net/http"
	"strconv"
	"strings"
)

// Fields of POST /2/nodes/NAME/modify.
const (
	fieldMasterCandidate = "master_candidate"
	fieldOffline         = "offline"
	fieldDrained         = "drained"
	fieldMasterCapable   = "master_capable"
	fieldAutoPromote     = "auto_promote"
	// fieldGuardFlag is the cluster flag; naming it in a node modify is
	// refused with its own message.
	fieldGuardFlag = "master_capability_rapi_modifiable"
)

var modifyFields = []string{fieldMasterCandidate, fieldOffline,
	fieldDrained, fieldMasterCapable, fieldAutoPromote}

// infoView is GET /2/info.
type infoView struct {
	Name                           string `json:"name"`
	UUID                           string `json:"uuid"`
	Master                         string `json:"master"`
	CandidatePoolSize              int    `json:"candidate_pool_size"`
	ModifySSHSetup                 bool   `json:"modify_ssh_setup"`
	MasterCapabilityRapiModifiable bool   `json:"master_capability_rapi_modifiable"`
}

// nodeRef is one element of GET /2/nodes without bulk.
type nodeRef struct {
	ID  string `json:"id"`
	URI string `json:"uri"`
}

// nodeView is GET /2/nodes/NAME and one element of GET
// /2/nodes?bulk=1. Role is Ganeti's letter: M, C, R, D or O.
type nodeView struct {
	Name            string `json:"name"`
	UUID            string `json:"uuid"`
	PIP             string `json:"pip"`
	SIP             string `json:"sip"`
	Role            string `json:"role"`
	MasterCandidate bool   `json:"master_candidate"`
	MasterCapable   bool   `json:"master_capable"`
	VMCapable       bool   `json:"vm_capable"`
	Offline         bool   `json:"offline"`
	Drained         bool   `json:"drained"`
}

// roleNames maps `list` roles to Ganeti's role names and letters.
var roleNames = map[string][2]string{
	"master": {"master", "M"}, "candidate": {"master-candidate", "C"},
	"regular": {"regular", "R"}, "drained": {"drained", "D"},
	"offline": {"offline", "O"},
}

func viewOf(n Node) nodeView {
	return nodeView{Name: n.Name, UUID: n.UUID, PIP: n.PrimaryIP,
		SIP: n.PrimaryIP, Role: roleNames[n.Role][1],
		MasterCandidate: n.MasterCandidate, MasterCapable: n.MasterCapable,
		VMCapable: n.VMCapable, Offline: n.Offline, Drained: n.Drained}
}

func (s *Server) getVersion(http.ResponseWriter, *http.Request) (any, error) {
	return 2, nil
}

func (s *Server) getInfo(http.ResponseWriter, *http.Request) (any, error) {
	c, err := s.backend.Cluster()
	if err != nil {
		return nil, errorf(http.StatusServiceUnavailable, "%v", err)
	}
	return infoView{Name: c.Name, UUID: c.UUID, Master: c.Master,
		CandidatePoolSize: c.CandidatePoolSize, ModifySSHSetup: c.ModifySSHSetup,
		MasterCapabilityRapiModifiable: c.MasterCapabilityRapiModifiable}, nil
}

func (s *Server) getNodes(_ http.ResponseWriter, r *http.Request) (any, error) {
	bulk, err := boolQuery(r, "bulk")
	if err != nil {
		return nil, err
	}
	nodes, err := s.backend.Nodes()
	if err != nil {
		return nil, errorf(http.StatusServiceUnavailable, "%v", err)
	}
	if bulk {
		out := []nodeView{}
		for _, n := range nodes {
			out = append(out, viewOf(n))
		}
		return out, nil
	}
	out := []nodeRef{}
	for _, n := range nodes {
		out = append(out, nodeRef{ID: n.Name, URI: "/2/nodes/" + n.Name})
	}
	return out, nil
}

// node returns the node named in the request path, or a 404.
func (s *Server) node(r *http.Request) (Node, error) {
	name := r.PathValue("name")
	nodes, err := s.backend.Nodes()
	if err != nil {
		return Node{}, errorf(http.StatusServiceUnavailable, "%v", err)
	}
	for _, n := range nodes {
		if n.Name == name {
			return n, nil
		}
	}
	return Node{}, errorf(http.StatusNotFound, "node %q not found", clip(name))
}

func (s *Server) getNode(_ http.ResponseWriter, r *http.Request) (any, error) {
	n, err := s.node(r)
	if err != nil {
		return nil, err
	}
	return viewOf(n), nil
}

func (s *Server) getRole(_ http.ResponseWriter, r *http.Request) (any, error) {
	n, err := s.node(r)
	if err != nil {
		return nil, err
	}
	return roleNames[n.Role][0], nil
}

// putRole sets a node's role: the body is the role name as a JSON
// string. It answers with the ID of the job that makes the change.
func (s *Server) putRole(w http.ResponseWriter, r *http.Request) (any, error) {
	data, err := readBody(w, r, s.cfg.MaxBody)
	if err != nil {
		return nil, err
	}
	role, err := decodeString(data)
	if err != nil {
		return nil, err
	}
	n, err := s.node(r)
	if err != nil {
		return nil, err
	}
	ops, err := planRole(n, role)
	if err != nil {
		return nil, err
	}
	return s.submit(r, ops)
}

// postModify changes a node's flags; changing master_capable is
// refused unless the cluster allows it (the guard).
func (s *Server) postModify(w http.ResponseWriter, r *http.Request) (any, error) {
	data, err := readBody(w, r, s.cfg.MaxBody)
	if err != nil {
		return nil, err
	}
	flags, err := decodeFlags(data, append(modifyFields, fieldGuardFlag))
	if err != nil {
		return nil, err
	}
	if _, ok := flags[fieldGuardFlag]; ok {
		return nil, errFlagNotModifiable
	}
	n, err := s.node(r)
	if err != nil {
		return nil, err
	}
	if _, ok := flags[fieldMasterCapable]; ok {
		if err := s.checkGuard(); err != nil {
			return nil, err
		}
	}
	ops, err := planModify(n, flags)
	if err != nil {
		return nil, err
	}
	return s.submit(r, ops)
}

// errFlagNotModifiable refuses any attempt to change the guard's own
// flag through RAPI.
var errFlagNotModifiable = errorf(http.StatusForbidden,
	"%s cannot be changed through RAPI; an administrator changes it with "+
		"`ganeti-node cluster modify` on a master candidate", fieldGuardFlag)

// checkGuard refuses changes of master_capable unless the committed
// cluster flag allows them.
func (s *Server) checkGuard() error {
	c, err := s.backend.Cluster()
	if err != nil {
		return errorf(http.StatusServiceUnavailable, "%v", err)
	}
	if !c.MasterCapabilityRapiModifiable {
		return errorf(http.StatusForbidden, "changing %s through RAPI is "+
			"disabled because the cluster flag %s is false; use `ganeti-node "+
			"modify NODE --master-capable=BOOL` on a master candidate",
			fieldMasterCapable, fieldGuardFlag)
	}
	return nil
}

func (s *Server) putClusterModify(http.ResponseWriter, *http.Request) (any, error) {
	return nil, errorf(http.StatusForbidden, "cluster parameters, %s "+
		"included, cannot be changed through RAPI; use `ganeti-node "+
		"cluster modify` on a master candidate", fieldGuardFlag)
}

// submit queues ops as one job after checking the daemon can run every
// one of them, and returns the job ID.
func (s *Server) submit(r *http.Request, ops []Op) (any, error) {
	for _, op := range ops {
		if !s.backend.Supports(op.Kind) {
			return nil, errorf(http.StatusNotImplemented, "this cluster "+
				"cannot %s a node yet; nothing was changed", op.Kind)
		}
	}
	id, err := s.jobs.submit(ops)
	if err != nil {
		return nil, errorf(http.StatusServiceUnavailable, "%v", err)
	}
	var summary []string
	for _, op := range ops {
		summary = append(summary, string(op.Kind)+"("+op.Node+")")
	}
	s.log.Info("rapi job submitted", "user", userOf(r).Name, "job", id,
		"method", r.Method, "path", r.URL.Path,
		"ops", strings.Join(summary, ","))
	return id, nil
}

// runOp runs one operation of a job. The guard is checked again: the
// flag may have been cleared since the job was accepted.
func (s *Server) runOp(ctx context.Context, op Op) (Result, error) {
	if op.Kind == OpModify {
		if err := s.checkGuard(); err != nil {
			s.log.Info("rapi operation refused", "op", op.Kind,
				"node", op.Node, "reason", err)
			return Result{}, err
		}
	}
	return s.backend.Run(ctx, op)
}

func (s *Server) getJob(_ http.ResponseWriter, r *http.Request) (any, error) {
	raw := r.PathValue("id")
	id, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || id <= 0 {
		return nil, errorf(http.StatusBadRequest,
			"job ID %q is not a positive number", clip(raw))
	}
	j, ok := s.jobs.get(id)
	if !ok {
		return nil, errorf(http.StatusNotFound, "job %d not found; jobs "+
			"are known only to the master that accepted them", id)
	}
	return j, nil
}

// planError is a request that cannot be turned into operations.
func planError(format string, args ...any) error {
	return errorf(http.StatusBadRequest, format, args...)
}
