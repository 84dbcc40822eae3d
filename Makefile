# connkit - build, test, demo and bench.
#   make                 build connkit/core.so for $(LUA) (default lua5.4)
#   make test            install missing packages, build, start peers, run the specs
#   make test-asan       the same, under AddressSanitizer + UBSan
#   make test-valgrind   a script through every C path under valgrind (memcheck)
#   make demo            run examples/demo.lua end to end on loopback
#   make bench           connkit against its baselines, side by side
#   make rock            install with LuaRocks into ./luarocks
#   make docs            the Lua modules' reference (LDoc) into docs/; fails on any LDoc warning
#   make fuzz            libFuzzer targets: replay fuzz/corpus, then FUZZ_SECONDS each
#   make test-fresh      make test and make demo on a bare Debian 12 root (as root)
# LUA may be lua5.4, lua5.3, lua5.1 or luajit.

LUA     ?= lua5.4
VARIANT ?=
BUILD   := build/$(LUA)$(VARIANT)

LUA_PC_lua5.4  := lua5.4
LUA_PC_lua5.3  := lua5.3
LUA_PC_lua5.1  := lua5.1
LUA_PC_luajit  := luajit
LUA_PC := $(LUA_PC_$(LUA))
ifeq ($(LUA_PC),)
$(error LUA must be one of lua5.4 lua5.3 lua5.1 luajit, not '$(LUA)')
endif

CC      ?= cc
WARN    := -Wall -Wextra -Wshadow -Wmissing-prototypes -Wstrict-prototypes \
           -Wwrite-strings -Wpointer-arith -Wcast-qual -Wformat=2 -Werror=implicit-function-declaration
OPT     ?= -O2 -g
SAN     :=
VDEFS   :=
ifeq ($(VARIANT),-asan)
SAN     := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
OPT     := -O1 -g
VDEFS   := -DCONNKIT_NO_RECYCLE
endif
# test-valgrind: no sanitizer; both checked builds leave libcurl's buffers to
# malloc (csrc/curl_mem.c) so the checkers see every one
ifeq ($(VARIANT),-valgrind)
OPT     := -O1 -g
VDEFS   := -DCONNKIT_NO_RECYCLE
endif
PKGS    := libcurl openssl libssh2 zlib hiredis
CFLAGS_ALL  = $(OPT) $(WARN) $(SAN) $(VDEFS) -std=c99 -D_GNU_SOURCE -fPIC -fvisibility=hidden \
              $(shell pkg-config --cflags $(LUA_PC) $(PKGS) 2>/dev/null) $(CFLAGS)
LDFLAGS_ALL = -shared $(SAN) $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lpthread -ldl $(LDFLAGS)

