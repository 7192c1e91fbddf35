# sfu-gateway: one GNU Makefile. Targets: all check install uninstall clean demo bench,
# plus sanitizer (check-asan) and valgrind (check-valgrind) variants, the suite against
# the real odoo/sfu (check-interop) and libFuzzer targets (fuzz, fuzz-smoke).

CC      ?= cc
BUILD   ?= build
PREFIX  ?= /usr/local
DESTDIR ?=
VERSION := 0.1.0

LLHTTP_SRC := /usr/share/llhttp
LLHTTP_INC := /usr/share/include/llhttp
PKGS       := libuv json-c openssl

PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CRIT_LIBS  := $(shell pkg-config --libs criterion 2>/dev/null || echo -lcriterion)

OPT      ?= -O2
WARN     := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wvla
# Hardening as Debian builds daemons: stack protector, fortified libc calls,
# position-independent executables, read-only relocations bound at start.
HARDEN_CFLAGS  := -fstack-protector-strong -fPIE -D_FORTIFY_SOURCE=2
HARDEN_LDFLAGS := -pie -Wl,-z,relro -Wl,-z,now
CPPFLAGS += -Iinclude -I$(LLHTTP_INC) -D_GNU_SOURCE -DSFU_VERSION='"$(VERSION)"' \
            -DLLHTTP_STRICT_MODE=1 -MMD -MP
CFLAGS   += -std=c11 $(OPT) -g -fno-strict-aliasing $(WARN) $(HARDEN_CFLAGS) $(PKG_CFLAGS) \
            $(SAN_FLAGS)
LDLIBS   += $(PKG_LIBS) -lpthread -lrt -lm
LDFLAGS  += $(HARDEN_LDFLAGS) $(SAN_FLAGS)
# llhttp's generated C only warns about unused parameters; give it its own flags.
LLHTTP_CFLAGS := -std=c11 $(OPT) -g -Wall -Wextra -Wno-unused-parameter -Werror \
                 -DLLHTTP_STRICT_MODE=1 -I$(LLHTTP_INC) $(HARDEN_CFLAGS) $(SAN_FLAGS)

