# DSN — one entry point. `make help` lists the targets.
SHELL := /bin/bash
GO ?= go
BIN := bin/dsn
STATICCHECK_VERSION ?= v0.8.2

.PHONY: help build test lint verify fuzz bench clean proto run-dsn kill-dsn run-listener run-spammer sim sim-long image lab-render lab-up lab-down lab-status e2e

help: ## List the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*## "}{printf "  %-14s %s\n", $$1, $$2}'

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

# --- local committee: 7 processes on this machine --------------------------
DSN_DIR ?= .dsn
NODES ?= 7
# Seven runtimes on one machine: one thread each, as the lab (its manifest's gomaxprocs).
NODE_GOMAXPROCS ?= 1
ENDPOINT ?= 127.0.0.1:64011
FROM_ID ?= 0
SLEEP ?= 10ms
RATE ?= 0
# Each submission waits until its transaction is ordered: one sender alone
# reaches about 20 tx/s; more senders reach RATE.
CONCURRENCY ?= 1

run-dsn: build ## Start NODES local nodes (node N: export 640N1, transactions 640N2) at GOMAXPROCS=NODE_GOMAXPROCS (1); logs and pids in .dsn/
	@if [ -f $(DSN_DIR)/pids ]; then echo "$(DSN_DIR)/pids exists: run 'make kill-dsn' first"; exit 1; fi
	@mkdir -p $(DSN_DIR)
	@[ -f $(DSN_DIR)/committee/committee.toml ] || $(BIN) committee new --nodes $(NODES) --out $(DSN_DIR)/committee >/dev/null
	@for i in $$(seq 1 $(NODES)); do \
	  GOMAXPROCS=$(NODE_GOMAXPROCS) $(BIN) node --config $(DSN_DIR)/committee/node-$$i.toml > $(DSN_DIR)/node-$$i.log 2>&1 & echo $$! >> $(DSN_DIR)/pids; \
	done
	@echo "started $(NODES) nodes: pids in $(DSN_DIR)/pids, logs in $(DSN_DIR)/node-N.log"

kill-dsn: ## Stop exactly the nodes run-dsn started
	@if [ -f $(DSN_DIR)/pids ]; then kill $$(cat $(DSN_DIR)/pids) 2>/dev/null || true; rm -f $(DSN_DIR)/pids; echo stopped; else echo "no $(DSN_DIR)/pids"; fi

run-listener: build ## Follow pre-blocks: make run-listener ENDPOINT=127.0.0.1:64011 FROM_ID=0
	$(BIN) listen --endpoint $(ENDPOINT) --from $(FROM_ID)

run-spammer: build ## Send transactions: make run-spammer ENDPOINT=127.0.0.1:64012 [SLEEP=10ms] [RATE=100 CONCURRENCY=8]
	$(BIN) spam --endpoint $(ENDPOINT) --sleep $(SLEEP) --rate $(RATE) --concurrency $(CONCURRENCY)

SEED ?= 1
MIX ?= -1
SEEDS ?= 5000

sim: ## Replay one simulator seed with its trace: make sim SEED=30 [MIX=2]
	$(GO) test ./internal/sim -run '^TestReplay$$' -seed $(SEED) -mix $(MIX) -count=1 -v

sim-long: ## Run many simulator seeds (not in CI): make sim-long SEEDS=5000
	$(GO) test ./internal/sim -run '^TestSeeds$$' -seeds $(SEEDS) -count=1 -timeout 0 -v | grep -vE '^\s+--- PASS|^=== '

# --- container lab -----------------------------------------------------------
MANIFEST ?= lab/manifests/default.toml
LAB_PROJECT ?= dsn-lab
COMPOSE ?= docker-compose -p $(LAB_PROJECT) -f compose/docker-compose.yml

image: build ## Build the dsn:lab image (FROM scratch + the static binary and the DSN kernel; nothing is pulled)
	$(BIN) kernel build --pkg ./kernel/dsn --out bin/dsn.wasm
	docker build -q -t dsn:lab -f lab/Dockerfile bin/ >/dev/null && echo "built dsn:lab"
	@docker image prune -f --filter label=dsn.image=1 >/dev/null  # earlier builds, untagged now (ours only)

lab-render: build ## Render MANIFEST into compose/docker-compose.yml and compose/config/
	$(BIN) lab render --manifest $(MANIFEST) --out compose

lab-up: image lab-render ## Start the lab (7 nodes, sequencer, rollup node, L1 sandbox), wait until healthy, print endpoints and state
	$(COMPOSE) up -d
	@for i in $$(seq 1 60); do $(BIN) lab status --manifest $(MANIFEST) >/dev/null 2>&1 && break; sleep 1; done
	@$(BIN) lab status --manifest $(MANIFEST)

lab-status: ## Print the lab's endpoints and each service's state
	@$(BIN) lab status --manifest $(MANIFEST)

lab-down: ## Remove the lab's containers, network and volumes (only those)
	$(COMPOSE) down -v --remove-orphans

e2e: ## Run the end-to-end tests against containers (needs a Docker engine)
	$(GO) test ./e2e -count=1 -v
