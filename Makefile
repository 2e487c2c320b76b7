# ganeti-node: one static binary. `make help` lists the targets.
GO       ?= go
BIN      ?= bin/ganeti-node
PKGS_UNIT = ./atomicfile/... ./fsm/... ./raftnode/... ./rpcsec/... ./sshdist/... ./daemon/... ./cli/... ./verify/... ./rapi/...

.PHONY: help deps build test test-unit test-integration bench fuzz lint demo demo-stop

help: ## show this help
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

deps: ## install what the build and tests need (Go modules, OpenSSH)
	./scripts/deps.sh

build: ## build the static binary into bin/
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN) .

test: deps lint test-unit test-integration ## everything CI runs

test-unit: ## unit tests with the race detector
	$(GO) test -race -count=1 $(PKGS_UNIT)

test-integration: ## multi-host tests with real sshd and daemons (root)
	$(GO) test -count=1 -timeout 20m ./integration/...

bench: build ## benchmarks and the failover/RSS script; figures go to the README
	$(GO) test -run '^$$' -bench . -benchtime 2s ./rpcsec/ ./sshdist/
	./scripts/bench-failover.sh

fuzz: ## run each fuzz target for 30 s
	$(GO) test -run '^$$' -fuzz FuzzSetManagedKeys -fuzztime 30s ./sshdist/
	$(GO) test -run '^$$' -fuzz FuzzParsePubKeys -fuzztime 30s ./sshdist/
	$(GO) test -run '^$$' -fuzz FuzzServeUpdate -fuzztime 30s ./sshdist/

lint: ## gofmt and go vet
	@test -z "$$(gofmt -l .)" || (gofmt -l .; echo "gofmt needed"; exit 1)
	$(GO) vet ./...

demo: deps build ## start 4 loopback hosts with real sshd, init, join x3, demote --auto-promote, list
	./scripts/demo.sh up

demo-stop: ## stop the demo hosts and remove their files
	./scripts/demo.sh down
