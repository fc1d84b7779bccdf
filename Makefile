# Airlock build, run and test entry points. See README.md.
GO ?= go
BIN := bin/airlock

.PHONY: build run test bench fuzz conformance soak security vet clean

build:
	$(GO) build -o $(BIN) ./cmd/airlock

# The local quickstart: CA, edge, connector and demo MCP server in one process.
run: build
	./$(BIN) dev

test:
	$(GO) vet ./...
	$(GO) test -race -shuffle=on -timeout 20m ./...

# Side-by-side benchmarks: tools/call through Airlock and directly (airlock
# bench), then Airlock against its peers on the same upstream: a plain Go
# reverse proxy and frp v0.65.0 over QUIC (built into the user cache), on
# calls, reads, sessions, 10,000 SSE streams, restarts and idle tunnels.
bench: build
	./$(BIN) bench
	$(GO) run ./internal/peerbench

# A run of every fuzz target, FUZZTIME each (the corpus lives in each
# package's testdata/fuzz; `make test` replays it). A crash leaves its input
# there: commit it, and it is a regression test.
FUZZTIME ?= 30s
FUZZ_TARGETS := FuzzReadFrame:./pkg/tunnel/ FuzzParse:./pkg/mcp/ FuzzRoutingHeaders:./pkg/mcp/ \
	FuzzResourcePath:./edge/ FuzzParseScope:./pkg/token/ FuzzVerifyAccess:./pkg/token/ \
	FuzzEventReader:./agent/
fuzz:
	@passed=0; failed=0; \
	for t in $(FUZZ_TARGETS); do \
		echo "== $${t%%:*} ($(FUZZTIME))"; \
		if $(GO) test -run '^$$' -fuzz "^$${t%%:*}$$" -fuzztime $(FUZZTIME) "$${t#*:}"; then \
			passed=$$((passed+1)); else failed=$$((failed+1)); fi; \
	done; \
	echo "fuzz: $$passed passed, $$failed failed"; [ $$failed -eq 0 ]

# The MCP conformance suite against the go-sdk's conformance server,
# directly and through Airlock, verdicts compared check by check. Installs
# Node 22 and the pinned suites with npm into the user cache folder.
conformance:
	$(GO) run ./internal/conformance

# 64 agents through two connectors for SOAK (default 60s), with the race
# detector: lost, duplicated, misrouted and wrongly decided requests are
# counted, and must all be zero.
SOAK ?= 60s
soak:
	@$(GO) test -race -run '^TestSoak$$' -count=1 -timeout 0 -v ./edge/ -args -soak=$(SOAK) > soak.log 2>&1; \
		status=$$?; grep -E '^(soak:|---|ok|FAIL)|soak_test' soak.log; rm -f soak.log; exit $$status

# The security suite: the table of cases in docs/security.md, each row an
# attack (credentials, tokens, bodies, HTTP framing, paths, tunnel hellos,
# policy and plugin failures), its expected answer and the test that
# proves it. The table names the tests to run; testcount prints it with
# each row's result and "security: N passed, N failed", counting rows.
SECURITY_CASES := docs/security.md
security:
	@args=$$($(GO) run ./internal/testcount -cases $(SECURITY_CASES) -runargs) || exit 1; \
		$(GO) test -race -count=1 -json $$args | $(GO) run ./internal/testcount -cases $(SECURITY_CASES) security

clean:
	rm -rf bin
