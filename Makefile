# Airlock build, run and test entry points. See README.md.
GO ?= go
BIN := bin/airlock

.PHONY: build run test bench fuzz vet clean

build:
	$(GO) build -o $(BIN) ./cmd/airlock

# The local quickstart: CA, edge, connector and demo MCP server in one process.
run: build
	./$(BIN) dev

test:
	$(GO) vet ./...
	$(GO) test -race -shuffle=on -timeout 20m ./...

# Side-by-side benchmark: tools/call through Airlock and directly.
bench: build
	./$(BIN) bench

# A short run of every fuzz target (the corpus lives in testdata/fuzz).
fuzz:
	$(GO) test -run '^$$' -fuzz FuzzReadFrame -fuzztime 30s ./pkg/tunnel/
	$(GO) test -run '^$$' -fuzz FuzzParse -fuzztime 30s ./pkg/mcp/

clean:
	rm -rf bin
