package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"ganeti-node/daemon"
)

// client talks to the local daemon over its Unix socket.
type client struct {
	socket string
	http   *http.Client
}

func newClient(root string, timeout time.Duration) *client {
	sock := daemon.NewPaths(root).Socket()
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}
	return &client{socket: sock, http: &http.Client{Transport: tr, Timeout: timeout}}
}

// call sends a request and decodes a JSON answer into out (if not nil).
func (c *client) call(method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, "http://local"+path, body)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if _, serr := os.Stat(c.socket); serr != nil {
			return fmt.Errorf("the local daemon is not running (no socket at %s); "+
				"start `ganeti-node daemon` first", c.socket)
		}
		return fmt.Errorf("talking to the local daemon at %s: %w; is "+
			"`ganeti-node daemon` running?", c.socket, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		var eb daemon.ErrorBody
		if json.Unmarshal(data, &eb) == nil && eb.Error != "" {
			return errors.New(eb.Error)
		}
		return fmt.Errorf("daemon answered %s", resp.Status)
	}
	if raw, ok := out.(*[]byte); ok {
		*raw = data
		return nil
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}

// op runs a cluster operation through the local daemon.
func (c *client) op(name string, args any) (*daemon.OpResult, error) {
	raw, err := json.Marshal(args)
	if err != nil {
		return nil, err
	}
	var res daemon.OpResult
	err = c.call(http.MethodPost, "/v1/op", daemon.OpRequest{Op: name, Args: raw}, &res)
	return &res, err
}

// opStream runs a cluster operation and passes each progress line to
// progress while it runs.
func (c *client) opStream(name string, args any, progress func(string)) (*daemon.OpResult, error) {
	raw, err := json.Marshal(args)
	if err != nil {
		return nil, err
	}
	body, _ := json.Marshal(daemon.OpRequest{Op: name, Args: raw})
	req, err := http.NewRequest(http.MethodPost, "http://local/v1/op", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/x-ndjson")
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("talking to the local daemon at %s: %w", c.socket, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var eb daemon.ErrorBody
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if json.Unmarshal(data, &eb) == nil && eb.Error != "" {
			return nil, errors.New(eb.Error)
		}
		return nil, fmt.Errorf("daemon answered %s", resp.Status)
	}
	dec := json.NewDecoder(resp.Body)
	for {
		var l struct {
			Progress string           `json:"progress"`
			Result   *daemon.OpResult `json:"result"`
			Error    string           `json:"error"`
		}
		if err := dec.Decode(&l); err != nil {
			return nil, fmt.Errorf("reading the daemon's answer: %w", err)
		}
		switch {
		case l.Error != "":
			return nil, errors.New(l.Error)
		case l.Result != nil:
			return l.Result, nil
		case l.Progress != "":
			progress(l.Progress)
		}
	}
}
