package daemon

import "net/http"

// verifyLocalRoutes adds the CLI's `cluster verify` endpoints.
// TODO: cluster verify (issue 5) is not implemented yet.
func (d *Daemon) verifyLocalRoutes(mux *http.ServeMux) {}

// verifyRPCRoutes adds the node-side endpoints the master's verify
// calls over the secured RPC.
func (d *Daemon) verifyRPCRoutes(mux *http.ServeMux) {}
