#!/bin/bash
# Starts a real 4-host ganeti-node cluster on loopback: each host is a
# root directory under $DEMO_DIR, its own 127.0.0.x address, a real
# OpenSSH sshd on port 2222 and a ganeti-node daemon. Then it runs
# init, join x3, demote --auto-promote (node4 takes node3's place), and
# prints `list`. The hosts keep running;
# `scripts/demo.sh down` (or `make demo-stop`) stops them.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="$PWD/bin/ganeti-node"
DEMO_DIR="${DEMO_DIR:-/tmp/gn-demo}"
NET="${DEMO_NET:-127.0.99}"
N=4

down() {
	# Every demo process names its host's root on its command line
	# (daemons: --root DIR; sshd: -f DIR/etc/ssh/sshd_config), so this
	# also stops daemons restarted by hand, and nothing else.
	pkill -f -- "--root $DEMO_DIR/node" 2>/dev/null || true
	pkill -f -- "-f $DEMO_DIR/node[0-9]*/etc/ssh/sshd_config" 2>/dev/null || true
	for _ in $(seq 50); do
		pgrep -f -- "$DEMO_DIR/node" >/dev/null || break
		sleep 0.1
	done
	rm -rf "$DEMO_DIR"
	echo "demo stopped; $DEMO_DIR removed"
}

start_host() { # i
	local i=$1 root="$DEMO_DIR/node$1" ip="$NET.$1"
	mkdir -p "$root/etc/ssh" "$root/root/.ssh" "$root/run"
	chmod 700 "$root/root/.ssh"
	ssh-keygen -q -t ed25519 -N "" -f "$root/etc/ssh/ssh_host_ed25519_key"
	cat >"$root/etc/ssh/sshd_config" <<CFG
ListenAddress $ip:2222
HostKey $root/etc/ssh/ssh_host_ed25519_key
AuthorizedKeysFile $root/root/.ssh/authorized_keys
SetEnv GANETI_ROOT=$root
StrictModes no
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PidFile $root/run/sshd.pid
CFG
	/usr/sbin/sshd -f "$root/etc/ssh/sshd_config" -E "$root/sshd.log"
	"$BIN" --root "$root" daemon >>"$root/daemon.log" 2>&1 &
	echo $! >"$root/run/daemon.pid"
	for _ in $(seq 100); do
		"$BIN" --root "$root" status >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	echo "node$i: daemon did not come up; see $root/daemon.log" >&2
	exit 1
}

gn() { # i args...
	local i=$1
	shift
	"$BIN" --root "$DEMO_DIR/node$i" "$@"
}

up() {
	if [ -d "$DEMO_DIR" ]; then
		echo "$DEMO_DIR exists: a demo is running; run '$0 down' first" >&2
		exit 1
	fi
	mkdir -p /run/sshd
	for i in $(seq $N); do start_host "$i"; done
	echo "== init on node1"
	gn 1 init --node-name node1 --primary-ip "$NET.1" --ssh-port 2222 demo.example
	for i in $(seq 2 $N); do
		# What an admin does before a join: trust the master's key.
		gn 1 authorized-keys >>"$DEMO_DIR/node$i/root/.ssh/authorized_keys"
		echo "== join node$i"
		gn 1 join --primary-ip "$NET.$i" --ssh-port 2222 "node$i"
	done
	echo "== demote node3 (node4 is promoted in its place)"
	gn 1 demote --auto-promote node3
	echo "== list (from node2)"
	gn 2 list
	cat <<MSG

The cluster keeps running. Try, for example:
  $BIN --root $DEMO_DIR/node1 cluster info
  kill -9 \$(cat $DEMO_DIR/node1/run/daemon.pid); $BIN --root $DEMO_DIR/node2 list
Each host is a root directory: run a command "on" host N with
  $BIN --root $DEMO_DIR/nodeN COMMAND
and restart a killed daemon with
  $BIN --root $DEMO_DIR/nodeN daemon >>$DEMO_DIR/nodeN/daemon.log 2>&1 &
Stop it with: make demo-stop (or $0 down)
MSG
}

case "${1:-up}" in
up) up ;;
down) down ;;
*) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
