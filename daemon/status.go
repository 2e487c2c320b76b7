package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"ganeti-node/sshdist"
	"io"
	"net/http"
	"strconv"
)

// fetchStatus reads another node's status over the secured RPC.
func fetchStatus(ctx context.Context, c *http.Client, addr string) (*Status, error) {
	return fetchStatusAt(ctx, c, addr, 0)
}

// fetchStatusAt is fetchStatus that lets the node wait until it has
// applied index (0: answer at once).
func fetchStatusAt(ctx context.Context, c *http.Client, addr string,
	index uint64) (*Status, error) {
	url := "https://" + addr + "/v1/status"
	if index > 0 {
		url += "?wait_index=" + strconv.FormatUint(index, 10)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status from %s: %s", addr, resp.Status)
	}
	var st Status
	err = json.NewDecoder(io.LimitReader(resp.Body, maxBody)).Decode(&st)
	return &st, err
}

// handleAuthorizedKeys prints the line a new host must trust before it
// can be joined: this node's own public key, marked as managed by this
// tool, so that the line is revoked like any other candidate key when
// this node stops being a candidate.
func (d *Daemon) handleAuthorizedKeys(w http.ResponseWriter, r *http.Request) {
	d.mu.Lock()
	nf := d.node
	d.mu.Unlock()
	if nf == nil {
		writeErr(w, http.StatusConflict, ErrNoIdentity)
		return
	}
	signer, err := sshdist.LoadOwnKey(d.paths.SSHDir())
	if err != nil {
		writeErr(w, http.StatusConflict, fmt.Errorf("reading this node's SSH key: %w", err))
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	io.WriteString(w, sshdist.ManagedKey{UUID: nf.UUID, Key: signer.PublicKey()}.Line())
}
