# alertd build. `make` builds the release binaries in build/, `make test`
# the sanitizer build in build/asan/ and runs every test, `make run` the
# development stack. See README.md.

PKGS     := libevent hiredis libprotobuf-c libpq libsystemd inih jansson libcrypto zlib
B        ?= build
SAN      ?= 0
FUZZ     ?= 0
# The daemon's allocator: jemalloc (as Redis uses), or MALLOC=libc for
# glibc's. glibc's malloc was over a quarter of alertd's CPU under load
# (docs/BENCHMARKS.md, optimisation 28). Sanitizer builds always use the
# sanitizer's own.
MALLOC   ?= jemalloc
CC       ?= cc

CFLAGS_PKG := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LIBS       := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lhttp_parser -lm
CFLAGS   := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow \
            -Wno-unused-parameter -g -O2 -fno-omit-frame-pointer \
            -I$(B)/gen -Idaemon $(CFLAGS_PKG)
LDFLAGS  :=
ifeq ($(SAN),1)
CFLAGS   += -O1 -fsanitize=address,undefined -fno-sanitize-recover=undefined
LDFLAGS  += -fsanitize=address,undefined
MALLOC   := libc
endif
ifeq ($(MALLOC),jemalloc)
ALERTD_LIBS := $(shell pkg-config --libs jemalloc 2>/dev/null || echo -ljemalloc) $(LIBS)
else ifeq ($(MALLOC),libc)
ALERTD_LIBS := $(LIBS)
else
$(error MALLOC must be jemalloc or libc, not $(MALLOC))
endif
# FUZZ=1 (with CC=clang, SAN=1): coverage for libFuzzer (scripts/fuzz.sh).
ifeq ($(FUZZ),1)
CFLAGS   += -fsanitize=fuzzer-no-link -DALERTD_LIBFUZZER
endif

