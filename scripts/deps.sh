#!/bin/sh
# Installs what building and testing ganeti-node needs on a Debian host:
# the Go modules and OpenSSH (server and client). Safe to run twice.
set -eu
cd "$(dirname "$0")/.."
if ! command -v go >/dev/null 2>&1; then
	echo "deps: Go is not installed; install Go 1.22 or newer" >&2
	exit 1
fi
go mod download
if [ ! -x /usr/sbin/sshd ] || ! command -v ssh >/dev/null 2>&1 || ! command -v ssh-keygen >/dev/null 2>&1; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "deps: openssh-server is missing; run as root or apt-get install openssh-server" >&2
		exit 1
	fi
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server openssh-client >/dev/null
fi
mkdir -p /run/sshd 2>/dev/null || true
