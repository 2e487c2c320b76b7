#!/bin/bash
# renew-crypto figures for the README: builds a real loopback cluster
# of N hosts (real sshd and daemons; 3 candidates, the rest regular)
# for each N in HOSTS (default "20 80") and times
# `cluster renew-crypto --new-ssh-keys` and `--new-node-certificates`
# on it, first with root's ~/.bashrc skipped by the remote shell (the
# product's own cost), then with it read as this machine has it.
set -euo pipefail
cd "$(dirname "$0")/.."
HOSTS="${HOSTS:-20 80}"
for n in $HOSTS; do
	echo "== $n hosts"
	RENEW_HOSTS="$n" go test -count=1 -timeout 60m -run '^$' \
		-bench 'BenchmarkRenewCrypto$' -benchtime 1x ./integration/ |
		grep -E '^(Benchmark|ok|FAIL)|hosts joined' |
		tr '\t' '\n' | sed -e 's/^ *//' -e '/^$/d'
done
