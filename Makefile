# smimed — build and test. `make test` is the test command CI runs.
GO ?= go
PREFIX ?= /usr
DESTDIR ?=

.PHONY: all build test vet fmt-check fuzz bench clean

all: build

build:
	$(GO) build -o smimed ./cmd/smimed

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

test: fmt-check vet
	$(GO) test -race -shuffle=on -count=1 ./...

# Each fuzz target for a short while (FUZZTIME=10m for a longer run).
FUZZTIME ?= 30s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzProcess$$' -fuzztime $(FUZZTIME) ./harvest
	$(GO) test -run '^$$' -fuzz '^FuzzDecrypt$$' -fuzztime $(FUZZTIME) ./harvest/cms
	$(GO) test -run '^$$' -fuzz '^FuzzParseSignedData$$' -fuzztime $(FUZZTIME) ./harvest/cms
	$(GO) test -run '^$$' -fuzz '^FuzzToDER$$' -fuzztime $(FUZZTIME) ./harvest/cms

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./harvest

clean:
	rm -f smimed
