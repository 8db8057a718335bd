# Sigil — see README.md.
GO          ?= go
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
FUZZEXECS   ?= 10000
# FUZZTIME, if set (500000x, or a duration such as 1m), replaces every target's own budget.
FUZZTIME    ?=
BIN         := bin/sigil

# package:FuzzTarget[:execs] run briefly by `make test` (longer with FUZZTIME=500000x make fuzz).
# Budgets are execution counts, FUZZEXECS unless a target names its own (the
# slow ones, about 5 s each on 2 cores): a -fuzztime duration can fail a
# healthy target with "context deadline exceeded" when the coordinator's
# deadline races a worker (go.dev/issue/75804, unfixed in Go 1.26).
FUZZ_TARGETS := \
	./ca/audit:FuzzCanonical \
	./ca/audit:FuzzVerifyExport \
	./ca/keystore:FuzzOpen \
	./ca/keybackend:FuzzParseURI \
	./ca:FuzzParseCSR \
	./ca:FuzzSignCSR:1000 \
	./ca:FuzzCanonicalURI \
	./ca:FuzzDNSName \
	./api:FuzzParseSignRequest \
	./api:FuzzParseRenewRequest \
	./api:FuzzParseLogQuery \
	./api/wire:FuzzCertFilterFromQuery \
	./ca/audit:FuzzParseLogLeaf \
	./cmd/sigil:FuzzParseConfig:3000 \
	./acme:FuzzParseJWS \
	./acme:FuzzNewOrderPayload \
	./acme:FuzzFinalizePayload \
	./acme:FuzzRevokePayload \
	./acme:FuzzCAAIssueValue \
	./ca:FuzzParseRevocationReason \
	./api:FuzzParseRevokeRequest \
	./revocation:FuzzOCSPRequest

.PHONY: all build run test test-postgres short unit fuzz bench bench-https lint clean

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

# The CLI's in-process tests with every CA on PostgreSQL (pgtest databases);
# SIGIL_TEST_STORE=postgres make test runs the whole suite so.
test-postgres:
	SIGIL_TEST_STORE=postgres $(GO) test -short -count=1 ./cmd/sigil

unit:
	$(GO) test -race -count=1 -timeout 15m ./...

fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; fn=$${t#*:}; execs=$${fn#*:}; fn=$${fn%%:*}; \
		[ "$$execs" != "$$fn" ] || execs=; \
		budget=$${execs:-$(FUZZEXECS)}x; \
		[ -z "$(FUZZTIME)" ] || budget=$(FUZZTIME); \
		echo "fuzz $$fn ($$pkg, $$budget)"; \
		out=$$(mktemp); \
		$(GO) test -run='^$$' -fuzz="^$$fn$$" -fuzztime=$$budget $$pkg >$$out 2>&1 || \
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
