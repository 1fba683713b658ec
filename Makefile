# Beskar7 appliance. `make run` starts it on safe defaults; `make test` runs every test.
SHELL := /bin/bash
IPXE_FILES := undionly.kpxe ipxe.efi snponly.efi

.PHONY: all deps assets build run test unit e2e bench clean

all: build

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

deps: node_modules/.package-lock.json

# iPXE binaries from Debian's ipxe package, served over TFTP and HTTP
assets: $(addprefix assets/ipxe/,$(IPXE_FILES))
assets/ipxe/%: /usr/lib/ipxe/%
	@mkdir -p assets/ipxe
	cp $< $@
/usr/lib/ipxe/%:
	@echo "missing $@: installing Debian's ipxe package" && apt-get install -y -qq ipxe >/dev/null

build: deps
	npx tsc -p tsconfig.json

run: deps assets
	node --import tsx src/main.ts $(ARGS)

test: deps assets
	bash test/setup-host.sh
	npm test

unit: deps
	npx tap test/unit

e2e: deps assets
	bash test/setup-host.sh
	npx tap test/e2e

bench: deps assets
	bash test/setup-host.sh
	node --import tsx test/bench/boot-path.ts

clean:
	rm -rf dist .tap
