# Sigil — see README.md.
GO          ?= go
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
FUZZTIME    ?= 5s
BIN         := bin/sigil

# package:FuzzTarget pairs run briefly by `make test` (longer with FUZZTIME=1m make fuzz).
FUZZ_TARGETS := \
	./ca/audit:FuzzCanonical \
	./ca/audit:FuzzVerifyExport \
	./ca/keystore:FuzzOpen \
	./ca:FuzzParseCSR \
	./ca:FuzzSignCSR \
	./ca:FuzzCanonicalURI \
	./ca:FuzzDNSName \
	./api:FuzzParseSignRequest \
	./api:FuzzParseRenewRequest \
	./api:FuzzParseLogQuery \
	./api/wire:FuzzCertFilterFromQuery \
	./ca/audit:FuzzParseLogLeaf \
	./cmd/sigil:FuzzParseConfig \
	./acme:FuzzParseJWS \
	./acme:FuzzNewOrderPayload \
	./acme:FuzzFinalizePayload \
	./acme:FuzzRevokePayload \
	./acme:FuzzCAAIssueValue \
	./ca:FuzzParseRevocationReason \
	./api:FuzzParseRevokeRequest \
	./revocation:FuzzOCSPRequest

.PHONY: all build run test short unit fuzz bench bench-https lint clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -o $(BIN) ./cmd/sigil

# A complete development CA: HTTPS on 127.0.0.1:8443, HTTP on 127.0.0.1:8080,
# data in .sigil-dev/ (recreated each run: the dev passphrase lives only in memory).
DEV_DATA ?= .sigil-dev
run: build
	rm -rf $(DEV_DATA)
	./$(BIN) dev --data $(DEV_DATA)

# The whole suite: unit, integration (child processes, openssl) and brief fuzzing.
test: unit fuzz

# The quick loop: every package's fast tests; cmd/sigil's child-process
# tests (a real `sigil serve`, the CLI against it) skip with -short.
short:
	$(GO) test -short -count=1 ./...

unit:
	$(GO) test -race -count=1 -timeout 15m ./...

fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; fn=$${t##*:}; \
		echo "fuzz $$fn ($$pkg, $(FUZZTIME))"; \
		out=$$(mktemp); \
		$(GO) test -run='^$$' -fuzz="^$$fn$$" -fuzztime=$(FUZZTIME) $$pkg >$$out 2>&1 || \
			{ cat $$out; rm -f $$out; exit 1; }; \
		rm -f $$out; \
	done

# In-process benchmarks: issuance at 1 and 32 callers, store commits, audit verification,
# and one managed-renew run over 10,000 due managed certificates beside API issuance.
bench:
	$(GO) test -run='^$$' -bench=. -benchtime=3s ./ca ./store ./ca/audit
	$(GO) test -run='^$$' -bench=ManagedRenew -benchtime=1x ./lifecycle

# Issuance over HTTPS against a dev server on free local ports.
bench-https: build
	./scripts/bench-https.sh $(BIN)

lint:
	@test -z "$$(gofmt -l .)" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...
	@# go.mod and go.sum must already be tidy (a test-only import is still a direct requirement).
	$(GO) mod tidy -diff

clean:
	rm -rf bin $(DEV_DATA)
