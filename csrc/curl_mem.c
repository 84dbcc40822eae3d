/*
 * curl_mem.c - the memory functions connkit gives libcurl at global init.
 *
 * libcurl 7.x (and early 8.x) mallocs a 16 KiB download buffer at the start
 * of every transfer and frees it at the end. In a Lua process the heap grows
 * between the two (each reply is a few Lua objects), so glibc keeps
 * consolidating its free lists for that large request and trimming the
 * freed buffer off the top of the heap, and the pages come back with page
 * faults on the next transfer. Here those buffers are recycled instead: up
 * to MAX_BLOCKS of them, page-aligned so that free() can tell them apart
 * from any other pointer with one test in the common case. Everything else goes straight
 * to malloc and free. Used only when connkit is the first to initialise
 * libcurl in the process (curl_global_init_mem does nothing otherwise).
 *
 * libcurl keeps these function pointers for the life of the process, so the
 * module pins itself in memory: lua_close unloads the C modules it loaded,
 * and libcurl must never call into an unmapped library.
 *
 * Built with -DCONNKIT_NO_RECYCLE (the Makefile's sanitizer and valgrind
 * variants) libcurl keeps its own memory functions: a recycled block hides
 * a use after free or an overrun of the download buffer from ASan and
 * valgrind, and an idle block is memory they would not see freed.
 */
#include <dlfcn.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "connkit.h"

/* Loads this module once more with RTLD_NODELETE: it then stays mapped
 * after lua_close's dlclose. */
static void pin_module(void) {
  static const char anchor = 0;
  Dl_info info;
  if (dladdr(&anchor, &info) != 0 && info.dli_fname != NULL)
    (void)dlopen(info.dli_fname, RTLD_NOW | RTLD_NODELETE);
}

#ifdef CONNKIT_NO_RECYCLE

int ck_curl_global_init(void) {
  pin_module(); /* as below: the same library lifetime in every build */
  return (int)curl_global_init(CURL_GLOBAL_DEFAULT);
}

#else

#define BLOCK_SIZE (CURL_MAX_WRITE_SIZE + 1) /* curl's buffer_size + 1 */
#define BLOCK_ALIGN 4096u
#define BLOCK_BYTES ((BLOCK_SIZE + BLOCK_ALIGN - 1) / BLOCK_ALIGN * BLOCK_ALIGN)
#define MAX_BLOCKS 64

/* The lists below are guarded by a spinlock, not a mutex: it is held for a
 * few loads and stores and never across a call, and the allocator runs
 * about 50 times per transfer, so an uncontended pthread mutex (two calls
 * each way) was a measurable share of a request. */
static char list_lock;
static void *blocks[MAX_BLOCKS]; /* every block made, lent out or idle */
static int nblocks;
static void *idle[MAX_BLOCKS];
static int nidle;

static void lock_lists(void) {
  while (__atomic_test_and_set(&list_lock, __ATOMIC_ACQUIRE))
    while (__atomic_load_n(&list_lock, __ATOMIC_RELAXED)) sched_yield();
}

static void unlock_lists(void) { __atomic_clear(&list_lock, __ATOMIC_RELEASE); }

/* An idle block, or a new one while there are fewer than MAX_BLOCKS, or
 * NULL. (Out of line, like give_block: the allocator's common paths then
 * are a test and a jump to the C library.) */
static __attribute__((noinline)) void *take_block(void) {
  void *p = NULL;
  int room;
  lock_lists();
  if (nidle > 0) p = idle[--nidle];
  room = p == NULL && nblocks < MAX_BLOCKS;
  unlock_lists();
  if (!room) return p;
  p = aligned_alloc(BLOCK_ALIGN, BLOCK_BYTES); /* (not under the spinlock) */
  if (p == NULL) return NULL;
  lock_lists();
  if (nblocks < MAX_BLOCKS) {
    blocks[nblocks++] = p;
  } else { /* another thread took the last slot meanwhile */
    unlock_lists();
    free(p);
    return NULL;
  }
  unlock_lists();
  return p;
}

/* Whether p is one of the blocks (the caller holds the lock). */
static int is_block(const void *p) {
  int i;
  for (i = 0; i < nblocks; i++)
    if (blocks[i] == p) return 1;
  return 0;
}

/* Takes back p, page-aligned, if it is one of the blocks; returns whether
 * it was. */
static __attribute__((noinline)) int give_block(void *p) {
  int mine;
  lock_lists();
  mine = is_block(p);
  if (mine) idle[nidle++] = p;
  unlock_lists();
  return mine;
}

static int page_aligned(const void *p) { return ((uintptr_t)p & (BLOCK_ALIGN - 1)) == 0; }

static void *mem_malloc(size_t n) {
  if (n == BLOCK_SIZE) {
    void *p = take_block();
    if (p != NULL) return p;
  }
  return malloc(n);
}

static void mem_free(void *p) {
  /* a block is page-aligned; most pointers are not (one test, then free) */
  if (page_aligned(p) && p != NULL && give_block(p)) return;
  free(p);
}

/* curl never grows its download buffer, but a block must not reach the
 * C library's realloc either way. */
static void *mem_realloc(void *p, size_t n) {
  void *np;
  int mine;
  if (!page_aligned(p) || p == NULL) return realloc(p, n);
  lock_lists();
  mine = is_block(p);
  unlock_lists();
  if (!mine) return realloc(p, n);
  np = malloc(n);
  if (np == NULL) return NULL;
  memcpy(np, p, n < BLOCK_SIZE ? n : BLOCK_SIZE);
  give_block(p);
  return np;
}

int ck_curl_global_init(void) {
  pin_module();
  /* strdup and calloc never see a block: the C library's own will do */
  return (int)curl_global_init_mem(CURL_GLOBAL_DEFAULT, mem_malloc, mem_free,
                                   mem_realloc, strdup, calloc);
}

#endif /* CONNKIT_NO_RECYCLE */
