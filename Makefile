# DSN — one entry point. `make help` lists the targets.
SHELL := /bin/bash
GO ?= go
BIN := bin/dsn
STATICCHECK_VERSION ?= 2026.1

.PHONY: help build test lint verify fuzz bench clean proto

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
	$(MAKE) --no-print-directory proto
	git diff --exit-code -- api

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

PROTOC_GEN_GO_VERSION ?= v1.36.12
PROTOC_GEN_GO_GRPC_VERSION ?= v1.6.2

proto: ## Regenerate api/ Go code (needs protoc: apt-get install protobuf-compiler)
	GOBIN=$(CURDIR)/bin $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	GOBIN=$(CURDIR)/bin $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
	PATH=$(CURDIR)/bin:$$PATH protoc -I api --go_out=api --go_opt=paths=source_relative \
	  --go-grpc_out=api --go-grpc_opt=paths=source_relative api/dsn/v1/*.proto
