package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"ganeti-node/sshdist"
	"golang.org/x/crypto/ssh"
	"io"
	"net/http"
)

// fetchStatus reads another node's status over the secured RPC.
func fetchStatus(ctx context.Context, c *http.Client, addr string) (*Status, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+addr+"/v1/status", nil)
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
// can be joined: this node's own public key.
func (d *Daemon) handleAuthorizedKeys(w http.ResponseWriter, r *http.Request) {
	signer, err := loadOwnSigner(d.paths.SSHDir())
	if err != nil {
		writeErr(w, http.StatusConflict, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	w.Write(signer)
}

// loadOwnSigner returns this node's own public key as an
// authorized_keys line.
func loadOwnSigner(dir string) ([]byte, error) {
	signer, err := sshdist.LoadOwnKey(dir)
	if err != nil {
		return nil, fmt.Errorf("reading this node's SSH key: %w", err)
	}
	return ssh.MarshalAuthorizedKey(signer.PublicKey()), nil
}