SRCS    := $(wildcard csrc/*.c)
OBJS    := $(patsubst csrc/%.c,$(BUILD)/%.o,$(SRCS))
HDRS    := $(wildcard csrc/*.h)
SO      := $(BUILD)/connkit/core.so

.PHONY: all deps test test-asan test-valgrind demo bench clean format rock test-fresh docs
# connkit/core.so is the module of the last LUA built (copied every time, so
# switching LUA never leaves another version's module there)
all: $(SO)
	@mkdir -p connkit
	@cp $(SO) connkit/core.so

$(SO): $(OBJS)
	@mkdir -p $(dir $@)
	$(CC) -o $@ $(OBJS) $(LDFLAGS_ALL)

$(BUILD)/%.o: csrc/%.c $(HDRS) Makefile
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -c -o $@ $<

deps:
	@LUA=$(LUA) sh tools/deps.sh

# The OpenResty specs load connkit into nginx, whose Lua is LuaJIT: every
# make test builds build/luajit too, and test-asan build/luajit-asan (nginx
# is then started with the sanitizer runtimes preloaded).
NGX_BUILD := build/luajit
NGX_SO    := $(NGX_BUILD)/connkit/core.so

test: deps
	@$(MAKE) --no-print-directory $(SO)
	@$(MAKE) --no-print-directory LUA=luajit VARIANT= $(NGX_SO)
	@LUA=$(LUA) BUILD=$(BUILD) NGX_BUILD=$(NGX_BUILD) sh tools/run-specs.sh

test-asan: deps
	@$(MAKE) --no-print-directory VARIANT=-asan build/$(LUA)-asan/connkit/core.so
	@$(MAKE) --no-print-directory LUA=luajit VARIANT=-asan $(NGX_BUILD)-asan/connkit/core.so
	@LUA=$(LUA) BUILD=build/$(LUA)-asan NGX_BUILD=$(NGX_BUILD)-asan SANITIZE=1 sh tools/run-specs.sh

# spec/support/valgrind_workload.lua under valgrind (tools/valgrind.sh):
# fails on any memcheck error or a definitely lost block
test-valgrind:
	@LUA=$(LUA) sh tools/deps.sh valgrind
	@$(MAKE) --no-print-directory VARIANT=-valgrind build/$(LUA)-valgrind/connkit/core.so
	@LUA=$(LUA) BUILD=build/$(LUA)-valgrind sh tools/valgrind.sh spec/support/valgrind_workload.lua

demo: deps
	@$(MAKE) --no-print-directory $(SO)
	@LUA=$(LUA) BUILD=$(BUILD) sh tools/run-lua.sh examples/demo.lua

bench:
	@LUA=$(LUA) sh tools/deps.sh bench
	@$(MAKE) --no-print-directory $(SO)
	@LUA=$(LUA) BUILD=$(BUILD) sh bench/run.sh

# install with LuaRocks into ./luarocks (luarocks itself installed when missing)
rock:
	@LUA=$(LUA) sh tools/rock.sh

# the reference (LDoc, config.ld) into docs/; any LDoc warning fails it
docs:
	@LUA=$(LUA) sh tools/deps.sh docs
	@sh tools/docs.sh

# the committed tree's make test and make demo on a bare Debian 12 root
test-fresh:
	@sh tools/test-fresh.sh

# ---- fuzz: libFuzzer targets (fuzz/, README "Fuzzing"), clang + Lua 5.4 -----
FUZZ_TARGETS := template token known_hosts url loopback envelope jwt
FUZZ_SECONDS ?= 30
FUZZ_DIR     := build/fuzz
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_CFLAGS   = -O1 -g $(WARN) $(FUZZ_SAN) -std=c99 -D_GNU_SOURCE \
                $(shell pkg-config --cflags lua5.4 $(PKGS) 2>/dev/null)
FUZZ_LIBS     = $(shell pkg-config --libs lua5.4 $(PKGS) 2>/dev/null) -lpthread -ldl -lm
FUZZ_OBJS    := $(patsubst csrc/%.c,$(FUZZ_DIR)/obj/%.o,$(SRCS))
FUZZ_BINS    := $(addprefix $(FUZZ_DIR)/,$(FUZZ_TARGETS))

.PHONY: fuzz fuzz-build
.SECONDARY: $(FUZZ_OBJS)
fuzz:
	@LUA=lua5.4 sh tools/deps.sh fuzz
	@$(MAKE) --no-print-directory fuzz-build
	@FUZZ_SECONDS=$(FUZZ_SECONDS) sh fuzz/run.sh $(FUZZ_TARGETS)

fuzz-build: $(FUZZ_BINS)

$(FUZZ_DIR)/obj/%.o: csrc/%.c $(HDRS) Makefile
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c -o $@ $<

$(FUZZ_DIR)/%: fuzz/driver.c fuzz/%.lua $(FUZZ_OBJS) Makefile
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -fsanitize=fuzzer -DFUZZ_TARGET='"$*"' -DFUZZ_ROOT='"$(CURDIR)"' \
	  -o $@ fuzz/driver.c $(FUZZ_OBJS) $(FUZZ_LIBS)
# ---- end fuzz ----------------------------------------------------------------

format:
	clang-format -i csrc/*.c csrc/*.h bench/*.c

clean:
	rm -rf build connkit
