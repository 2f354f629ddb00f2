# Colony's entry points. `make up` and `make test` are the two commands of the README.
.PHONY: up test build release bench bench-peers proto clean

# Install what is missing, build, and run a coordinator + local node with the demo workload.
up:
	./scripts/install-deps.sh
	swift build -c release --product colony
	.build/release/colony up

# Every test: the NNG wrapper, the wire format, the coordinator core, the journal, real clusters
# of processes; then the chaos test on a network-namespace cluster (skipped without root),
# the ssh launcher through a fake ssh, a podman cluster and compose.yaml, a one-host Slurm job
# (both skipped without root), and the k8s manifest against the Kubernetes schemas.
test:
	./scripts/install-deps.sh --for-tests
	swift build --build-tests
	# The NNG wrapper's tests in a process of their own: nng's state is process-wide, and a
	# close that nng 1.5.2 leaves hanging in an end-to-end test would stall theirs.
	swift test --skip-build --disable-swift-testing --filter '^NNGTests\.'
	swift test --skip-build --disable-swift-testing --skip '^NNGTests\.'
	bash deploy/netns/chaos.sh
	bash deploy/ssh/test-launch.sh
	bash deploy/container/test-cluster.sh
	bash deploy/slurm/test-slurm.sh
	bash deploy/k8s/validate.sh
	bash clients/python/test.sh

build:
	./scripts/install-deps.sh
	swift build

# One `colony` needing only glibc (static Swift runtime, libnng, mbedTLS, SQLite): copy
# .build/release/colony to any x86_64 Linux host (deploy/build-static.sh).
release:
	./scripts/install-deps.sh
	./deploy/build-static.sh release .build

# W1-W3 of shared/BENCHMARKS.md on a release build; `make bench ARGS=--json` for JSON.
bench: release
	.build/release/colony bench $(ARGS)

# Regenerate Sources/ColonyWire/Generated from proto/ (needs protobuf-compiler).
proto:
	./scripts/install-deps.sh --with-tools
	./proto/generate.sh

clean:
	rm -rf .build .build-*

# The same workloads on Python's thread and process pools, for a same-run comparison.
bench-peers:
	python3 bench/peers.py
