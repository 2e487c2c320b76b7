package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"ganeti-node/rpcsec"
)

// maxBody bounds every request body the daemon reads.
const maxBody = 1 << 20

// localHandler serves the CLI on the Unix socket. Only root can reach
// it (the socket is 0600).
func (d *Daemon) localHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", d.handleStatus)
	mux.HandleFunc("GET /v1/list", d.handleList)
	mux.HandleFunc("GET /v1/cluster", d.handleCluster)
	mux.HandleFunc("GET /v1/authorized-keys", d.handleAuthorizedKeys)
	mux.HandleFunc("POST /v1/init", d.handleInit)
	mux.HandleFunc("POST /v1/activate", d.handleActivate)
	mux.HandleFunc("POST /v1/op", d.handleLocalOp)
	d.verifyLocalRoutes(mux)
	d.rapiLocalRoutes(mux)
	return mux
}

// rpcHandler serves the node RPC on the TLS port. The handshake has
// already admitted the peer: it is the master or a candidate.
func (d *Daemon) rpcHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/ping", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /v1/status", d.handleStatus)
	mux.HandleFunc("POST /v1/op", d.handleRemoteOp)
	d.verifyRPCRoutes(mux)
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, ErrorBody{Error: err.Error()})
}

// decodeBody parses a JSON body strictly: one document, known fields
// only, at most maxBody bytes.
func decodeBody(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, maxBody+1))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("bad request body: %w", err)
	}
	if dec.More() {
		return errors.New("bad request body: trailing data")
	}
	return nil
}

// handleStatus answers the node's status. With ?wait_index=N it first
// waits, up to maxStatusWait, until the node reports index N as
// applied: the master's waitApplied then costs one request per node
// instead of a poll every few milliseconds.
func (d *Daemon) handleStatus(w http.ResponseWriter, r *http.Request) {
	if v := r.URL.Query().Get("wait_index"); v != "" {
		want, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			writeErr(w, http.StatusBadRequest, fmt.Errorf("wait_index %q is "+
				"not a Raft index; give a non-negative integer", v))
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), maxStatusWait)
		defer cancel()
		d.applied.waitUntil(ctx, func() bool { return d.status().AppliedIndex >= want })
	}
	writeJSON(w, http.StatusOK, d.status())
}

// maxStatusWait bounds how long /v1/status?wait_index holds a request.
const maxStatusWait = 5 * time.Second

func (d *Daemon) handleList(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, d.list())
}

func (d *Daemon) handleCluster(w http.ResponseWriter, r *http.Request) {
	info, err := d.clusterInfo()
	if err != nil {
		writeErr(w, http.StatusConflict, err)
		return
	}
	writeJSON(w, http.StatusOK, info)
}

func (d *Daemon) handleActivate(w http.ResponseWriter, r *http.Request) {
	if err := d.activate(); err != nil {
		writeErr(w, http.StatusInternalServerError, err)
		return
	}
	writeJSON(w, http.StatusOK, OpResult{Message: "activated"})
}

func (d *Daemon) handleInit(w http.ResponseWriter, r *http.Request) {
	var a InitArgs
	if err := decodeBody(r, &a); err != nil {
		writeErr(w, http.StatusBadRequest, err)
		return
	}
	res, err := d.initCluster(r.Context(), a)
	if err != nil {
		writeErr(w, http.StatusConflict, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// handleLocalOp runs an operation for the local CLI: on the leader
// directly, on a candidate by forwarding to the leader, and on a normal
// node not at all.
func (d *Daemon) handleLocalOp(w http.ResponseWriter, r *http.Request) {
	var req OpRequest
	if err := decodeBody(r, &req); err != nil {
		writeErr(w, http.StatusBadRequest, err)
		return
	}
	if r.Header.Get("Accept") == "application/x-ndjson" {
		d.streamOp(w, r, req)
		return
	}
	res, err := d.routeOp(r.Context(), req)
	if err != nil {
		writeErr(w, http.StatusConflict, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// handleRemoteOp runs an operation forwarded by a candidate. It is
// only served by the leader; the caller's certificate was admitted by
// the candidate map, and the check below makes the rule explicit.
func (d *Daemon) handleRemoteOp(w http.ResponseWriter, r *http.Request) {
	if err := d.checkCallerIsCandidate(r); err != nil {
		d.log.Info("refused forwarded operation", "peer", r.RemoteAddr, "reason", err)
		writeErr(w, http.StatusForbidden, err)
		return
	}
	var req OpRequest
	if err := decodeBody(r, &req); err != nil {
		writeErr(w, http.StatusBadRequest, err)
		return
	}
	if !d.isLeader() {
		writeErr(w, http.StatusMisdirectedRequest, errNotLeaderNow)
		return
	}
	res, err := d.runOp(r.Context(), req)
	if err != nil {
		writeErr(w, http.StatusConflict, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

var errNotLeaderNow = errors.New("this node is no longer the master; retry")

func (d *Daemon) checkCallerIsCandidate(r *http.Request) error {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return errors.New("no client certificate")
	}
	uuid, err := rpcsec.NodeUUID(r.TLS.PeerCertificates[0])
	if err != nil {
		return err
	}
	s := d.fsm.State()
	if n := s.Nodes[uuid]; n == nil || !n.MasterCandidate {
		return fmt.Errorf("node %q is not a master candidate", uuid)
	}
	return nil
}

// forward sends req to the leader over mutual TLS with this node's own
// client certificate.
func (d *Daemon) forward(ctx context.Context, leaderAddr string,
	req OpRequest) (*OpResult, error) {
	d.mu.Lock()
	id := d.id
	d.mu.Unlock()
	body, _ := json.Marshal(req)
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost,
		"https://"+leaderAddr+"/v1/op", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	resp, err := doRefusalRetry(rpcsec.HTTPClient(id, opTimeout), hreq, body)
	if err != nil {
		return nil, fmt.Errorf("forwarding to the master at %s: %w", leaderAddr, err)
	}
	defer resp.Body.Close()
	return decodeOpResponse(resp)
}

func decodeOpResponse(resp *http.Response) (*OpResult, error) {
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		var eb ErrorBody
		if json.Unmarshal(data, &eb) == nil && eb.Error != "" {
			return nil, errors.New(eb.Error)
		}
		return nil, fmt.Errorf("master answered %s", resp.Status)
	}
	var res OpResult
	if err := json.Unmarshal(data, &res); err != nil {
		return nil, fmt.Errorf("bad answer from the master: %w", err)
	}
	return &res, nil
}

// doRefusalRetry sends req, retrying for up to two seconds while the
// master refuses our certificate during the handshake: right after a
// certificate renewal is committed, this node loads its new one a
// moment later. A handshake refusal means the master read nothing, so
// the retry cannot run an operation twice.
func doRefusalRetry(c *http.Client, req *http.Request, body []byte) (*http.Response, error) {
	deadline := time.Now().Add(2 * time.Second)
	for {
		resp, err := c.Do(req)
		if err == nil || !isHandshakeRefusal(err) || time.Now().After(deadline) {
			return resp, err
		}
		time.Sleep(100 * time.Millisecond)
		req.Body = io.NopCloser(bytes.NewReader(body))
	}
}

// isHandshakeRefusal reports whether err is a TLS alert from the peer.
func isHandshakeRefusal(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "remote error"
}
