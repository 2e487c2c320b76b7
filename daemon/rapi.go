package daemon

import "net/http"

// rapiLocalRoutes adds CLI endpoints for RAPI administration.
// TODO: RAPI (issue 6) is not implemented yet.
func (d *Daemon) rapiLocalRoutes(mux *http.ServeMux) {}

// rapiActivate runs when the node gets its identity.
func (d *Daemon) rapiActivate() {}

// rapiLeader runs when this node gains (true) or loses leadership.
func (d *Daemon) rapiLeader(isLeader bool) {}
