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
# reverse proxy and frp v0.65.0 over QUIC (built into the user cache).
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
	@for t in $(FUZZ_TARGETS); do \
		echo "== $${t%%:*} ($(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$${t%%:*}$$" -fuzztime $(FUZZTIME) "$${t#*:}" || exit 1; \
	done

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

# The security suite: every test that sends what an attacker would
# (credentials, tokens, bodies, HTTP framing, paths, tunnel hellos,
# policy and plugin failures) and proves what reached the upstream.
SECURITY_TESTS := Refusal|Refused|Refuses|CredentialsStay|SessionBelongsToItsAgent|ScopeIsACeiling|\
	FramingTricks|Slowloris|HostileAnswers|BrokenPolicy|PluginVetoes|AuditFailureDenies|Revocation|\
	UpstreamSeesAssertionNotToken|NonCanonical|Proxy|TunnelAbuse|ForeignCertificate
security:
	@$(GO) test -race -count=1 -json -run '$(SECURITY_TESTS)' ./edge/ ./agent/ ./pkg/... ./connector/ \
		| $(GO) run ./internal/testcount security

clean:
	rm -rf bin
