package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// socketClient talks HTTP to a host's daemon socket directly, so that
// timings do not include starting a CLI process.
func socketClient(h *Host) *http.Client {
	sock := filepath.Join(h.Root, "var/run/ganeti/socket/ganeti-node.sock")
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}}}
}

// accepts reports whether h's daemon runs a cluster command now: a
// promote of a node that is already a candidate goes to the master,
// which answers once it has taken over.
func accepts(c *http.Client, node string) bool {
	args, _ := json.Marshal(map[string]string{"node": node})
	body, _ := json.Marshal(map[string]any{"op": "promote", "args": json.RawMessage(args)})
	resp, err := c.Post("http://local/v1/op", "application/json", bytes.NewReader(body))
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// rssKB returns the resident set size of pid in KiB.
func rssKB(pid int) (int, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(data), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			return strconv.Atoi(f[1])
		}
	}
	return 0, fmt.Errorf("no VmRSS for pid %d", pid)
}

// BenchmarkCluster_Failover kills the master with SIGKILL b.N times and
// measures the time until a surviving candidate's daemon accepts a
// cluster command again. Run with -benchtime 10x or more; it reports
// the median and the worst case, and the idle RSS of the daemons.
func BenchmarkCluster_Failover(b *testing.B) {
	c := newCluster(b, 3, 3, Options{})
	c.waitConverged(c.Hosts...)
	rss := maxIdleRSS(b, c)
	var took []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		took = append(took, killMasterOnce(b, c))
	}
	b.StopTimer()
	sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
	b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "ms-median")
	b.ReportMetric(float64(took[len(took)-1].Microseconds())/1000, "ms-max")
	b.ReportMetric(float64(rss)/1024, "MB-idle-rss")
	sort.Slice(electedAt, func(i, j int) bool { return electedAt[i] < electedAt[j] })
	b.ReportMetric(float64(electedAt[len(electedAt)/2].Microseconds())/1000, "ms-median-elected")
}

var electedAt []time.Duration

func isLeader(c *http.Client) bool {
	resp, err := c.Get("http://local/v1/status")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var st struct {
		RaftState string `json:"raft_state"`
	}
	return json.NewDecoder(resp.Body).Decode(&st) == nil && st.RaftState == "Leader"
}

func killMasterOnce(b *testing.B, c *Cluster) time.Duration {
	b.Helper()
	old := c.Leader()
	var clients []*http.Client
	var names []string
	for _, h := range c.Hosts {
		if h != old {
			clients = append(clients, socketClient(h))
			names = append(names, h.Name)
		}
	}
	start := time.Now()
	c.Kill(old)
	// A tight poll of its own: WaitFor's 100 ms step would blur the
	// figure. 5 ms polls cost little next to an election.
	var took time.Duration
	elected := false
	deadline := start.Add(30 * time.Second)
	for took == 0 {
		if time.Now().After(deadline) {
			b.Fatalf("no surviving candidate accepted a command within 30 s")
		}
		for i, cl := range clients {
			if !elected && isLeader(cl) {
				elected = true
				electedAt = append(electedAt, time.Since(start))
			}
			if accepts(cl, names[i]) {
				took = time.Since(start)
				break
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	if !elected {
		electedAt = append(electedAt, took)
	}
	c.Start(old)
	c.waitConverged(c.Hosts...)
	return took
}

// maxIdleRSS lets the cluster settle and returns the largest daemon RSS.
func maxIdleRSS(b *testing.B, c *Cluster) int {
	b.Helper()
	max := 0
	for _, h := range c.Hosts {
		kb, err := rssKB(h.daemon.cmd.Process.Pid)
		if err != nil {
			b.Fatalf("reading RSS of %s: %v", h.Name, err)
		}
		if kb > max {
			max = kb
		}
	}
	return max
}
