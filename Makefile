# redraft — the two commands a fresh machine needs are `make run` and `make test`.
GO        ?= go
BIN       := bin/redraft
CHAOS_BIN := bin/redraft-chaos
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X main.version=$(VERSION)

.PHONY: build run cluster test test-go test-e2e bench chaos vet clean

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/redraft

# The embedded default: one bootstrapped node on 127.0.0.1:6379, data in ./redraft-data.
run: build
	./$(BIN)

# Three local nodes in the foreground (RESP 6379/6380/6381), logs prefixed by node; Ctrl-C stops all.
cluster: build
	./scripts/cluster.sh

vet:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './e2e/*')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

test: vet build test-go test-e2e

test-go:
	$(GO) test -p 1 -count=1 -timeout 15m ./...

test-e2e: build
	@if [ ! -d e2e/node_modules ]; then cd e2e && npm ci --no-audit --no-fund; fi
	cd e2e && REDRAFT_BIN=$(CURDIR)/$(BIN) node --test --test-concurrency=1

# Benchmarks against redis-server in the same run; figures go to docs/benchmarks.md.
bench: build
	./scripts/bench.sh

# The long chaos run (>= 10 minutes, 3 and 5 nodes); figures go to docs/chaos.md.
chaos: build
	$(GO) build -o $(CHAOS_BIN) ./cmd/redraft-chaos
	./$(CHAOS_BIN) --binary $(BIN) --nodes 3 --duration 6m --faults 40 --out chaos-out/n3
	./$(CHAOS_BIN) --binary $(BIN) --nodes 5 --duration 6m --faults 40 --out chaos-out/n5

clean:
	rm -rf bin redraft-data redraft-cluster
