package integration

import (
	"testing"
	"time"
)

// BenchmarkVerify_Hosts20 times `cluster verify` on a 20-host cluster
// (3 candidates, 17 normal nodes), each run a full gather: RPC
// self-reports, the master's SSH reports and every candidate's real
// logins to every node.
func BenchmarkVerify_Hosts20(b *testing.B) {
	c := newCluster(b, 20, 20, Options{})
	c.waitConverged(c.Hosts...)
	master := c.Leader()
	var worst time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		c.MustRun(master, "cluster", "verify", "--output", "json")
		if d := time.Since(start); d > worst {
			worst = d
		}
	}
	b.StopTimer()
	b.ReportMetric(worst.Seconds(), "s-worst")
}
