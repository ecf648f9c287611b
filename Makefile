# volrep: `make run` starts the embedded demo, `make test` checks everything.
# Both install what they need on a fresh machine: Go tools pinned below
# into .bin/, and Debian packages with apt-get when a command is missing.

SHELL := /bin/bash
BIN   := $(CURDIR)/.bin
export PATH := $(BIN):$(PATH)
export GOFLAGS := -buildvcs=false

BUF_VERSION                := v1.47.2
PROTOC_GEN_GO_VERSION      := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.2
GRPCURL_VERSION            := v1.9.2
GHZ_VERSION                := v0.120.0
HEALTH_PROBE_VERSION       := v0.4.40

# command → Debian package, for every command the tests and benchmarks run.
# internal/testenv.Tools is the same list on the Go side; its tests keep the
# two equal and fail on a command that a test runs but neither lists.
DEB_TOOLS := qemu-img:qemu-utils qemu-io:qemu-utils nbdinfo:libnbd-bin nbdcopy:libnbd-bin \
             nbdkit:nbdkit fio:fio rsync:rsync systemd-analyze:systemd journalctl:systemd \
             promtool:prometheus ip:iproute2 nft:nftables python3:python3 git:git etcd:etcd-server \
             iscsi-test-cu:libiscsi-bin iscsi-ls:libiscsi-bin iscsi-inq:libiscsi-bin tgtd:tgt tgtadm:tgt \
             /usr/lib/x86_64-linux-gnu/qemu/block-iscsi.so:qemu-block-extra
# Python module → Debian package, for the Cinder driver and its stubs.
# Debian's python3 (not a pyenv one on PATH) sees these packages.
DEB_PYTHON := grpc_tools:python3-grpc-tools grpc:python3-grpcio cinder:python3-cinder oslo_config:python3-oslo.config \
              os_brick:python3-os-brick
# Debian packages of `make lab` (a real Cinder in front of volrep), checked by
# a file each installs.
DEB_LAB := /usr/lib/rabbitmq/bin/rabbitmq-server:rabbitmq-server /usr/bin/cinder-api:cinder-api \
           /usr/bin/cinder-scheduler:cinder-scheduler /usr/bin/cinder-volume:cinder-volume \
           /usr/bin/glance-api:glance-api /usr/bin/openstack:python3-openstackclient \
           /usr/bin/cinder:python3-cinderclient
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: FORCE all run test generate check-generated lint unit e2e bench tools deps clean lab lab-down lab-deps

all: test

run:
	go run ./cmd/volrepd

# No test may skip here (VOLREP_E2E_REQUIRE=1 turns internal/testenv's skips
# into failures); testreport prints what a plain go test would and fails the
# run on any SKIP that got past that.
test: deps lab-deps tools check-generated lint
	go build -o $(BIN)/testreport ./internal/testenv/testreport
	set -o pipefail; VOLREP_E2E_REQUIRE=1 go test -json -race -count=1 -timeout 40m ./... | $(BIN)/testreport

unit:
	go test -race ./...

bench: deps tools
	go run ./bench

generate: tools deps
	buf generate
	./deploy/cinder/generate.sh

# Generated code is committed; regenerating must not change it.
GENERATED := proto deploy/cinder/volrep_cinder/gen
check-generated: generate
	@if [ -n "$$(git status --porcelain -- $(GENERATED))" ]; then \
		echo "make generate changed committed files:"; git status --porcelain -- $(GENERATED); exit 1; fi

lint: tools
	buf lint
	go vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# A stamp names the installed version; a stamp whose binary is gone (the
# binaries were once tracked, and a checkout that drops them keeps the
# untracked stamps) is rebuilt through FORCE.
stale = $(if $(wildcard $(BIN)/$(1)),,FORCE)
FORCE:

tools: $(BIN)/.buf-$(BUF_VERSION) $(BIN)/.protoc-gen-go-$(PROTOC_GEN_GO_VERSION) \
       $(BIN)/.protoc-gen-go-grpc-$(PROTOC_GEN_GO_GRPC_VERSION) $(BIN)/.grpcurl-$(GRPCURL_VERSION) \
       $(BIN)/.grpc-health-probe-$(HEALTH_PROBE_VERSION) $(BIN)/.ghz-$(GHZ_VERSION)

$(BIN)/.buf-%: $(call stale,buf)
	GOBIN=$(BIN) go install github.com/bufbuild/buf/cmd/buf@$*
	@touch $@
$(BIN)/.protoc-gen-go-%: $(call stale,protoc-gen-go)
	GOBIN=$(BIN) go install google.golang.org/protobuf/cmd/protoc-gen-go@$*
	@touch $@
$(BIN)/.protoc-gen-go-grpc-%: $(call stale,protoc-gen-go-grpc)
	GOBIN=$(BIN) go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$*
	@touch $@
$(BIN)/.grpcurl-%: $(call stale,grpcurl)
	GOBIN=$(BIN) go install github.com/fullstorydev/grpcurl/cmd/grpcurl@$*
	@touch $@
$(BIN)/.grpc-health-probe-%: $(call stale,grpc-health-probe)
	GOBIN=$(BIN) go install github.com/grpc-ecosystem/grpc-health-probe@$*
	@touch $@
$(BIN)/.ghz-%: $(call stale,ghz)
	GOBIN=$(BIN) go install github.com/bojand/ghz/cmd/ghz@$*
	@touch $@

deps:
	@missing=""; for pair in $(DEB_TOOLS); do cmd=$${pair%%:*}; pkg=$${pair##*:}; \
		case $$cmd in /*) [ -e $$cmd ];; *) command -v $$cmd >/dev/null 2>&1;; esac || missing="$$missing $$pkg"; done; \
	for pair in $(DEB_PYTHON); do mod=$${pair%%:*}; pkg=$${pair##*:}; \
		/usr/bin/python3 -c "import $$mod" >/dev/null 2>&1 || missing="$$missing $$pkg"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; fi

# The packages' scripts start no service here: deploy/lab/lab.sh starts each.
lab-deps:
	@missing=""; for pair in $(DEB_LAB); do f=$${pair%%:*}; pkg=$${pair##*:}; \
		[ -e $$f ] || missing="$$missing $$pkg"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; fi

# A real Cinder (API, scheduler, volume, RabbitMQ, glance) in front of volrep, under .lab/.
lab: deps lab-deps
	./deploy/lab/lab.sh up

lab-down:
	./deploy/lab/lab.sh down

clean:
	rm -rf $(BIN) .volrep-demo
