# smimed — build and test. `make test` is the test command CI runs.
GO ?= go
PREFIX ?= /usr
DESTDIR ?=

.PHONY: all build test test-deps test-deps-check test-deps-ensure vet fmt-check fuzz bench clean install

all: build

# The release binary, as make install installs it (stamped with the git
# revision; see smimed version). INSTALL_BIN is where it is written.
INSTALL_BIN ?= smimed
build:
	$(GO) build -trimpath -buildvcs=auto -o $(INSTALL_BIN) ./cmd/smimed

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

# The test prerequisites (Debian packages: Dovecot, OpenSSL, gcc for -race,
# ...) are listed in .ci/test-deps. make test checks them first: when some
# are missing it installs them if it runs as root where apt-get is, and
# otherwise stops with one line naming them and the command that installs
# them (sudo make test-deps).
test-deps:
	.ci/test-deps install

test-deps-check:
	@.ci/test-deps check

test-deps-ensure:
	@.ci/test-deps ensure

# The external interop corpus (../shared/corpus beside the checkout, or
# $SMIMED_CORPUS): go test ./... shows no output of a package that passes,
# so the corpus tests' skip is said here.
CORPUS = $(or $(SMIMED_CORPUS),$(abspath $(CURDIR)/../shared/corpus))

test: test-deps-ensure fmt-check vet
	@[ -d "$(CORPUS)" ] || echo "make test: the corpus tests will skip: $(CORPUS) not found (set SMIMED_CORPUS to the corpus's directory)"
	$(GO) test -race -shuffle=on -count=1 ./...

# Each fuzz target for a short while (FUZZTIME=10m for a longer run).
FUZZTIME ?= 30s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzProcess$$' -fuzztime $(FUZZTIME) ./harvest
	$(GO) test -run '^$$' -fuzz '^FuzzFromField$$' -fuzztime $(FUZZTIME) ./harvest
	$(GO) test -run '^$$' -fuzz '^FuzzProcessMemory$$' -fuzztime $(FUZZTIME) ./harvest
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeBase64$$' -fuzztime $(FUZZTIME) ./harvest
	$(GO) test -run '^$$' -fuzz '^FuzzParseCertificates$$' -fuzztime $(FUZZTIME) ./harvest
	$(GO) test -run '^$$' -fuzz '^FuzzNormalizeAddress$$' -fuzztime $(FUZZTIME) ./harvest
	$(GO) test -run '^$$' -fuzz '^FuzzDecrypt$$' -fuzztime $(FUZZTIME) ./harvest/cms
	$(GO) test -run '^$$' -fuzz '^FuzzParseSignedData$$' -fuzztime $(FUZZTIME) ./harvest/cms
	$(GO) test -run '^$$' -fuzz '^FuzzToDER$$' -fuzztime $(FUZZTIME) ./harvest/cms
	$(GO) test -run '^$$' -fuzz '^FuzzOpenSSLName$$' -fuzztime $(FUZZTIME) ./harvest/cms
	$(GO) test -run '^$$' -fuzz '^FuzzPrepare$$' -fuzztime $(FUZZTIME) ./harvest/compose
	$(GO) test -run '^$$' -fuzz '^FuzzEncrypt$$' -fuzztime $(FUZZTIME) ./harvest/compose
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) ./harvest/pkcs12
	$(GO) test -run '^$$' -fuzz '^FuzzParseCRL$$' -fuzztime $(FUZZTIME) ./harvest/revocation
	$(GO) test -run '^$$' -fuzz '^FuzzUserCopy$$' -fuzztime $(FUZZTIME) ./archive
	$(GO) test -run '^$$' -fuzz '^FuzzHeaderFields$$' -fuzztime $(FUZZTIME) ./archive
	$(GO) test -run '^$$' -fuzz '^FuzzHeaderValue$$' -fuzztime $(FUZZTIME) ./archive
	$(GO) test -run '^$$' -fuzz '^FuzzIsEInvoice$$' -fuzztime $(FUZZTIME) ./archive
	$(GO) test -run '^$$' -fuzz '^FuzzParseResponse$$' -fuzztime $(FUZZTIME) ./archive/timestamp
	$(GO) test -run '^$$' -fuzz '^FuzzParseTSTInfo$$' -fuzztime $(FUZZTIME) ./archive/timestamp
	$(GO) test -run '^$$' -fuzz '^FuzzParseAnswers$$' -fuzztime $(FUZZTIME) ./archive/worm
	$(GO) test -run '^$$' -fuzz '^FuzzControlRequest$$' -fuzztime $(FUZZTIME) ./daemon/admin
	$(GO) test -run '^$$' -fuzz '^FuzzHeader$$' -fuzztime $(FUZZTIME) ./daemon/gateway
	$(GO) test -run '^$$' -fuzz '^FuzzLogin$$' -fuzztime $(FUZZTIME) ./daemon/gateway
	$(GO) test -run '^$$' -fuzz '^FuzzSMTPSinkSession$$' -fuzztime $(FUZZTIME) ./daemon/testenv

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./harvest
	$(GO) test -run '^$$' -bench . -benchmem ./archive
	$(GO) test -run '^$$' -bench . -benchtime 300x ./archive/worm
	$(GO) test -run '^$$' -bench . -benchtime 1x ./daemon

clean:
	rm -f smimed

# Install the binary and the service files (systemd/README.md): PREFIX
# (default /usr) takes the binary and the systemd, sysusers.d and tmpfiles.d
# files, and the unit's ExecStart= follows it; the example configuration
# goes to /etc/smimed (where the unit looks, whatever PREFIX) beside
# smimed.toml, which is never written. DESTDIR stages it all under another
# root for packaging. install only copies: build first (make, as the user
# who has Go), then sudo make install, which needs no Go. When the binary is
# missing or older than the sources, install builds it if Go is on PATH and
# stops with a message if not.
UNITDIR = $(DESTDIR)$(PREFIX)/lib/systemd/system
install:
	@if [ ! -f '$(INSTALL_BIN)' ]; then why='is not built'; \
	elif [ -n "$$(find . -path ./.git -prune -o -path '*/testdata' -prune -o \( -name '*.go' ! -name '*_test.go' -o -name go.mod -o -name go.sum \) -newer '$(INSTALL_BIN)' -print | head -n 1)" ]; then why='is older than the sources'; \
	else exit 0; fi; \
	if ! command -v '$(GO)' >/dev/null 2>&1; then \
		echo "make install: $(INSTALL_BIN) $$why and there is no $(GO) on PATH to build it: run make first (as a user who has Go), then make install again" >&2; exit 1; \
	fi; \
	echo '$(GO) build -trimpath -buildvcs=auto -o $(INSTALL_BIN) ./cmd/smimed'; \
	$(GO) build -trimpath -buildvcs=auto -o '$(INSTALL_BIN)' ./cmd/smimed
	install -D -m 0755 $(INSTALL_BIN) $(DESTDIR)$(PREFIX)/bin/smimed
	install -d -m 0755 $(UNITDIR)
	sed 's|^ExecStart=/usr/bin/smimed |ExecStart=$(PREFIX)/bin/smimed |' systemd/smimed.service >$(UNITDIR)/smimed.service
	chmod 0644 $(UNITDIR)/smimed.service
	install -D -m 0644 systemd/smimed.sysusers $(DESTDIR)$(PREFIX)/lib/sysusers.d/smimed.conf
	install -D -m 0644 systemd/smimed.tmpfiles $(DESTDIR)$(PREFIX)/lib/tmpfiles.d/smimed.conf
	install -D -m 0644 systemd/smimed.toml.example $(DESTDIR)/etc/smimed/smimed.toml.example
