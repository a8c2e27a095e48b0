# moat - spam-filtering and signing SMTP proxy and milter.
#
#   make            build moatd and moat (build/)
#   make demo       install packages, build, relay mail through moatd (tests/demo.sh)
#   make check      install packages, build under ASan+UBSan, run every test
#   make fuzz       longer libFuzzer runs (FUZZ_SECONDS each)
#   make install    install binaries, config and man pages under $(DESTDIR)$(PREFIX)
#   make bench      install packages, build, benchmark; writes docs/PERFORMANCE.md
#   make bench-quick  the same with small loads (a minute or two), for development
#
# Packages are Debian 12's; see DEMO_PKGS and CHECK_PKGS below.

PREFIX    ?= /usr/local
SYSCONFDIR ?= /etc
CC        ?= cc
PKGS      := libevent libevent_pthreads libevent_openssl libconfuse libunbound libidn2 hiredis libssl libcrypto libpsl
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
VERSION   := $(shell cat VERSION 2>/dev/null || echo 0.1.0)

WARN      := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wformat=2 -Wno-format-nonliteral
BASECFLAGS := -std=c11 -D_GNU_SOURCE -DMOAT_VERSION='"$(VERSION)"' \
	-DMOAT_SYSCONFDIR='"$(SYSCONFDIR)"' -Iutil -Iproxy -Imilter -Ifilters -Ikeys -Icli $(PKG_CFLAGS)
CFLAGS    ?= -O2 -g
SAN       := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
# libspf2 and libmilter ship no pkg-config file (Debian 12): linked by name.
LDLIBS    := $(PKG_LIBS) -lspf2 -lmilter -lpthread

# Debian packages. Runtime and build: what `make demo` needs.
DEMO_PKGS := make gcc libc6-dev pkg-config libevent-dev libconfuse-dev libunbound-dev libhiredis-dev libspf2-dev libidn2-dev libmilter-dev libssl-dev libpsl-dev publicsuffix openssl postfix swaks
# The test suite adds clang's libFuzzer, Python for the test servers,
# groff/man-db to lint the man pages, util-linux (unshare, script),
# procps, miltertest (OpenDKIM's milter test driver), and the independent
# DKIM implementations the interop tests check against: dkimpy (python3-dkim,
# python3-nacl for ed25519), Mail::DKIM, OpenDKIM's tools; headless
# chromium loads the status page (tests/integration/test_metrics.py).
CHECK_PKGS := $(DEMO_PKGS) clang libclang-rt-14-dev python3 python3-dnslib python3-spf python3-yaml spf-tools-perl unbound redis-server redis-sentinel groff-base man-db procps util-linux mount bsdutils iproute2 miltertest python3-dkim python3-nacl libmail-dkim-perl libcrypt-openssl-rsa-perl opendkim-tools chromium dpkg-dev debhelper

# Benchmarks (tests/bench/): Postfix's smtp-source/smtp-sink and a Postfix,
# unbound for the test zones, OpenDKIM and rspamd to compare the milter with.
BENCH_PKGS := $(DEMO_PKGS) python3 python3-dnslib unbound redis-server opendkim rspamd procps bsdutils

