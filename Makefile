# sessionwire - plain Makefile.
#
#   make deps     install the Debian packages below (root or sudo)
#   make          build everything into build/
#   make test     build and run every test (runs deps first; installs,
#                 checks and purges the .deb: needs root or sudo)
#   make run      build and run the main job (see README)
#   make run-cluster  the same at scale: 3 NATS nodes, 2 gateways, kills
#   make bench    build and run the benchmarks
#   make install  PREFIX=/usr/local DESTDIR=...
#   make deb      build/sessionwire_<VERSION>_<arch>.deb, lintian-checked
#   make check-man  lint the man pages, check they cover every flag
#
# Switches: SANITIZE=address,undefined   COVERAGE=1   O=builddir
#           VECTORS=dir (default tests/vectors)

# ==== Dependencies: the one place they are listed ====
# nanopb: its generator checks proto/sessionwire.options (test_pb);
# mandoc: the man pages' lint; dpkg-dev, fakeroot, lintian: make deb and
# its test. libcoap3-dev: the CoAP ingress (its OpenSSL build, for
# DTLS); libcoap3-bin: Debian's coap-client, the tests' independent
# CoAP client. libnats-dev: the JetStream store (--queue); nats-server:
# the clusters its tests and make run-cluster start on loopback.
DEB_PACKAGES := build-essential pkg-config protobuf-c-compiler \
	libprotobuf-c-dev protobuf-compiler libcjson-dev libcunit1-dev \
	libdouble-conversion-dev libmicrohttpd-dev libcurl4-openssl-dev \
	libssl-dev libsqlite3-dev curl valgrind nanopb mandoc dpkg-dev \
	fakeroot lintian libcoap3-dev libcoap3-bin libnats-dev nats-server
# Only `make bench` (bench-deps) installs these; `make test` never needs them.
# tcpdump: bench/coap.sh counts CoAP's bytes from captured packets.
# libh2o-evloop-dev: bench/ingress.sh's other HTTP server library.
BENCH_PACKAGES := gnuplot-nox libzstd-dev zlib1g-dev libcbor-dev \
	libmsgpack-dev libnanopb-dev gcc-arm-none-eabi \
	libnewlib-arm-none-eabi wrk nginx-light tcpdump libh2o-evloop-dev

# ==== Toolchain and flags ====
CC ?= cc
CXX ?= c++
O ?= build
PREFIX ?= /usr/local
VECTORS ?= tests/vectors

CFLAGS ?= -O2 -g
CXXFLAGS ?= -O2 -g
WARN := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
	-Wformat=2 -Wcast-qual -Wno-missing-braces -Werror
# -ffp-contract=off: the compact number forms rely on plain IEEE double
# products and quotients, never fused multiply-adds.
BASEFLAGS := -std=gnu11 -ffp-contract=off -fno-strict-aliasing -pthread
CPPFLAGS += -Icodec/include -Igateway -I$(O)/gen -MMD -MP
LDFLAGS ?=
LDLIBS := $(shell pkg-config --libs libprotobuf-c libcjson 2>/dev/null || echo -lprotobuf-c -lcjson) \
	-ldouble-conversion -lstdc++ -lm -pthread
# libcoap: Debian ships it built three ways; the OpenSSL one, as the rest
# of the TLS here.
COAP_LIBS := $(shell pkg-config --libs libcoap-3-openssl 2>/dev/null || echo -lcoap-3-openssl)
NET_LIBS := -lmicrohttpd -lcurl -lssl -lcrypto -lsqlite3 $(COAP_LIBS)
# libnats (--queue): only the programs that hold the gateway library
NATS_LIBS := $(shell pkg-config --libs libnats 2>/dev/null || echo -lnats)

