package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"

	"ganeti-node/sshdist"
)

// opReport collects what an operation's SSH fan-outs did, for the
// summary line every operation ends with and for live progress.
type opReport struct {
	mu          sync.Mutex
	progress    func(string)
	nodes       int
	changed     int
	unreachable map[string]bool
}

type reportKey struct{}

func withReport(ctx context.Context, r *opReport) context.Context {
	return context.WithValue(ctx, reportKey{}, r)
}

// reportFrom returns the operation's report, or a throwaway one.
func reportFrom(ctx context.Context) *opReport {
	if r, ok := ctx.Value(reportKey{}).(*opReport); ok {
		return r
	}
	return &opReport{}
}

// watch makes sess report each host's result as progress.
func (r *opReport) watch(sess *sshdist.Session, op string, total int) {
	done := 0
	sess.OnResult(func(res sshdist.Result) {
		r.mu.Lock()
		defer r.mu.Unlock()
		done++
		if r.progress == nil {
			return
		}
		state := "ok"
		if res.Err != nil {
			state = "failed: " + res.Err.Error()
		}
		r.progress(fmt.Sprintf("%s [%d/%d] %s %s", op, done, total, res.Target.Name, state))
	})
}

// add counts one fan-out's results.
func (r *opReport) add(results []sshdist.Result) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.unreachable == nil {
		r.unreachable = map[string]bool{}
	}
	for _, res := range results {
		if res.Skipped {
			continue
		}
		r.nodes++
		switch {
		case res.Err != nil:
			r.unreachable[res.Target.Name] = true
		case res.Resp != nil && len(res.Resp.Changed) > 0:
			r.changed++
		}
	}
}

// summary is the line printed after every operation that used SSH.
func (r *opReport) summary() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.nodes == 0 {
		return ""
	}
	nodes := "nodes"
	if r.nodes == 1 {
		nodes = "node"
	}
	return fmt.Sprintf("ssh: %d %s updated (%d changed), %d unreachable",
		r.nodes, nodes, r.changed, len(r.unreachable))
}

// progressLine is one line of a streamed operation answer: progress
// while it runs, then exactly one result or error.
type progressLine struct {
	Progress string    `json:"progress,omitempty"`
	Result   *OpResult `json:"result,omitempty"`
	Error    string    `json:"error,omitempty"`
}

// streamOp runs req and streams progress lines to w as NDJSON.
func (d *Daemon) streamOp(w http.ResponseWriter, r *http.Request, req OpRequest) {
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	var mu sync.Mutex
	enc := json.NewEncoder(w)
	send := func(l progressLine) {
		mu.Lock()
		defer mu.Unlock()
		enc.Encode(l)
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
	}
	rep := &opReport{progress: func(s string) { send(progressLine{Progress: s}) }}
	res, err := d.routeOp(withReport(r.Context(), rep), req)
	if err != nil {
		send(progressLine{Error: err.Error()})
		return
	}
	send(progressLine{Result: res})
}
