package daemon

import (
	"net/http"

	"ganeti-node/fsm"
	"ganeti-node/sshdist"
)

// rapiLocalRoutes adds CLI endpoints for RAPI administration.
// TODO: RAPI (issue 6) is not implemented yet.
func (d *Daemon) rapiLocalRoutes(mux *http.ServeMux) {}

// rapiActivate runs when the node gets its identity.
func (d *Daemon) rapiActivate() {}

// rapiLeader runs when this node gains (true) or loses leadership.
func (d *Daemon) rapiLeader(isLeader bool) {}

// rapiFiles returns the RAPI files node n must hold (candidates only)
// and the ones it must not, for the master's reconciliation.
func (d *Daemon) rapiFiles(n *fsm.Node) ([]sshdist.File, []string, error) {
	if n.MasterCandidate {
		return nil, nil, nil
	}
	return nil, []string{"rapi.pem", "rapi_users"}, nil
}