# Modules of the daemon: everything in daemon/ but the two mains and the
# alertctl subcommands (daemon/ctl_*.c, linked into alertctl only).
CTL_SRC  := $(wildcard daemon/ctl_*.c)
MODULES  := $(filter-out daemon/main.c daemon/alertctl.c $(CTL_SRC),$(wildcard daemon/*.c))
GEN_C    := $(B)/gen/alertd.pb-c.c
MOD_OBJS := $(patsubst daemon/%.c,$(B)/obj/%.o,$(MODULES)) \
            $(B)/obj/alertd.pb-c.o $(B)/obj/lua_blob.o
CTL_OBJS := $(B)/obj/alertctl.o $(B)/obj/config.o $(B)/obj/log.o \
            $(B)/obj/evt.o $(B)/obj/auth.o $(B)/obj/numtext.o \
            $(B)/obj/lua_blob.o \
            $(B)/obj/policy.o \
            $(B)/obj/audit_query.o $(B)/obj/personal.o $(B)/obj/jsonout.o \
            $(B)/obj/tzclock.o \
            $(patsubst daemon/%.c,$(B)/obj/%.o,$(CTL_SRC))
UNIT_SRC := $(wildcard tests/unit/*.c)
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
UNIT_OBJS:= $(patsubst tests/unit/%.c,$(B)/obj/unit_%.o,$(UNIT_SRC)) \
            $(patsubst tests/fuzz/%.c,$(B)/obj/%.o,$(FUZZ_SRC))

.PHONY: all test run clean deps check-config install bench bench-smoke fuzz
all: $(B)/alertd $(B)/alertctl

$(B)/gen/alertd.pb-c.c $(B)/gen/alertd.pb-c.h &: proto/alertd.proto
	@mkdir -p $(B)/gen
	protoc-c --proto_path=proto --c_out=$(B)/gen proto/alertd.proto

$(B)/obj/alertd.pb-c.o: $(B)/gen/alertd.pb-c.c
	@mkdir -p $(B)/obj
	$(CC) $(CFLAGS) -Wno-shadow -c -o $@ $<

# The Lua script is embedded in the binaries with .incbin.
$(B)/obj/lua_blob.o: daemon/lua/lua_blob.S daemon/lua/decide.lua
	@mkdir -p $(B)/obj
	$(CC) -c -Idaemon/lua -o $@ daemon/lua/lua_blob.S

$(B)/obj/%.o: daemon/%.c $(B)/gen/alertd.pb-c.h $(wildcard daemon/*.h)
	@mkdir -p $(B)/obj
	$(CC) $(CFLAGS) -c -o $@ $<

$(B)/obj/unit_%.o: tests/unit/%.c $(B)/gen/alertd.pb-c.h $(wildcard daemon/*.h tests/unit/*.h tests/fuzz/*.h)
	@mkdir -p $(B)/obj
	$(CC) $(CFLAGS) -Itests/unit -Itests/fuzz -c -o $@ $<

$(B)/obj/fuzz_%.o: tests/fuzz/fuzz_%.c $(B)/gen/alertd.pb-c.h $(wildcard daemon/*.h tests/fuzz/*.h)
	@mkdir -p $(B)/obj
	$(CC) $(CFLAGS) -Itests/fuzz -c -o $@ $<

# A stamp per allocator, so that `make MALLOC=...` relinks an up-to-date
# build/alertd with the other one.
$(B)/.malloc-$(MALLOC):
	@mkdir -p $(B)
	@rm -f $(B)/.malloc-*
	@touch $@

$(B)/alertd: $(B)/obj/main.o $(MOD_OBJS) $(B)/.malloc-$(MALLOC)
	$(CC) $(LDFLAGS) -o $@ $(filter %.o,$^) $(ALERTD_LIBS)

$(B)/alertctl: $(CTL_OBJS)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(B)/unit: $(UNIT_OBJS) $(MOD_OBJS)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

deps:
	@scripts/deps.sh

# Benchmarks (docs/BENCHMARKS.md). The load generator links the daemon's
# modules (protobuf code, signatures) like the unit tests do. `make bench`
# runs everything for minutes and rewrites docs/BENCHMARKS.md' table;
# `make bench-smoke` (seconds, part of `make test`) proves the tool works.
BENCH_SRC  := $(wildcard bench/*.c)
BENCH_OBJS := $(patsubst bench/%.c,$(B)/obj/bench_%.o,$(BENCH_SRC))
$(B)/obj/bench_%.o: bench/%.c $(B)/gen/alertd.pb-c.h $(wildcard daemon/*.h bench/*.h)
	@mkdir -p $(B)/obj
	$(CC) $(CFLAGS) -Ibench -c -o $@ $<

# http_parser (libhttp-parser-dev, in LIBS) reads the daemon's requests
# (daemon/http1.c) and the answers in the load generator.
$(B)/loadgen: $(BENCH_OBJS) $(MOD_OBJS)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

bench:
	@scripts/bench.sh

bench-smoke:
	@scripts/bench.sh --smoke

# Fuzzing what devices send (tests/fuzz/fuzz_ingest.c) and the config
# (fuzz_config.c) with clang's libFuzzer, ASan and UBSan: FUZZ_SECONDS
# (default 300) each, from the kept corpora; see scripts/fuzz.sh. Not part
# of `make test`, which replays the kept corpora through the same checks
# (tests/unit/test_fuzz_corpus.c).
FUZZ_SECONDS ?= 300
$(B)/fuzz_%: $(B)/obj/fuzz_%.o $(MOD_OBJS)
	$(CC) $(LDFLAGS) -fsanitize=fuzzer -o $@ $^ $(LIBS)

fuzz:
	@scripts/fuzz.sh $(FUZZ_SECONDS)

# The whole test suite on the sanitizer build against real Redis and
# PostgreSQL started on free loopback ports. Last line: "N passed, N failed".
test:
	@scripts/test.sh

run:
	@scripts/run.sh

check-config: $(B)/alertd
	$(B)/alertd --check-config config/alertd.dev.ini
	$(B)/alertd --check-config config/alertd.example.ini

clean:
	rm -rf build

# Production install (as root): binaries, migrations, example config, unit.
PREFIX ?= /usr/local
install: all
	install -D -m 755 $(B)/alertd $(DESTDIR)$(PREFIX)/bin/alertd
	install -D -m 755 $(B)/alertctl $(DESTDIR)$(PREFIX)/bin/alertctl
	install -d $(DESTDIR)$(PREFIX)/share/alertd/migrations
	install -m 644 config/migrations/*.sql $(DESTDIR)$(PREFIX)/share/alertd/migrations/
	install -D -m 644 README.md $(DESTDIR)$(PREFIX)/share/doc/alertd/README.md
	install -m 644 docs/*.md $(DESTDIR)$(PREFIX)/share/doc/alertd/
	install -D -m 644 systemd/alertd.service $(DESTDIR)/etc/systemd/system/alertd.service
	install -D -m 644 systemd/alertd.sysusers $(DESTDIR)/usr/lib/sysusers.d/alertd.conf
	# The service user first, so that it can read the config (root:alertd
	# 0640: it holds the device secrets and the database password).
	if [ -z "$(DESTDIR)" ] && command -v systemd-sysusers >/dev/null; then \
	  systemd-sysusers /usr/lib/sysusers.d/alertd.conf; fi
	test -e $(DESTDIR)/etc/alertd/alertd.ini || \
	  install -D -m 640 config/alertd.example.ini $(DESTDIR)/etc/alertd/alertd.ini
	if [ -z "$(DESTDIR)" ] && getent group alertd >/dev/null; then \
	  chgrp alertd /etc/alertd/alertd.ini; fi
