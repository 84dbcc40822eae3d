/*
 * inflate.c - zlib's inflate for transports that read replies themselves
 * (the ngx transport: Debian's OpenResty pieces have no Lua gunzip).
 *
 *   core.inflate(data, max) -> string | nil, code, message
 *
 * data: a whole gzip, zlib or raw deflate stream (Content-Encoding gzip or
 * deflate). gzip and zlib are told apart by their header (windowBits
 * 15 + 32); a "deflate" body that is neither is read as raw deflate
 * (windowBits -15), as libcurl does for servers that send it so. The output
 * is bounded: more than max bytes gives code "too_large" (max_body applies
 * to the decoded size); a corrupt or cut stream gives code "http" with
 * libcurl's wording (CURLE_BAD_CONTENT_ENCODING). Bytes after the end of
 * the stream are ignored.
 */
#include <string.h>

#include <zlib.h>

#include "connkit.h"

#define CHUNK 16384

typedef enum { INFLATE_OK, INFLATE_TOO_LARGE, INFLATE_BAD } inflate_status;

/* Inflates src into the buffer b with the given windowBits; at most max
 * bytes of output. On INFLATE_BAD, *why says what zlib found wrong and
 * *produced how many bytes had come out before (0: the header was not
 * understood). */
static inflate_status run_inflate(luaL_Buffer *b, const unsigned char *src,
                                  size_t n, size_t max, int window_bits,
                                  const char **why, size_t *produced) {
  z_stream z;
  int rc = Z_OK;
  size_t out = 0;
  memset(&z, 0, sizeof z);
  *why = NULL;
  *produced = 0;
  if (inflateInit2(&z, window_bits) != Z_OK) {
    *why = "out of memory";
    return INFLATE_BAD;
  }
  z.next_in = (unsigned char *)(size_t)src; /* zlib does not write to it */
  while (rc != Z_STREAM_END) {
    char *p = luaL_prepbuffer(b);
    size_t room = LUAL_BUFFERSIZE < CHUNK ? LUAL_BUFFERSIZE : CHUNK;
    size_t got;
    /* feed the input in pieces that fit zlib's uInt */
    if (z.avail_in == 0) {
      size_t left = n - (size_t)(z.next_in - src);
      z.avail_in = (uInt)(left > 0x40000000u ? 0x40000000u : left);
    }
    z.next_out = (unsigned char *)p;
    z.avail_out = (uInt)room;
    rc = inflate(&z, Z_NO_FLUSH);
    got = room - z.avail_out;
    out += got;
    if (out > max) {
      inflateEnd(&z);
      return INFLATE_TOO_LARGE;
    }
    luaL_addsize(b, got);
    if (rc == Z_STREAM_END) break;
    if (rc == Z_BUF_ERROR && z.avail_in == 0 && (size_t)(z.next_in - src) == n) {
      *why = "the compressed body ended before its end";
      break;
    }
    if (rc != Z_OK && rc != Z_BUF_ERROR) {
      *why = z.msg ? z.msg : "invalid data";
      break;
    }
  }
  inflateEnd(&z);
  *produced = out;
  return *why ? INFLATE_BAD : INFLATE_OK;
}

/* Whether src starts like a gzip member (1f 8b) or a zlib stream (method
 * 8, header check a multiple of 31); anything else is raw deflate. */
static int is_wrapped(const unsigned char *src, size_t n) {
  if (n < 2) return 1; /* too short for either: the first try reports it */
  if (src[0] == 0x1f && src[1] == 0x8b) return 1;
  return (src[0] & 0x0f) == 8 && (src[0] >> 4) <= 7 && (src[0] * 256 + src[1]) % 31 == 0;
}

/* core.inflate(data, max) */
static int core_inflate(lua_State *L) {
  size_t n, produced;
  const unsigned char *src = (const unsigned char *)luaL_checklstring(L, 1, &n);
  lua_Number m = luaL_checknumber(L, 2);
  size_t max = m >= 9007199254740992.0 ? (size_t)-1 : m < 0 ? 0 : (size_t)m;
  const char *why;
  inflate_status st;
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  st = run_inflate(&b, src, n, max, is_wrapped(src, n) ? 15 + 32 : -15, &why,
                   &produced);
  if (st == INFLATE_OK) {
    luaL_pushresult(&b);
    return 1;
  }
  lua_settop(L, 2);
  if (st == INFLATE_TOO_LARGE)
    return ck_fail(L, "too_large", "the response body is larger than %zu bytes",
                   max);
  return ck_fail(L, "http", "Error while processing content unencoding: %s",
                 why);
}

void inflate_open(lua_State *L) {
  lua_pushcfunction(L, core_inflate);
  lua_setfield(L, -2, "inflate");
}
