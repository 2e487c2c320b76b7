#!/bin/bash
# Failover and footprint figures for the README: kills the master of a
# real 3-host loopback cluster RUNS times (default 10) and reports the
# median and worst time until a surviving candidate accepts a command,
# the median time until it is Raft leader, and the daemons' idle RSS.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${RUNS:-10}"
go test -count=1 -run '^$' -bench 'BenchmarkCluster_Failover$' \
	-benchtime "${RUNS}x" ./integration/ | grep -E '^(Benchmark|ok|FAIL)'
