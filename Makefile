# Beskar7 appliance. `make run` starts it (a demo lab when no CONFIG is given); `make test` runs every test.
SHELL := /bin/bash
IPXE_FILES := undionly.kpxe ipxe.efi snponly.efi

.PHONY: all deps setup assets inspector build run cli test unit e2e mutation bench bench-deploy bench-inspection bench-storm bench-ha bench-baseline install deb clean

# the demo lab and the tests install Debian packages, create network namespaces and bind ports 67/69/80/4011
need-root = @if [ "$$(id -u)" != 0 ]; then echo "make $@ needs root: it installs Debian packages, creates network namespaces and binds the DHCP/TFTP/HTTP ports (run it as root, or with sudo)" >&2; exit 1; fi

all: build

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

deps: node_modules/.package-lock.json

# Debian packages the tests and the demo lab use, the iPXE binaries and the demo image
setup: deps
	$(need-root)
	bash test/setup-host.sh

# iPXE binaries from Debian's ipxe package, served over TFTP and HTTP
assets: $(addprefix assets/ipxe/,$(IPXE_FILES)) assets/ipxe/shimx64.efi
assets/ipxe/shimx64.efi: assets/build-signed-boot.sh assets/lib-kernel.sh
	bash assets/build-signed-boot.sh
assets/ipxe/%: /usr/lib/ipxe/%
	@mkdir -p assets/ipxe
	cp $< $@
# --reinstall: the package may be installed with its files gone (seen on a CI machine)
/usr/lib/ipxe/%:
	@echo "missing $@: installing Debian's ipxe package" && apt-get update -qq && apt-get install --reinstall -y -qq ipxe >/dev/null

# the hardware inspector (kernel + initramfs with the agent), from Debian packages only
inspector: assets/inspector/initrd.img assets/inspector/arm64/initrd
assets/inspector/arm64/initrd: assets/build-inspector-arm64.sh assets/lib-kernel.sh $(wildcard assets/inspector-src/*)
	bash assets/build-inspector-arm64.sh
assets/inspector/initrd.img: assets/inspector/initrd
	ln -f $< $@
assets/inspector/initrd: assets/build-inspector.sh assets/lib-kernel.sh $(wildcard assets/inspector-src/*)
	bash assets/build-inspector.sh

# dist/ holds everything the service runs (compiled src and the dashboard), and no tests
build: deps
	rm -rf dist && npm run -s build

# what the package runs: the compiled service with the node flags of the unit's ExecStart
NODE_FLAGS = $(shell sed -n 's|^ExecStart=/usr/bin/node \(.*\) /opt/beskar7/dist/src/main.js.*|\1|p' systemd/beskar7.service)

# CONFIG=/etc/beskar7/beskar7.yaml runs on a real network; without it, as root, the demo lab
run:
ifdef CONFIG
	@$(MAKE) -s build assets
	node $(NODE_FLAGS) dist/src/main.js --config $(CONFIG)
else
	$(need-root)
	@$(MAKE) -s build assets
	bash test/setup-host.sh && node --import tsx test/lab/demo.ts
endif

# the CLI from the checkout: make cli ARGS="hosts"
cli: deps
	@node --import tsx src/admin/cli/main.ts $(ARGS)

test:
	$(need-root)
	@$(MAKE) -s setup
	npm test

unit: deps
	npx tap build >/dev/null && npx tap test/unit/*.test.ts

e2e: setup
	npx tap build >/dev/null && npx tap test/e2e/*.test.ts

# StrykerJS over the modules with security claims (test/mutation/modules.json); slow, so not in `make test`.
# MODULES="rate-limit secrets" runs some; the score and each surviving mutant are printed and in .cache/mutation
mutation: deps assets
	node --import tsx test/mutation/run.ts $(MODULES)

# ratios against dnsmasq, atftpd, tftpd-hpa, nginx and the storm of commit 8601c04 measured in the same run;
# BENCH_OUT=FILE.json (+ .svg); the benchmarks run the compiled service (dist/), as systemd does
bench: setup build
	node --import tsx test/bench/bench.ts

# a 1 GiB whole-disk image onto a QEMU disk by the inspector (raw, gzip, zstd) against wget | dd of the raw image
bench-deploy: setup build
	BENCH_ONLY=deploy node --import tsx test/bench/bench.ts

# one BIOS and one UEFI QEMU machine through the whole chain, the time of each stage
bench-inspection: setup
	node --import tsx test/bench/inspection.ts

# N simulated hosts (STORM_N=50,200,1000) from Machine creation to Provisioned
bench-storm: setup build
	node --import tsx test/bench/storm.ts

# the same storm on LevelDB (one appliance) and on etcd (two appliances, 3 members): STORM_N=200
bench-ha: setup build
	node --import tsx test/bench/storm-backends.ts

# the appliance's CPU per provisioned host against an earlier commit (BASELINE=8601c04), in turns in one run
bench-baseline: setup build
	BENCH_ONLY=baseline node --import tsx test/bench/bench.ts

# Installs to $(PREFIX) as the systemd service beskar7 (user beskar7, state in /var/lib/beskar7)
PREFIX ?= /opt/beskar7
install: build assets inspector
	$(need-root)
	id -u beskar7 >/dev/null 2>&1 || useradd --system --user-group --home-dir /var/lib/beskar7 --shell /usr/sbin/nologin beskar7
	[ ! -f /etc/beskar7/beskar7.yaml ] || cp /etc/beskar7/beskar7.yaml /etc/beskar7/beskar7.yaml.keep
	bash systemd/stage.sh / $(PREFIX) /etc/systemd/system /usr/local/bin
	[ ! -f /etc/beskar7/beskar7.yaml.keep ] || mv /etc/beskar7/beskar7.yaml.keep /etc/beskar7/beskar7.yaml
	chgrp beskar7 /etc/beskar7/beskar7.yaml && chmod 0640 /etc/beskar7/beskar7.yaml
	sysctl -q -p /usr/lib/sysctl.d/60-beskar7.conf 2>/dev/null || true
	systemctl daemon-reload 2>/dev/null || true
	@echo "installed; edit /etc/beskar7/beskar7.yaml, then: systemctl enable --now beskar7"

# A Debian package (dpkg-deb): prints its path
deb: build assets inspector
	@bash systemd/make-deb.sh

clean:
	rm -rf dist .tap
