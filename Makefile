# DSN — one entry point. `make help` lists the targets.
SHELL := /bin/bash
GO ?= go
BIN := bin/dsn
STATICCHECK_VERSION ?= 2026.1

.PHONY: help build test lint verify fuzz bench clean

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*## "}{printf "  %-14s %s\n", $$1, $$2}'

build: ## Build the statically linked dsn binary into bin/
	CGO_ENABLED=0 $(GO) build -o $(BIN) ./cmd/dsn

test: ## Run every test (the README's test command)
	$(GO) test ./...

lint: ## gofmt, go vet and staticcheck
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

verify: ## go.mod tidy and generated code current
	$(GO) mod tidy -diff
	@if [ -f api/Makefile.inc ] || grep -q '^proto:' Makefile; then $(MAKE) --no-print-directory proto && git diff --exit-code -- api; fi

fuzz: ## Run each fuzz target for FUZZTIME (default 30s)
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list 'Fuzz.*' $$pkg 2>/dev/null | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $${FUZZTIME:-30s} $$pkg || exit 1; \
	  done; \
	done

bench: ## Run the benchmarks with tabular reports
	$(GO) test ./bench -run '^$$' -bench . -benchtime 1x

clean: ## Remove build outputs
	rm -rf bin
