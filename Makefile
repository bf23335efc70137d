# livedb: `make` builds build/livedb. See README.md for the tour.
#
#   make run     install what is missing, build, serve ./data with demo data
#   make test    install what is missing, then every test: unit, API (release
#                and ASan+UBSan builds), and a short run of each fuzzer
#   make asan    build/asan/livedb, with AddressSanitizer and UBSan
#   make fuzz    the fuzzers, longer (FUZZ_SECONDS each, default 300)
#   make bench   benchmarks side by side with Redis and PostgreSQL (bench/run,
#                bench/run-realtime, bench/run-orders)

CC      ?= cc
PKGS    := libuv jansson sqlite3 libsodium nettle
LLHTTP  := /usr/share/llhttp
CPPFLAGS := -D_GNU_SOURCE -I/usr/share/include/llhttp $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
WARN    := -Wall -Wextra -Wshadow -Wpointer-arith -Wstrict-prototypes -Wvla -Wformat=2 \
           -Wno-unused-parameter -Werror
CFLAGS  ?= -O2 -g
CFLAGS  += -std=c11 -pthread
LDLIBS  := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lwslay -pthread -lm

# Files built into the binary (apps' app.json, web pages): one file is a
# whole deployment. tools/embed.c turns them into build/gen/assets.c.
# (apps/*/sample/ holds sample legacy files for the import, not pages.)
ASSETS  := $(shell find apps web -type f ! -name '*.c' ! -path 'apps/*/sample/*' 2>/dev/null | LC_ALL=C sort)
# Debian's Chart.js (libjs-chart.js), served to the admin pages.
CHARTJS := /usr/share/javascript/chart.js/chart.min.js
GEN     := build/gen/assets.c
SRC     := $(shell find src apps -name '*.c' | sort) $(GEN)
LIBSRC  := $(filter-out src/main.c,$(SRC))
LLSRC   := api.c http.c llhttp.c
UNITSRC := $(sort $(wildcard tests/unit/*.c))
FUZZSRC := $(sort $(wildcard tests/fuzz/fuzz_*.c))

SAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
FUZZ_SECONDS ?= 300

# objects(dir, sources)
obj = $(patsubst %.c,$(1)/obj/%.o,$(2)) $(patsubst %.c,$(1)/obj/llhttp/%.o,$(LLSRC))

# Keep the objects of chained rules (the fuzzers), so a rebuild is incremental.
.SECONDARY:

.PHONY: all asan unit fuzz-build fuzz fuzz-smoke test test-unit test-api test-crash test-browser run deps bench clean

all: build/livedb

build/embed: tools/embed.c
	@mkdir -p build
	$(CC) -O2 -o $@ $<

$(GEN): build/embed $(ASSETS) $(CHARTJS)
	@mkdir -p $(dir $@)
	build/embed $(ASSETS) vendor/chart.min.js=$(CHARTJS) > $@.tmp && mv $@.tmp $@

# ---------------------------------------------------------------- objects

define build_dir
$(1)/obj/%.o: %.c $$(shell find src apps -name '*.h')
	@mkdir -p $$(dir $$@)
	$$(CC_$(2)) $$(CPPFLAGS) $$(CFLAGS) $$(FLAGS_$(2)) $$(WARN) -c $$< -o $$@

$(1)/obj/llhttp/%.o: $(LLHTTP)/%.c
	@mkdir -p $$(dir $$@)
	$$(CC_$(2)) $$(CPPFLAGS) $$(CFLAGS) $$(FLAGS_$(2)) -w -c $$< -o $$@
endef

CC_REL   := $(CC)
FLAGS_REL :=
CC_ASAN  := $(CC)
FLAGS_ASAN := $(SAN_FLAGS) -O1
CC_FUZZ  := clang
FLAGS_FUZZ := -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer -O1

$(eval $(call build_dir,build,REL))
$(eval $(call build_dir,build/asan,ASAN))
$(eval $(call build_dir,build/fuzz,FUZZ))

build/livedb: $(call obj,build,$(SRC))
	$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)

build/asan/livedb: $(call obj,build/asan,$(SRC))
	$(CC) $(CFLAGS) $(SAN_FLAGS) $^ -o $@ $(LDLIBS)

asan: build/asan/livedb

# ---------------------------------------------------------------- unit tests

build/unit: $(call obj,build,$(LIBSRC) $(UNITSRC))
	$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)

build/asan/unit: $(call obj,build/asan,$(LIBSRC) $(UNITSRC))
	$(CC) $(CFLAGS) $(SAN_FLAGS) $^ -o $@ $(LDLIBS)

unit: build/unit build/asan/unit

# ---------------------------------------------------------------- fuzzers

FUZZERS := $(patsubst tests/fuzz/%.c,build/fuzz/%,$(FUZZSRC))

build/fuzz/fuzz_%: $(call obj,build/fuzz,$(LIBSRC) tests/fuzz/fuzz_%.c)
	clang -fsanitize=fuzzer,address,undefined $^ -o $@ $(LDLIBS)

fuzz-build: $(FUZZERS)

fuzz-smoke: fuzz-build
	tests/fuzz/run 20

fuzz: fuzz-build
	tests/fuzz/run $(FUZZ_SECONDS)

# ---------------------------------------------------------------- the two commands

deps:
	scripts/install-deps

run: deps
	$(MAKE) build/livedb
	build/livedb serve --data ./data --listen 127.0.0.1:8080 --demo

test-unit: build/unit build/asan/unit
	build/unit
	build/asan/unit

test-api: build/livedb build/asan/livedb
	node --test --test-concurrency=1 tests/api/
	LIVEDB_BIN=build/asan/livedb node --test --test-concurrency=1 tests/api/

# Crash and corruption tests (tests/crash/): kill -9 at random moments under
# concurrent writers (CRASH_CYCLES, default 200), random bytes flipped in the
# database and its backups (CORRUPT_SEEDS, default 20); fewer on ASan.
test-crash: build/livedb build/asan/livedb
	node --test --test-concurrency=1 tests/crash/
	LIVEDB_BIN=build/asan/livedb CRASH_CYCLES=20 CORRUPT_SEEDS=5 node --test --test-concurrency=1 tests/crash/

# Browser tests: Debian's chromium via playwright-core, against the release
# binary (screenshots land in build/screenshots/).
test-browser: build/livedb
	node --test --test-concurrency=1 tests/browser/

test: deps
	$(MAKE) test-unit
	$(MAKE) test-api
	$(MAKE) test-crash
	$(MAKE) test-browser
	$(MAKE) fuzz-smoke

# The realtime load generator: libuv, wslay as a client, hiredis for Redis.
build/rtload: bench/rtload.c
	@mkdir -p build
	$(CC) -O2 -g -Wall -Wextra -o $@ $< -luv -lwslay -lhiredis

bench: deps
	scripts/install-deps --bench
	$(MAKE) build/livedb build/rtload
	bench/run
	bench/run-realtime
	bench/run-orders

clean:
	rm -rf build