LIB_SRCS  := $(wildcard util/*.c) $(filter-out proxy/moatd.c,$(wildcard proxy/*.c)) \
	     $(wildcard milter/*.c) $(wildcard filters/*.c) $(wildcard keys/*.c)
B         := build
LIB_OBJS  := $(LIB_SRCS:%.c=$(B)/%.o)
SAN_OBJS  := $(LIB_SRCS:%.c=$(B)/san/%.o)
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(B)/san/tests/%)
FUZZ_SRCS := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BINS := $(FUZZ_SRCS:tests/fuzz/%.c=$(B)/fuzz/%)
HOOK_SRCS := $(wildcard tests/hooks/*.c)

.PHONY: all check demo fuzz install clean deps-demo deps-check build-check bench bench-quick deps-bench
all: $(B)/moatd $(B)/moat

$(B)/%.o: %.c $(wildcard */*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(BASECFLAGS) $(WARN) -c -o $@ $<
$(B)/san/%.o: %.c $(wildcard */*.h)
	@mkdir -p $(dir $@)
	$(CC) -O1 -g $(SAN) $(BASECFLAGS) $(WARN) -c -o $@ $<

$(B)/libmoat.a: $(LIB_OBJS)
	rm -f $@; ar rcs $@ $^
$(B)/san/libmoat.a: $(SAN_OBJS)
	rm -f $@; ar rcs $@ $^

$(B)/moatd: $(B)/proxy/moatd.o $(B)/libmoat.a
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)
CLI_SRCS := $(wildcard cli/*.c)
$(B)/moat: $(CLI_SRCS:%.c=$(B)/%.o) $(B)/libmoat.a
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

# Sanitizer builds used by the test suite. moatd-hooktest is moatd with
# the test filters of tests/hooks/ linked in (they register themselves).
$(B)/san/moatd: $(B)/san/proxy/moatd.o $(B)/san/libmoat.a
	$(CC) $(SAN) -o $@ $^ $(LDLIBS)
$(B)/san/moat: $(CLI_SRCS:%.c=$(B)/san/%.o) $(B)/san/libmoat.a
	$(CC) $(SAN) -o $@ $^ $(LDLIBS)
$(B)/san/moatd-hooktest: $(B)/san/proxy/moatd.o $(HOOK_SRCS:%.c=$(B)/san/%.o) $(B)/san/libmoat.a
	$(CC) $(SAN) -o $@ $^ $(LDLIBS)
$(B)/san/moat-hooktest: $(CLI_SRCS:%.c=$(B)/san/%.o) $(HOOK_SRCS:%.c=$(B)/san/%.o) $(B)/san/libmoat.a
	$(CC) $(SAN) -o $@ $^ $(LDLIBS)
$(B)/san/tests/%: tests/unit/%.c $(B)/san/libmoat.a tests/unit/unit.h
	@mkdir -p $(dir $@)
	$(CC) -O1 -g $(SAN) $(BASECFLAGS) $(WARN) -Itests/unit -o $@ $< $(B)/san/libmoat.a $(LDLIBS)

# libFuzzer targets: clang; the library is compiled once with the fuzzer's
# instrumentation (fuzzer-no-link) and every target links it.
FUZZ_CC   := clang
FUZZ_SAN  := -fsanitize=fuzzer-no-link,address,undefined
FUZZ_OBJS := $(LIB_SRCS:%.c=$(B)/fuzzobj/%.o)
$(B)/fuzzobj/%.o: %.c $(wildcard */*.h)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) -g -O1 $(FUZZ_SAN) $(BASECFLAGS) $(WARN) -c -o $@ $<
$(B)/fuzz/libmoat.a: $(FUZZ_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@; ar rcs $@ $^
$(B)/fuzz/%: tests/fuzz/%.c $(B)/fuzz/libmoat.a $(wildcard */*.h)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) -g -O1 -fsanitize=fuzzer,address,undefined $(BASECFLAGS) $(WARN) -o $@ $< $(B)/fuzz/libmoat.a $(LDLIBS)

build-check: all $(B)/san/moatd $(B)/san/moat $(B)/san/moatd-hooktest $(B)/san/moat-hooktest $(UNIT_BINS) $(FUZZ_BINS)

deps-demo:
	@MOAT_PKGS="$(DEMO_PKGS)" sh tests/install-deps.sh
deps-check:
	@MOAT_PKGS="$(CHECK_PKGS)" sh tests/install-deps.sh

demo: deps-demo
	$(MAKE) all
	sh tests/demo.sh

check: deps-check
	$(MAKE) build-check
	sh tests/run.sh

deps-bench:
	@MOAT_PKGS="$(BENCH_PKGS)" sh tests/install-deps.sh
$(B)/bench/dkim_speed: tests/bench/dkim_speed.c $(B)/libmoat.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(BASECFLAGS) $(WARN) -o $@ $< $(B)/libmoat.a $(LDLIBS)
bench: deps-bench
	$(MAKE) all $(B)/bench/dkim_speed
	/usr/bin/python3 tests/bench/run.py
bench-quick: deps-bench
	$(MAKE) all $(B)/bench/dkim_speed
	/usr/bin/python3 tests/bench/run.py --quick

FUZZ_SECONDS ?= 300
fuzz: $(FUZZ_BINS)
	for f in $(FUZZ_BINS); do n=$$(basename $$f); mkdir -p $(B)/corpus/$$n; \
	  $$f -max_total_time=$(FUZZ_SECONDS) $(B)/corpus/$$n tests/fuzz/corpus/$$n || exit 1; done

install: all
	install -d $(DESTDIR)$(PREFIX)/sbin $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(SYSCONFDIR)/moat \
	  $(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)$(PREFIX)/share/man/man5 $(DESTDIR)$(PREFIX)/share/man/man8
	install -m 755 $(B)/moatd $(DESTDIR)$(PREFIX)/sbin/moatd
	install -m 755 $(B)/moat $(DESTDIR)$(PREFIX)/bin/moat
	install -d -m 700 $(DESTDIR)/var/spool/moat
	if getent passwd moat >/dev/null; then chown moat:moat $(DESTDIR)/var/spool/moat; fi
	for f in conf/*.conf; do t=$(DESTDIR)$(SYSCONFDIR)/moat/$$(basename $$f); \
	  test -e $$t || install -m 644 $$f $$t; done
	install -m 644 man/moat.1 $(DESTDIR)$(PREFIX)/share/man/man1/
	install -m 644 man/moat.conf.5 $(DESTDIR)$(PREFIX)/share/man/man5/
	install -m 644 man/moatd.8 $(DESTDIR)$(PREFIX)/share/man/man8/

clean:
	rm -rf $(B)
