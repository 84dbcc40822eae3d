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
#include <pthread.h>
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
#define MAX_BLOCKS 64

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static void *blocks[MAX_BLOCKS]; /* every block made, lent out or idle */
static int nblocks;
static void *idle[MAX_BLOCKS];
static int nidle;

static void *take_block(void) {
  void *p = NULL;
  pthread_mutex_lock(&lock);
  if (nidle > 0) {
    p = idle[--nidle];
  } else if (nblocks < MAX_BLOCKS) {
    p = aligned_alloc(BLOCK_ALIGN, (BLOCK_SIZE + BLOCK_ALIGN - 1) / BLOCK_ALIGN * BLOCK_ALIGN);
    if (p != NULL) blocks[nblocks++] = p;
  }
  pthread_mutex_unlock(&lock);
  return p;
}

/* Whether p is one of the blocks (the caller holds the lock). */
static int is_block(const void *p) {
  int i;
  for (i = 0; i < nblocks; i++)
    if (blocks[i] == p) return 1;
  return 0;
}

/* Takes p back if it is one of the blocks; returns whether it was. */
static int give_block(void *p) {
  int mine;
  if (((uintptr_t)p & (BLOCK_ALIGN - 1)) != 0) return 0; /* the usual case */
  pthread_mutex_lock(&lock);
  mine = is_block(p);
  if (mine) idle[nidle++] = p;
  pthread_mutex_unlock(&lock);
  return mine;
}

static void *mem_malloc(size_t n) {
  if (n == BLOCK_SIZE) {
    void *p = take_block();
    if (p != NULL) return p;
  }
  return malloc(n);
}

static void mem_free(void *p) {
  if (p != NULL && !give_block(p)) free(p);
}

/* curl never grows its download buffer, but a block must not reach the
 * C library's realloc either way. */
static void *mem_realloc(void *p, size_t n) {
  void *np;
  int mine;
  if (p == NULL || ((uintptr_t)p & (BLOCK_ALIGN - 1)) != 0) return realloc(p, n);
  pthread_mutex_lock(&lock);
  mine = is_block(p);
  pthread_mutex_unlock(&lock);
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
