# A front door for the scripts: each recipe is one line over scripts/, which stay the interface
# (the README's two commands are scripts/demo.sh and scripts/test.sh; a new machine may lack make).
# `make help` lists the recipes. Arguments: make suite NAMES="e2e helm_chart" ARGS="-- the_csi".
.PHONY: help setup check gates unit suite e2e test demo stack release clean-room fuzz bench-load bench-instructions bench-allocations bench-copier

help: ## this list
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 22
setup: ## install and build everything the tests need (cached)
	scripts/setup.sh
check: ## the preflight alone: one line per missing package or toolchain
	scripts/setup.sh --check
gates: ## rustfmt, shellcheck, clippy -D warnings
	scripts/test.sh gates
unit: ## the crates' unit tests
	scripts/test.sh unit
suite: ## test binaries by name: make suite NAMES="helm_chart e2e" ARGS="-- the_csi"
	scripts/test.sh suite $(NAMES) $(ARGS)
e2e: ## the end-to-end suite on the real node (ARGS="-- NAME" for one scenario)
	scripts/test.sh suite e2e $(ARGS)
test: ## the whole suite, as CI runs it
	scripts/test.sh
demo: ## set up, then the demo on the real node
	scripts/demo.sh
stack: ## the whole stack for your own pods, until standard input closes
	cargo test -p dragonfly-injector --test e2e -- --stack
release: ## the release tier: every platform in release profiles, its suites, the clean room
	scripts/release.sh
clean-room: ## setup.sh in a debootstrap root from nothing
	scripts/clean-room.sh
fuzz: ## every fuzz target for FUZZ_SECONDS (default 15)
	scripts/fuzz.sh $(or $(FUZZ_SECONDS),15)
bench-load: ## open-loop HTTPS load on serve (RATES, DURATION, BESIDE)
	scripts/bench-load.sh
bench-instructions: ## instructions per review (callgrind)
	scripts/bench-instructions.sh
bench-allocations: ## allocations per review, ours beside the floors
	cargo bench -p dragonfly-injector --bench allocations
bench-copier: ## the copier installing the real dfget (hyperfine)
	scripts/bench-copier.sh