# The two programs and what they share, as src/ lays them out: common/ is
# linked into both, gateway/ only into sfu-gateway (and the mock SFU, which
# reuses its HTTP server), agent/ only into sfu-gateway-agent.
COMMON_SRC  := $(wildcard src/common/*.c)
GATEWAY_SRC := $(filter-out src/gateway/main.c,$(wildcard src/gateway/*.c))
AGENT_SRC   := $(filter-out src/agent/agent_main.c,$(wildcard src/agent/*.c))
obj = $(patsubst src/%.c,$(BUILD)/obj/%.o,$(1))
LLHTTP_OBJ := $(BUILD)/llhttp/api.o $(BUILD)/llhttp/http.o $(BUILD)/llhttp/llhttp.o
TEST_SRC  := $(wildcard tests/test_*.c)
HARNESS_OBJ := $(BUILD)/tests/harness.o $(BUILD)/tests/harness_tls.o
TEST_OBJ  := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%.o) $(HARNESS_OBJ)
INTEROP_SRC := $(wildcard tests/interop_*.c)
INTEROP_OBJ := $(INTEROP_SRC:tests/%.c=$(BUILD)/tests/%.o) $(HARNESS_OBJ)
LIB_COMMON  := $(BUILD)/libcommon.a
LIB_GATEWAY := $(BUILD)/libgateway.a
LIB_AGENT   := $(BUILD)/libagent.a

GATEWAY := $(BUILD)/sfu-gateway
AGENT   := $(BUILD)/sfu-gateway-agent
MOCK    := $(BUILD)/mock-sfu
MOCK_REG := $(BUILD)/mock-registry
RUNNER  := $(BUILD)/tests/run
INTEROP := $(BUILD)/tests/interop-run

# Criterion's parallel jobs; integration tests start real processes on 2 cores.
TEST_JOBS ?= 2
TEST_ARGS ?=

.PHONY: deb all check check-interop check-asan check-valgrind asan install uninstall clean demo bench deps \
        fuzz fuzz-smoke

all: $(GATEWAY) $(AGENT) $(MOCK) $(MOCK_REG)

$(BUILD)/obj/%.o: src/%.c
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

$(BUILD)/tests/%.o: tests/%.c
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) -Itests $(CFLAGS) -c -o $@ $<

$(BUILD)/llhttp/%.o: $(LLHTTP_SRC)/%.c
	@mkdir -p $(@D)
	$(CC) $(LLHTTP_CFLAGS) -c -o $@ $<

$(LIB_COMMON): $(call obj,$(COMMON_SRC)) $(LLHTTP_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

$(LIB_GATEWAY): $(call obj,$(GATEWAY_SRC))
	@rm -f $@
	$(AR) rcs $@ $^

$(LIB_AGENT): $(call obj,$(AGENT_SRC))
	@rm -f $@
	$(AR) rcs $@ $^

$(GATEWAY): $(BUILD)/obj/gateway/main.o $(LIB_GATEWAY) $(LIB_COMMON)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(AGENT): $(BUILD)/obj/agent/agent_main.o $(LIB_AGENT) $(LIB_COMMON)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(MOCK): $(BUILD)/tests/mock_sfu.o $(LIB_GATEWAY) $(LIB_COMMON)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# The gateway as a binary with another shared-memory layout version would be,
# for the upgrade test that must see it refuse the handover: only shm.c reads
# the version, so only it is built again.
LAYOUT_BIN := $(BUILD)/tests/sfu-gateway-layout99
$(BUILD)/tests/shm-layout99.o: src/gateway/shm.c
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) -DSHM_LAYOUT_VERSION=99 $(CFLAGS) -c -o $@ $<

$(LAYOUT_BIN): $(BUILD)/obj/gateway/main.o $(BUILD)/tests/shm-layout99.o $(LIB_GATEWAY) $(LIB_COMMON)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(MOCK_REG): $(BUILD)/tests/mock_registry.o $(LIB_COMMON)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# Microbenchmarks: plain programs linked against the libraries. bench-token
# measures libjwt against our verifier, so it alone links libjwt.
BENCH_BIN := $(BUILD)/bench-select $(BUILD)/bench-seqlock $(BUILD)/bench-token $(BUILD)/bench-cluster
$(BUILD)/bench-token: LDLIBS += -ljwt

$(BUILD)/bench-%: bench/bench_%.c $(LIB_GATEWAY) $(LIB_COMMON)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $(filter %.c %.a,$^) $(LDLIBS)

$(RUNNER): $(TEST_OBJ) $(LIB_GATEWAY) $(LIB_AGENT) $(LIB_COMMON)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(CRIT_LIBS)

$(INTEROP): $(INTEROP_OBJ) $(LIB_GATEWAY) $(LIB_AGENT) $(LIB_COMMON)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(CRIT_LIBS)

# The whole suite: unit tests and integration tests against the real daemon. The
# microbenchmarks are built too (not run), so a change to a shared struct cannot leave
# `make bench` broken unnoticed.
check: $(GATEWAY) $(AGENT) $(MOCK) $(MOCK_REG) $(RUNNER) $(LAYOUT_BIN) $(BENCH_BIN)
	SFU_GATEWAY_BIN=$(abspath $(GATEWAY)) MOCK_SFU_BIN=$(abspath $(MOCK)) \
	  MOCK_REGISTRY_BIN=$(abspath $(MOCK_REG)) SFU_AGENT_BIN=$(abspath $(AGENT)) \
	  SFU_LAYOUT99_BIN=$(abspath $(LAYOUT_BIN)) $(RUNNER) --jobs $(TEST_JOBS) $(TEST_ARGS)

# The gateway and the agent against the real odoo/sfu, prepared once per run in a scratch
# folder (scripts/check-interop.sh; it says so and succeeds when Node.js or the peer is
# missing, except under CI=true).
check-interop: $(GATEWAY) $(AGENT) $(MOCK) $(INTEROP)
	SFU_GATEWAY_BIN=$(abspath $(GATEWAY)) MOCK_SFU_BIN=$(abspath $(MOCK)) \
	  SFU_AGENT_BIN=$(abspath $(AGENT)) \
	  scripts/check-interop.sh $(abspath $(INTEROP)) --jobs $(TEST_JOBS) $(TEST_ARGS)

# Same suite built with AddressSanitizer + UndefinedBehaviorSanitizer.
check-asan:
	LSAN_OPTIONS=suppressions=$(abspath tests/lsan.supp) ASAN_OPTIONS=detect_leaks=1 \
	$(MAKE) BUILD=build/asan OPT=-O1 \
	  SAN_FLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" \
	  check

# Same suite with the daemon and mocks under valgrind (tests read VALGRIND).
check-valgrind: $(GATEWAY) $(AGENT) $(MOCK) $(MOCK_REG) $(RUNNER) $(LAYOUT_BIN)
	SFU_GATEWAY_BIN=$(abspath $(GATEWAY)) MOCK_SFU_BIN=$(abspath $(MOCK)) \
	  MOCK_REGISTRY_BIN=$(abspath $(MOCK_REG)) SFU_AGENT_BIN=$(abspath $(AGENT)) \
	  SFU_LAYOUT99_BIN=$(abspath $(LAYOUT_BIN)) \
	  SFU_TEST_VALGRIND=1 $(RUNNER) --jobs 1 $(TEST_ARGS)

deps:
	scripts/deps.sh test

# libFuzzer targets, built with clang into their own directory so that the
# normal build (any CC) is untouched. Everything they link is instrumented,
# llhttp included, so coverage follows the parser into the generated code.
FUZZ_CC      ?= clang
FUZZ_BUILD   := build/fuzz
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
FUZZ_CFLAGS  := -std=c11 -O1 -g -fno-strict-aliasing $(WARN) $(PKG_CFLAGS) $(FUZZ_SAN) \
                -fsanitize=fuzzer-no-link
FUZZ_TARGETS := token toml config heartbeat jscan stats http
FUZZ_BIN     := $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/fuzz_%)
FUZZ_LIB     := $(FUZZ_BUILD)/libsfugw.a
FUZZ_LIB_OBJ := $(patsubst src/%.c,$(FUZZ_BUILD)/obj/%.o,$(COMMON_SRC) $(GATEWAY_SRC)) \
                $(LLHTTP_OBJ:$(BUILD)/llhttp/%=$(FUZZ_BUILD)/llhttp/%)
# fuzz-smoke: seconds per target (7 targets); new inputs go to a scratch
# directory, never into the seed corpora under tests/fuzz/corpus.
FUZZ_SMOKE_SECONDS ?= 3
FUZZ_ARGS ?=

ifneq ($(filter fuzz fuzz-smoke,$(MAKECMDGOALS)),)
ifeq ($(shell command -v $(FUZZ_CC) 2>/dev/null),)
$(error $(FUZZ_CC) not found: make fuzz needs clang and libclang-rt-14-dev (scripts/deps.sh test))
endif
endif

fuzz: $(FUZZ_BIN)

$(FUZZ_BUILD)/obj/%.o: src/%.c
	@mkdir -p $(@D)
	$(FUZZ_CC) $(CPPFLAGS) $(FUZZ_CFLAGS) -c -o $@ $<

$(FUZZ_BUILD)/llhttp/%.o: $(LLHTTP_SRC)/%.c
	@mkdir -p $(@D)
	$(FUZZ_CC) $(LLHTTP_CFLAGS) $(FUZZ_SAN) -fsanitize=fuzzer-no-link -c -o $@ $<

$(FUZZ_BUILD)/tests/%.o: tests/fuzz/%.c
	@mkdir -p $(@D)
	$(FUZZ_CC) $(CPPFLAGS) -Itests/fuzz $(FUZZ_CFLAGS) -c -o $@ $<

$(FUZZ_LIB): $(FUZZ_LIB_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

$(FUZZ_BUILD)/fuzz_%: $(FUZZ_BUILD)/tests/fuzz_%.o $(FUZZ_LIB)
	$(FUZZ_CC) $(FUZZ_SAN) -fsanitize=fuzzer -o $@ $^ $(LDLIBS)

# Each target on its seed corpus for a few seconds; any crash, leak, timeout or
# sanitizer report fails (libFuzzer exits non-zero).
fuzz-smoke: $(FUZZ_BIN)
	@set -e; for t in $(FUZZ_TARGETS); do \
	  out=$(FUZZ_BUILD)/smoke/$$t; rm -rf $$out; mkdir -p $$out/new $$out/artifacts; \
	  dict=; [ -f tests/fuzz/$$t.dict ] && dict=-dict=tests/fuzz/$$t.dict; \
	  echo "fuzz-smoke: $$t ($(FUZZ_SMOKE_SECONDS) s)"; \
	  $(FUZZ_BUILD)/fuzz_$$t -max_total_time=$(FUZZ_SMOKE_SECONDS) -timeout=10 \
	    -print_final_stats=1 $$dict -artifact_prefix=$$out/artifacts/ $(FUZZ_ARGS) \
	    $$out/new tests/fuzz/corpus/$$t > $$out/log 2>&1 \
	    || { tail -n 60 $$out/log; echo "fuzz-smoke: $$t failed (log: $$out/log)"; exit 1; }; \
	  grep -E '^#[0-9]+.*DONE' $$out/log | tr '\n' ' '; echo; \
	done

demo: $(GATEWAY) $(MOCK)
	scripts/demo.sh

# Every benchmark, loopback only and bounded; each also runs on its own (see README).
bench: $(GATEWAY) $(MOCK) $(MOCK_REG) $(BENCH_BIN)
	$(BUILD)/bench-seqlock
	$(BUILD)/bench-select all
	$(BUILD)/bench-token
	bench/channel.sh
	bench/observe.sh
	bench/accept.sh
	bench/bench_heartbeat.sh
	bench/registry.sh
	bench/cluster.sh
	bench/compare.sh
	MODES="upstream listener handshake" bench/compare_tls.sh

# Installs the daemon, its manual pages, the init script, the systemd unit, the
# logrotate configuration and the example config. An operator's sfu-gateway.toml
# and /etc/default/sfu-gateway are never overwritten; uninstall leaves them (and
# any other config file) in place.
SYSTEMD_UNIT_DIR ?= $(PREFIX)/lib/systemd/system
install: $(GATEWAY) $(AGENT)
	install -d $(DESTDIR)$(PREFIX)/sbin $(DESTDIR)$(PREFIX)/share/man/man8 \
	  $(DESTDIR)$(PREFIX)/share/man/man5 $(DESTDIR)/etc/init.d $(DESTDIR)/etc/default \
	  $(DESTDIR)/etc/sfu-gateway $(DESTDIR)$(SYSTEMD_UNIT_DIR) $(DESTDIR)/etc/logrotate.d
	install -m 0755 $(GATEWAY) $(DESTDIR)$(PREFIX)/sbin/sfu-gateway
	install -m 0755 $(AGENT) $(DESTDIR)$(PREFIX)/sbin/sfu-gateway-agent
	install -m 0644 man/sfu-gateway.8 $(DESTDIR)$(PREFIX)/share/man/man8/sfu-gateway.8
	install -m 0644 man/sfu-gateway-agent.8 \
	  $(DESTDIR)$(PREFIX)/share/man/man8/sfu-gateway-agent.8
	install -m 0644 man/sfu-gateway.toml.5 $(DESTDIR)$(PREFIX)/share/man/man5/sfu-gateway.toml.5
	sed 's|^DAEMON=.*|DAEMON=$(PREFIX)/sbin/sfu-gateway|' scripts/sfu-gateway.init \
	  > $(DESTDIR)/etc/init.d/sfu-gateway.new
	chmod 0755 $(DESTDIR)/etc/init.d/sfu-gateway.new
	mv -f $(DESTDIR)/etc/init.d/sfu-gateway.new $(DESTDIR)/etc/init.d/sfu-gateway
	sed 's|/usr/sbin/sfu-gateway|$(PREFIX)/sbin/sfu-gateway|g' etc/sfu-gateway.service \
	  > $(DESTDIR)$(SYSTEMD_UNIT_DIR)/sfu-gateway.service
	chmod 0644 $(DESTDIR)$(SYSTEMD_UNIT_DIR)/sfu-gateway.service
	install -m 0644 etc/sfu-gateway.logrotate $(DESTDIR)/etc/logrotate.d/sfu-gateway
	install -m 0644 etc/sfu-gateway.toml $(DESTDIR)/etc/sfu-gateway/sfu-gateway.toml.example
	test -e $(DESTDIR)/etc/sfu-gateway/sfu-gateway.toml || \
	  install -m 0644 etc/sfu-gateway.toml $(DESTDIR)/etc/sfu-gateway/sfu-gateway.toml
	test -e $(DESTDIR)/etc/default/sfu-gateway || \
	  install -m 0600 etc/sfu-gateway.default $(DESTDIR)/etc/default/sfu-gateway

# The Debian package, built from the binaries with dpkg-deb (scripts/make-deb.sh);
# lintian's remaining remarks are overridden in pkg/deb/lintian-overrides and
# explained in the README.
DEB_VERSION ?= $(VERSION)-1
DEB_DIR ?= $(BUILD)/deb
deb: $(GATEWAY) $(AGENT)
	scripts/make-deb.sh $(BUILD) $(DEB_VERSION) $(DEB_DIR)

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/sbin/sfu-gateway $(DESTDIR)$(PREFIX)/sbin/sfu-gateway-agent \
	  $(DESTDIR)$(PREFIX)/share/man/man8/sfu-gateway.8 \
	  $(DESTDIR)$(PREFIX)/share/man/man8/sfu-gateway-agent.8 \
	  $(DESTDIR)$(PREFIX)/share/man/man5/sfu-gateway.toml.5 \
	  $(DESTDIR)/etc/init.d/sfu-gateway $(DESTDIR)/etc/sfu-gateway/sfu-gateway.toml.example \
	  $(DESTDIR)$(SYSTEMD_UNIT_DIR)/sfu-gateway.service $(DESTDIR)/etc/logrotate.d/sfu-gateway
	rmdir $(DESTDIR)/etc/sfu-gateway 2>/dev/null || true

clean:
	rm -rf $(BUILD)

-include $(shell find $(BUILD) -name '*.d' -type f 2>/dev/null)
