package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// statusAt GETs /v1/status on to with from's client certificate, with
// the given query, and returns the HTTP status and body.
func statusAt(t *testing.T, from, to *Host, query string) (int, string) {
	t.Helper()
	conf, err := clientTLS(from, to.IP)
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Timeout: 30 * time.Second,
		Transport: &http.Transport{TLSClientConfig: conf}}
	url := "https://" + net.JoinHostPort(to.IP, strconv.Itoa(rpcPort)) +
		"/v1/status" + query
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func appliedIndex(t *testing.T, body string) uint64 {
	t.Helper()
	var st struct {
		AppliedIndex uint64 `json:"applied_index"`
	}
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("status %q: %v", body, err)
	}
	return st.AppliedIndex
}

// TestCluster_StatusWaitsForIndex: /v1/status?wait_index=N answers once
// the node has applied N (the master waits on every node this way
// after a role change), and refuses a malformed index.
func TestCluster_StatusWaitsForIndex(t *testing.T) {
	c := newCluster(t, 3, 3, Options{})
	master, n3 := c.Hosts[0], c.Hosts[2]

	code, body := statusAt(t, master, n3, "?wait_index=abc")
	var refusal struct{ Error string }
	json.Unmarshal([]byte(body), &refusal)
	if code != http.StatusBadRequest || !strings.HasPrefix(refusal.Error,
		`wait_index "abc" is not a Raft index`) {
		t.Errorf("wait_index=abc: got %d %q, want 400 naming the bad index", code, body)
	}

	_, body = statusAt(t, master, n3, "")
	next := appliedIndex(t, body) + 1
	got := make(chan string, 1)
	go func() {
		_, body := statusAt(t, master, n3, fmt.Sprintf("?wait_index=%d", next))
		got <- body
	}()
	c.MustRun(master, "cluster", "modify", "--candidate-pool-size=4")
	if idx := appliedIndex(t, <-got); idx < next {
		t.Errorf("wait_index=%d answered with applied index %d", next, idx)
	}
}
