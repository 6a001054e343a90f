# sipwarden — `make help` lists the targets.
GO        ?= go
PKGS      ?= ./...
FUZZTIME  ?= 30s
BENCHOUT  ?= bench/latest.txt
BENCHBASE ?= bench/base.txt
SHELL     := /bin/bash

.PHONY: help build install test test-unit test-e2e vet fmtcheck fuzz bench benchcmp run clean

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
COMMIT    ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null)
LDFLAGS   := -X github.com/sipwarden/sipwarden/internal/cli.version=$(VERSION) -X github.com/sipwarden/sipwarden/internal/cli.commit=$(COMMIT)

build: ## build bin/sipwarden, stamped with the version and commit (bin/sipwarden version)
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/sipwarden ./cmd/sipwarden

install: ## install sipwarden into $(go env GOPATH)/bin, stamped like build
	$(GO) install -ldflags "$(LDFLAGS)" ./cmd/sipwarden

vet: ## go vet every package
	$(GO) vet $(PKGS)

fmtcheck: ## fail when a Go file is not gofmt-formatted
	@out=$$(gofmt -l cmd internal test bench); if [ -n "$$out" ]; then echo "not gofmt-formatted:"; echo "$$out"; exit 1; fi

test: fmtcheck vet ## gofmt check, vet, then every test with the race detector (unit, then end-to-end and red team one package at a time: they share loopback addresses and ports); under CI=true a skipped test fails the run
	set -o pipefail; ( $(GO) test -race -count=1 -timeout 20m -json $$($(GO) list $(PKGS) | grep -v -e /test/e2e -e /test/redteam); unit=$$?; \
	  $(GO) test -race -count=1 -timeout 20m -json -p 1 ./test/e2e/... ./test/redteam/...; e2e=$$?; exit $$((unit | e2e)) ) | $(GO) run ./test/testreport

test-unit: ## unit tests only (no real peers)
	$(GO) test -race -count=1 $$($(GO) list ./... | grep -v -e /test/e2e -e /test/redteam)

test-e2e: ## end-to-end and red-team tests: the real binary with SIPp, baresip, secsipidx, tshark and Go clients
	$(GO) test -race -count=1 -v -timeout 15m ./test/e2e/... ./test/redteam/...

fuzz: ## run every Fuzz* target for FUZZTIME each
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

bench: ## Go benchmarks, -count=10 -benchmem, into BENCHOUT
	$(GO) test -run '^$$' -bench . -benchmem -count=10 $$($(GO) list ./... | grep -v -e /test/e2e -e /test/redteam) | tee $(BENCHOUT)

benchcmp: ## compare BENCHBASE with BENCHOUT using benchstat
	$(GO) run golang.org/x/perf/cmd/benchstat@latest $(BENCHBASE) $(BENCHOUT)

run: ## run with the quickstart configuration
	$(GO) run ./cmd/sipwarden serve --config examples/quickstart.yaml

clean: ## remove build output
	rm -rf bin