ifneq ($(SANITIZE),)
SANFLAGS := -fsanitize=$(SANITIZE) -fno-sanitize-recover=all -fno-omit-frame-pointer
CFLAGS += $(SANFLAGS)
CXXFLAGS += $(SANFLAGS)
LDFLAGS += $(SANFLAGS)
endif
ifeq ($(COVERAGE),1)
CFLAGS += --coverage
CXXFLAGS += --coverage
LDFLAGS += --coverage
endif

ALL_CFLAGS = $(BASEFLAGS) $(WARN) $(CFLAGS)
ALL_CXXFLAGS = -std=c++17 -Wall -Wextra -Werror -ffp-contract=off $(CXXFLAGS)

# ==== Sources ====
PROTO := proto/sessionwire.proto
PB_C := $(O)/gen/sessionwire.pb-c.c
PB_H := $(O)/gen/sessionwire.pb-c.h

CODEC_C := $(wildcard codec/*.c)
CODEC_CC := $(wildcard codec/*.cc)
CODEC_OBJ := $(CODEC_C:%.c=$(O)/%.o) $(CODEC_CC:%.cc=$(O)/%.o) $(O)/gen/sessionwire.pb-c.o
LIB := $(O)/libsessioncodec.a

GW_C := $(filter-out gateway/main.c,$(wildcard gateway/*.c))
GW_OBJ := $(GW_C:%.c=$(O)/%.o)
GW_LIB := $(O)/libgateway.a
GW_BIN := $(O)/session-gateway
FAKE_UPSTREAM := $(O)/fake-upstream
FLEET := $(O)/fleet

CLI := $(O)/session-codec
CLI_C := $(wildcard codec/cli/*.c)
CLI_OBJ := $(CLI_C:%.c=$(O)/%.o)

TEST_C := $(wildcard tests/test_*.c)
TEST_SUPPORT_C := $(filter-out $(TEST_C) tests/run_tests.c,$(wildcard tests/*.c))
FAKE_UPSTREAM_OBJ := $(O)/tests/tools/fake_upstream_main.o $(O)/tests/fake_upstream.o
TEST_OBJ := $(TEST_C:%.c=$(O)/%.o) $(TEST_SUPPORT_C:%.c=$(O)/%.o) $(O)/tests/run_tests.o
TEST_BIN := $(O)/run-tests
TEST_NAMES := $(patsubst tests/test_%.c,%,$(TEST_C))

BENCH_C := $(wildcard bench/*.c)
BENCH_BIN := $(BENCH_C:bench/%.c=$(O)/bench-%)

# The CoAP device example (what firmware would copy; the tests run it).
COAP_DEVICE := $(O)/coap-device

.PHONY: all deps test run bench bench-deps clean install check-deps test-valgrind FORCE
all: $(LIB) $(GW_LIB) $(TEST_BIN) $(BENCH_BIN) $(CLI) $(COAP_DEVICE) \
	$(if $(wildcard gateway/main.c),$(GW_BIN)) \
	$(if $(wildcard tests/tools/fake_upstream_main.c),$(FAKE_UPSTREAM)) \
	$(if $(wildcard tests/tools/fleet.c),$(FLEET))

# ==== Version: the VERSION file is the one place it is written ====
# --version of both programs, sessioncodec.pc and the Debian package read
# it; $(O)/gen/sw_version.h is rewritten only when it changes.
VERSION := $(shell cat VERSION)
$(O)/gen/sw_version.h: VERSION
	@mkdir -p $(O)/gen
	@printf '%s\n' '/* generated by the Makefile from VERSION */' \
		'#define SW_VERSION "$(VERSION)"' > $@.tmp
	@cmp -s $@.tmp $@ || mv $@.tmp $@; rm -f $@.tmp
$(O)/gateway/config.o $(O)/codec/cli/session_codec.o: $(O)/gen/sw_version.h

# ==== Generated protobuf-c code ====
$(PB_C) $(PB_H): $(PROTO)
	@mkdir -p $(O)/gen
	protoc-c --proto_path=proto --c_out=$(O)/gen $(PROTO)

$(O)/gen/sessionwire.pb-c.o: $(PB_C) $(PB_H)
	$(CC) $(BASEFLAGS) -Wall -Wno-missing-braces -Werror $(CFLAGS) $(CPPFLAGS) -c -o $@ $<

# ==== Objects ====
$(O)/%.o: %.c | $(PB_H)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(CPPFLAGS) -c -o $@ $<

$(O)/%.o: %.cc
	@mkdir -p $(dir $@)
	$(CXX) $(ALL_CXXFLAGS) $(CPPFLAGS) -c -o $@ $<

$(LIB): $(CODEC_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(GW_LIB): $(GW_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(CLI): $(CLI_OBJ) $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(NET_LIBS)

$(GW_BIN): $(O)/gateway/main.o $(GW_LIB) $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(NET_LIBS) $(NATS_LIBS)

$(FAKE_UPSTREAM): $(FAKE_UPSTREAM_OBJ) $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(NET_LIBS)

# make run-cluster's simulated fleet and its tally (tests/cluster.sh)
$(FLEET): $(O)/tests/tools/fleet.o $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lcurl

# The test runner registers init_<name>_tests() of every tests/test_<name>.c.
$(O)/gen/test_list.h: $(TEST_C)
	@mkdir -p $(O)/gen
	@printf '%s\n' $(foreach t,$(TEST_NAMES),'SW_TEST_SUITE($(t))') > $@.tmp
	@cmp -s $@.tmp $@ || mv $@.tmp $@; rm -f $@.tmp

$(TEST_OBJ): $(O)/gen/test_list.h

# The CoAP suites drive the gateway with session-codec's own CoAP client.
$(TEST_BIN): $(TEST_OBJ) $(O)/codec/cli/coap_client.o $(GW_LIB) $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(NET_LIBS) $(NATS_LIBS) -lcunit

$(COAP_DEVICE): $(O)/codec/examples/coap_device.o $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(COAP_LIBS)

$(O)/bench-%: $(O)/bench/%.o $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# ==== Set-up ====
deps:
	@missing=$$(for p in $(DEB_PACKAGES); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; \
	done); \
	if [ -n "$$missing" ]; then \
		echo "installing:" $$missing; \
		SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi

# ==== Running ====
# The CUnit runner, then the man pages (lint, and every flag of --help
# documented) and gw.h's module map (every gateway source named).
test: deps
	$(MAKE) all
	$(TEST_BIN) --vectors $(VECTORS) --data tests/data --bin $(O)
	tests/man_check.sh $(O)
	tests/map_check.sh
	$(MAKE) --no-print-directory deb
	tests/deb_test.sh $(DEB_FILE)

.PHONY: check-man
check-man: $(CLI) $(GW_BIN)
	tests/man_check.sh $(O)

# The whole runner under memcheck (--quick: smaller loops; about 2-3
# minutes on 2 CPUs). Programs the suites fork and exec (session-gateway,
# session-codec) run natively: valgrind does not trace children.
test-valgrind: deps
	$(MAKE) all
	valgrind --error-exitcode=99 --leak-check=full \
		--errors-for-leak-kinds=definite,indirect \
		--show-leak-kinds=definite,indirect \
		--trace-children=no --child-silent-after-fork=yes \
		$(TEST_BIN) --vectors $(VECTORS) --data tests/data --bin $(O) --quick

# ==== Static analysis ====
# make cppcheck: warning, style, performance and portability checks of
# every source; any finding fails. Inline suppressions (with the reason
# on the line above) only where cppcheck is wrong. Left out everywhere:
# variableScope (house style declares a block's variables at its top).
# By file, where cppcheck cannot follow a value through a pointer kept
# elsewhere (a test's failing allocator read through the sw_alloc hook;
# protobuf-c structs read by pbc_pack through &x.base), where the code
# is a deliberate test of the obvious (SW_FUZZ_CHECK(2 == 2)), or where
# it assumes inputs that cannot occur: fuzz/envelope.c never shifts by
# 70 (the loop ends first), fuzz/num.c's i is a multiple of 8,
# fuzz/json_parse.c's strict may be NULL there, gen_corpus.c's weights
# are constant tables with non-zero sums.
CPPCHECK ?= cppcheck
CPPCHECK_SUPPRESS := variableScope \
	unreadVariable:tests/test_envelope.c \
	unreadVariable:tests/test_pb.c \
	redundantAssignment:tests/test_json.c \
	ctuuninitvar:tests/testutil.c \
	duplicateExpression:tests/test_fuzz_corpus.c \
	shiftTooManyBits:tests/fuzz/envelope.c \
	pointerOutOfBoundsCond:tests/fuzz/num.c \
	knownConditionTrueFalse:tests/fuzz/json_parse.c \
	zerodiv:bench/gen_corpus.c
.PHONY: cppcheck cppcheck-deps
cppcheck-deps:
	@$(MAKE) --no-print-directory deps DEB_PACKAGES="cppcheck"

cppcheck: cppcheck-deps $(O)/gen/test_list.h $(O)/gen/sw_version.h
	$(CPPCHECK) --enable=warning,style,performance,portability \
		--error-exitcode=1 --inline-suppr --quiet -j2 \
		$(CPPCHECK_SUPPRESS:%=--suppress=%) \
		-I codec/include -I gateway -I $(O)/gen codec gateway tests bench

run: deps
	$(MAKE) all
	@tests/demo.sh $(O) $(VECTORS)

# The main job at scale, on loopback: three nats-server nodes, two
# gateways with --queue, the stand-in upstream and a simulated fleet; one
# NATS node and one gateway are killed (SIGKILL) midway. Prints what was
# sent, acknowledged, delivered, duplicated and lost, and whether every
# session kept its order (tests/cluster.sh; CLUSTER_SECONDS=30).
.PHONY: run-cluster
run-cluster: deps
	$(MAKE) all
	@tests/cluster.sh $(O)

bench: deps
	$(MAKE) bench-deps
	$(MAKE) $(BENCH_BIN) CFLAGS="-O2 -g -DNDEBUG"
	$(MAKE) $(BENCH_GW)
	$(MAKE) -f bench/device/device.mk O=$(O)
	bench/run.sh $(O) $(VECTORS)

# The gateway part alone (run.sh also runs it): session-gateway vs nginx
# under wrk, and bytes on the wire per update; then CoAP (bench/coap.sh):
# bytes per update from captured packets, updates per second next to
# HTTP's. Merged into summary.json and report.md.
.PHONY: bench-gateway
BENCH_GW := $(CLI) $(GW_BIN) $(FAKE_UPSTREAM) $(O)/bench-wire $(O)/bench-coap
bench-gateway: deps
	$(MAKE) bench-deps
	$(MAKE) $(BENCH_GW)
	bench/gateway.sh $(O) $(VECTORS)
	bench/coap.sh $(O) $(VECTORS)

bench-deps:
	@$(MAKE) --no-print-directory deps DEB_PACKAGES="$(BENCH_PACKAGES)"

# --queue's targets (issue 13): updates/s accepted against direct mode in
# the same run, p50/p99, the drain rate to the stand-in API and how it
# grows with the partition count (bench/queue.sh; a 3-node cluster here).
.PHONY: bench-queue
bench-queue: deps
	$(MAKE) bench-deps
	$(MAKE) $(GW_BIN) $(FAKE_UPSTREAM)
	bench/queue.sh $(O)

# The HTTP ingress alone (issue 11's spike): libmicrohttpd as the gateway
# drives it, libh2o-evloop and nginx answering a fixed 200, CPU per
# request side by side (bench/ingress.sh; not part of make bench).
.PHONY: bench-ingress
bench-ingress: deps
	$(MAKE) bench-deps
	bench/ingress.sh $(O)

# The bench programs also build in `make all`, with whatever bench-only
# package is installed: $(O)/gen/bench_have.h says which (BENCH_HAVE_zstd
# ...), and the objects that include it are rebuilt when that changes.
BENCH_HAVE := $(shell for h in zstd zlib cbor msgpack; do \
	[ -f /usr/include/$$h.h ] && echo $$h; done)
NANOPB_GEN := $(shell command -v nanopb_generator.py || command -v nanopb_generator)
BENCH_NANOPB := $(if $(and $(wildcard /usr/include/pb_encode.h),$(NANOPB_GEN)),nanopb)
NPB := $(O)/gen/nanopb

$(O)/gen/bench_have.h: FORCE
	@mkdir -p $(O)/gen
	@printf '%s\n' '/* generated by the Makefile */' $(foreach h,$(BENCH_HAVE) \
		$(BENCH_NANOPB),'#define BENCH_HAVE_$(h) 1') > $@.tmp
	@cmp -s $@.tmp $@ || mv $@.tmp $@; rm -f $@.tmp
FORCE:

$(O)/gen/naive.pb-c.c $(O)/gen/naive.pb-c.h: bench/naive.proto
	@mkdir -p $(O)/gen
	protoc-c --proto_path=bench --c_out=$(O)/gen bench/naive.proto

$(NPB)/sessionwire.pb.c $(NPB)/sessionwire.pb.h: $(PROTO) proto/sessionwire.options
	@mkdir -p $(NPB)
	$(NANOPB_GEN) -q -I proto -f proto/sessionwire.options -D $(NPB) $(PROTO)

$(O)/gen/naive.pb-c.o $(NPB)/sessionwire.pb.o: %.o: %.c
	$(CC) $(BASEFLAGS) -Wall -Wno-missing-braces -Werror $(CFLAGS) $(CPPFLAGS) -c -o $@ $<

$(O)/bench/sizes.o: $(O)/gen/bench_have.h $(O)/gen/naive.pb-c.h
$(O)/bench-sizes: $(O)/gen/naive.pb-c.o
$(O)/bench-sizes: LDLIBS += $(patsubst %,-l%,$(subst msgpack,msgpackc,$(subst zlib,z,$(BENCH_HAVE))))
# bench-coap: session-codec's CoAP client (raw messages, DTLS) drives the load.
$(O)/bench-coap: $(O)/codec/cli/coap_client.o
$(O)/bench-coap: LDLIBS += -lssl -lcrypto
$(O)/bench/codec.o: $(O)/gen/bench_have.h $(if $(BENCH_NANOPB),$(NPB)/sessionwire.pb.h)
$(O)/bench-codec: $(if $(BENCH_NANOPB),$(NPB)/sessionwire.pb.o)
$(O)/bench-codec: LDLIBS += $(if $(BENCH_NANOPB),-lprotobuf-nanopb)

clean:
	rm -rf $(O)

# ==== Debian package ====
# make deb: $(DEB_FILE), built by pkg/deb/build.sh with dpkg-deb,
# dpkg-shlibdeps and Debian's hardening flags (in $(O)/deb), then lintian,
# which must find no error and no warning. make test installs, checks and
# purges it (tests/deb_test.sh).
DEB_FILE = $(O)/sessionwire_$(VERSION)_$(shell dpkg --print-architecture).deb
.PHONY: deb
deb: deps
	pkg/deb/build.sh $(O)
	lintian --fail-on error,warning $(DEB_FILE)

# ==== Install ====
# make install [PREFIX=/usr/local] [DESTDIR=...]: what a deployment needs.
# The unit's paths follow PREFIX; the config goes to SYSCONFDIR (the unit
# reads /etc/session-gateway) and is never overwritten: a copy of the
# example is always in DOCDIR/examples. make deb installs with
# PREFIX=/usr and Debian's directories.
BINDIR ?= $(PREFIX)/bin
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
DATADIR ?= $(PREFIX)/share/sessionwire
DOCDIR ?= $(PREFIX)/share/doc/sessionwire
MANDIR ?= $(PREFIX)/share/man
SYSCONFDIR ?= /etc
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
GW_CONF := $(DESTDIR)$(SYSCONFDIR)/session-gateway/session-gateway.conf

install: $(LIB) $(CLI) $(GW_BIN)
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR)/pkgconfig \
		$(DESTDIR)$(INCLUDEDIR)/sessionwire $(DESTDIR)$(DATADIR) \
		$(DESTDIR)$(DOCDIR)/examples $(DESTDIR)$(MANDIR)/man1 \
		$(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(SYSCONFDIR)/session-gateway \
		$(DESTDIR)$(SYSTEMDUNITDIR) $(DESTDIR)$(SYSUSERSDIR)
	install -m 755 $(CLI) $(GW_BIN) $(DESTDIR)$(BINDIR)/
	install -m 644 $(LIB) $(DESTDIR)$(LIBDIR)/
	install -m 644 codec/include/sessionwire/*.h $(DESTDIR)$(INCLUDEDIR)/sessionwire/
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' \
		-e 's|@INCLUDEDIR@|$(INCLUDEDIR)|' -e 's|@VERSION@|$(VERSION)|' \
		codec/sessioncodec.pc.in \
		> $(DESTDIR)$(LIBDIR)/pkgconfig/sessioncodec.pc
	install -m 644 $(PROTO) proto/sessionwire.options $(DESTDIR)$(DATADIR)/
	install -m 644 docs/man/session-codec.1 $(DESTDIR)$(MANDIR)/man1/
	install -m 644 docs/man/session-gateway.8 $(DESTDIR)$(MANDIR)/man8/
	install -m 644 README.md SECURITY.md docs/wire-format.md $(DESTDIR)$(DOCDIR)/
	install -m 644 gateway/session-gateway.conf.example $(DESTDIR)$(DOCDIR)/examples/
	[ -e $(GW_CONF) ] || install -m 644 gateway/session-gateway.conf.example $(GW_CONF)
	sed -e 's|/usr/local/bin/|$(BINDIR)/|' -e 's|/usr/local/share/doc/sessionwire/|$(DOCDIR)/|' \
		gateway/session-gateway.service > $(DESTDIR)$(SYSTEMDUNITDIR)/session-gateway.service
	chmod 644 $(DESTDIR)$(SYSTEMDUNITDIR)/session-gateway.service
	install -m 644 gateway/session-gateway.sysusers $(DESTDIR)$(SYSUSERSDIR)/session-gateway.conf

-include $(shell find $(O) -name '*.d' 2>/dev/null)

# ==== Fuzzing ====
# make fuzz [FUZZ_SECONDS=60]: builds every tests/fuzz/<target>.c with
# clang's libFuzzer + ASan + UBSan (the codec rebuilt alike in
# $(O)/fuzz/lib), runs each target in turn (niced) for FUZZ_SECONDS on a
# copy of tests/fuzz/corpus/<target>/ (crash-* reproducers left out: the
# corpus replay of `make test` keeps those), writes findings to
# $(O)/fuzz/crashes/ and fails if there are any. Needs clang and
# libclang-rt-14-dev (make fuzz-deps); `make test` needs neither.
FUZZ_CC ?= clang
FUZZ_CXX ?= clang++
FUZZ_SECONDS ?= 60
FUZZ_MAX_LEN ?= 4096
# Wall-clock seconds per input before libFuzzer calls it a hang: generous,
# because a niced fuzzer on a busy machine can stall for seconds.
FUZZ_TIMEOUT ?= 60
FUZZ_FLAGS ?=
FUZZ_DEB_PACKAGES := clang libclang-rt-14-dev
FUZZ_O := $(O)/fuzz
FUZZ_TARGETS := $(patsubst tests/fuzz/%.c,%,$(wildcard tests/fuzz/*.c))
FUZZ_BINS := $(FUZZ_TARGETS:%=$(FUZZ_O)/fuzz-%)
FUZZ_LIB := $(FUZZ_O)/lib/libsessioncodec.a
FUZZ_GW_LIB := $(FUZZ_O)/lib/libgateway.a
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=all \
	-fno-omit-frame-pointer

.PHONY: fuzz fuzz-build fuzz-deps fuzz-lib
fuzz-deps:
	@$(MAKE) --no-print-directory deps DEB_PACKAGES="$(FUZZ_DEB_PACKAGES)"

fuzz-lib:
	$(MAKE) --no-print-directory O=$(FUZZ_O)/lib CC=$(FUZZ_CC) CXX=$(FUZZ_CXX) \
		SANITIZE= WARN="-Wall -Wextra -Wno-missing-braces" \
		CFLAGS="-O1 -g -fsanitize=fuzzer-no-link $(FUZZ_SAN)" \
		CXXFLAGS="-O1 -g -fsanitize=fuzzer-no-link $(FUZZ_SAN)" \
		$(FUZZ_GW_LIB) $(FUZZ_LIB)

$(FUZZ_LIB) $(FUZZ_GW_LIB): fuzz-lib ;

# fuzz/gateway.c drives gateway/request.c: the gateway library is linked
# too (only what a target uses is pulled from the archives).
$(FUZZ_BINS): $(FUZZ_O)/fuzz-%: tests/fuzz/%.c tests/fuzz/fuzz.h $(FUZZ_GW_LIB) $(FUZZ_LIB)
	@mkdir -p $(FUZZ_O)
	$(FUZZ_CC) $(BASEFLAGS) -O1 -g -fsanitize=fuzzer $(FUZZ_SAN) \
		-DSW_FUZZ_LIBFUZZER -Icodec/include -Igateway -c -o $@.o $<
	$(FUZZ_CXX) -fsanitize=fuzzer $(FUZZ_SAN) -o $@ $@.o $(FUZZ_GW_LIB) \
		$(FUZZ_LIB) $(LDLIBS) $(NET_LIBS) $(NATS_LIBS)

fuzz-build: $(FUZZ_BINS)

fuzz: fuzz-build
	@rm -rf $(FUZZ_O)/crashes; mkdir -p $(FUZZ_O)/crashes; fail=0; \
	for t in $(FUZZ_TARGETS); do \
		rm -rf $(FUZZ_O)/work/$$t; mkdir -p $(FUZZ_O)/work/$$t; \
		find tests/fuzz/corpus/$$t -type f ! -name 'crash-*' \
			-exec cp {} $(FUZZ_O)/work/$$t/ \; 2>/dev/null; \
		dict=; [ -f tests/fuzz/$$t.dict ] && dict=-dict=tests/fuzz/$$t.dict; \
		echo "fuzz: $$t for $(FUZZ_SECONDS) s (log $(FUZZ_O)/$$t.log)"; \
		nice -n 10 $(FUZZ_O)/fuzz-$$t -max_total_time=$(FUZZ_SECONDS) \
			-max_len=$(FUZZ_MAX_LEN) -timeout=$(FUZZ_TIMEOUT) -rss_limit_mb=2048 \
			-print_final_stats=1 $$dict $(FUZZ_FLAGS) \
			-artifact_prefix=$(FUZZ_O)/crashes/$$t- \
			$(FUZZ_O)/work/$$t > $(FUZZ_O)/$$t.log 2>&1 || \
			{ echo "fuzz: $$t stopped (exit $$?)"; fail=1; }; \
		grep -E '^stat::(number_of_executed_units|average_exec_per_sec|new_units_added)' \
			$(FUZZ_O)/$$t.log | sed "s/^/  $$t /"; \
	done; \
	if [ -n "$$(ls -A $(FUZZ_O)/crashes)" ] || [ $$fail != 0 ]; then \
		echo "fuzz: findings in $(FUZZ_O)/crashes:"; ls $(FUZZ_O)/crashes; exit 1; \
	fi; echo "fuzz: no findings"
