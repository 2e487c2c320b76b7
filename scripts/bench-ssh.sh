#!/bin/bash
# bench-ssh.sh: time `promote` + `demote` of one node against an
# OpenSSH baseline, on 5 and 20 simulated hosts (real sshd + real
# daemons on 127.x addresses), and print one table.
#
# The hosts come from the integration harness: this script runs
# BenchmarkSSH_PromoteDemote (integration/ssh_bench_test.go). In every
# iteration, on the same cluster, it times promote and demote of the
# last node on the master, then the baseline: a sequential shell loop
# that, with the master's key and `ssh -o BatchMode=yes`, appends a key
# line to every host's authorized_keys and then removes it again.
#
# Needs root (the harness starts sshd). Environment:
#   BENCH_ITERS  iterations per cluster size (default 3)
#   BENCH_SIZES  regexp of sizes to run (default "5|20")
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"

if [ "$(id -u)" != 0 ]; then
	echo "bench-ssh: needs root to start sshd for the simulated hosts" >&2
	exit 1
fi
iters=${BENCH_ITERS:-3}
sizes=${BENCH_SIZES:-5|20}

# Build first so that a broken tree fails fast; the harness then builds
# its own copy of the same tree.
CGO_ENABLED=0 go build -trimpath -o bin/ganeti-node .

out=$(mktemp)
trap 'rm -f "$out"' EXIT
echo "bench-ssh: load before the run: $(cut -d' ' -f1-3 /proc/loadavg)" \
	"on $(nproc) CPUs"
go test -count=1 -timeout 60m -run '^$' \
	-bench "BenchmarkSSH_PromoteDemote/hosts=($sizes)\$" \
	-benchtime "${iters}x" ./integration/ | tee "$out"
echo "bench-ssh: load after the run: $(cut -d' ' -f1-3 /proc/loadavg)"

# A result line: name, iterations, ns/op, then "value unit" pairs.
awk '
/^BenchmarkSSH_PromoteDemote\/hosts=/ {
	split($1, a, "[=-]"); hosts = a[2]
	for (i = 3; i < NF; i += 2) v[$(i + 1)] = $i
	rows[++n] = sprintf("%5s  %10.2f  %9.2f  %15.2f  %8.1fx  %10.2f",
		hosts, v["promote-s"], v["demote-s"], v["openssh-s"],
		v["speedup"], v["fanout-s"])
	cpu[n] = sprintf("%5s  %14.2f  %11.2f  %19.2f  %22.2f", hosts,
		v["cpu-daemons-s"], v["cpu-sshd-s"], v["cpu-sshd-openssh-s"],
		v["cpu-daemons-openssh-s"])
	if (hosts == 20) goal = v["speedup"]
}
END {
	if (n == 0) { print "bench-ssh: no benchmark results" > "/dev/stderr"; exit 1 }
	print ""
	printf "%5s  %10s  %9s  %15s  %9s  %10s\n", "hosts",
		"promote s", "demote s", "OpenSSH loop s", "speed-up", "fan-out s"
	for (i = 1; i <= n; i++) print rows[i]
	print ""
	print "promote s, demote s: one ganeti-node command each, per iteration"
	print "OpenSSH loop s: add + remove a key line on every host, one ssh at a time"
	print "speed-up: OpenSSH loop s / (promote s + demote s); goal >= 20x at 20 hosts"
	print "fan-out s: the master'"'"'s logged SSH fan-out time within promote + demote"
	print ""
	print "CPU seconds per iteration (for profiling; the machine has", cpus, "CPUs):"
	printf "%5s  %14s  %11s  %19s  %22s\n", "hosts", "daemons (ops)",
		"sshd (ops)", "sshd (OpenSSH loop)", "daemons (OpenSSH loop)"
	for (i = 1; i <= n; i++) print cpu[i]
	print "sshd: everything the hosts'"'"' sshd ran (sessions, shells, ssh-update helpers,"
	print "  the long-lived pooled ones included);"
	print "daemons during the OpenSSH loop: their background work while idle"
	if (goal != "")
		printf "goal at 20 hosts: %s (%.1fx)\n",
			(goal >= 20 ? "met" : "NOT met"), goal
}' cpus="$(nproc)" "$out"
