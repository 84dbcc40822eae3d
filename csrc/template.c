/*
 * template.c - "{name}" templates, compiled once, rendered with escaping for
 * the place each value lands in.
 *
 *   core.template(source, kind) -> template | nil, message
 *       kind: "raw" | "header" | "form" | "query" | "path" | "url"
 *       In a "url" template each placeholder gets the context of its place:
 *       a URL prefix ("{base}/x": inserted as is, but no spaces or controls),
 *       the authority (host characters only), a path segment, or the query.
 *   template:render(t1 [, t2 [, t3]]) -> string | nil, reason, name
 *       each name is looked up in t1, then t2, then t3; reason is "missing"
 *       (no value), "invalid" (a value this place cannot hold, e.g. CR/LF in
 *       a header or "/" in a host name) or "dots" (a path segment would be
 *       "." or "..": a walk up the path). Values are strings or numbers.
 *   template:names() -> { name, ... } (each once, in order of appearance)
 *   core.escape(value, context) -> string  ("path" | "query" | "form")
 *   core.header_safe(value) -> boolean  (no CR, LF or NUL)
 *
 * "{{" and "}}" are literal braces. A template is one userdata block: the
 * header, the segment array and the text they point into.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "connkit.h"

#define TEMPLATE_MT "connkit.template"
#define MAX_NAME 64

enum ctx {
  CTX_RAW,
  CTX_HEADER,
  CTX_FORM,
  CTX_QUERY,
  CTX_PATH,
  CTX_HOST,
  CTX_URLPREFIX
};

static const char *const ctx_names[] = {"raw",  "header", "form",  "query",
                                        "path", "host",   "prefix"};

enum url_state { U_SCHEME, U_PREFIX, U_AUTHORITY, U_PATH, U_QUERY };

typedef struct {
  unsigned char is_var;
  unsigned char ctx;
  unsigned short len;
  unsigned int off; /* into text[] */
} segment;

typedef struct {
  int nsegs;
  int nvars;
  segment *segs; /* points into the same block */
  char *text;
} template;

/* ------------------------------------------------------------------ */
/* Parsing                                                             */
/* ------------------------------------------------------------------ */

typedef struct {
  const char *src;
  size_t len;
  int kind; /* a ctx, or -1 for "url" */
  int nsegs, nvars;
  size_t textlen;
  segment *segs; /* NULL on the counting pass */
  char *text;
  char err[160];
} parser;

static int is_name_start(int c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static int is_name_char(int c) {
  return is_name_start(c) || (c >= '0' && c <= '9');
}

static void emit(parser *p, int is_var, int ctx, const char *s, size_t n) {
  if (!is_var && n == 0) return;
  /* literal runs may be split by "{{", so extend the previous literal */
  if (!is_var && p->nsegs > 0 && p->segs != NULL &&
      !p->segs[p->nsegs - 1].is_var &&
      p->segs[p->nsegs - 1].off + p->segs[p->nsegs - 1].len == p->textlen) {
    memcpy(p->text + p->textlen, s, n);
    p->segs[p->nsegs - 1].len = (unsigned short)(p->segs[p->nsegs - 1].len + n);
    p->textlen += n;
    return;
  }
  /* (the counting pass does not merge: its count is an upper bound) */
  if (p->segs != NULL) {
    segment *sg = &p->segs[p->nsegs];
    sg->is_var = (unsigned char)is_var;
    sg->ctx = (unsigned char)ctx;
    sg->len = (unsigned short)n;
    sg->off = (unsigned int)p->textlen;
    memcpy(p->text + p->textlen, s, n);
  }
  p->nsegs++;
  if (is_var) p->nvars++;
  p->textlen += n;
}

/* Context of a placeholder met in state st of a "url" template. */
static int url_ctx(enum url_state st) {
  switch (st) {
  case U_PREFIX:
    return CTX_URLPREFIX;
  case U_AUTHORITY:
    return CTX_HOST;
  case U_PATH:
    return CTX_PATH;
  default:
    return CTX_QUERY;
  }
}

/* Moves the URL state machine over one literal character at s[i]; returns how
 * many characters it consumed (3 for "://"). */
static size_t url_step(enum url_state *st, const char *s, size_t i, size_t n) {
  char c = s[i];
  int sep = (c == ':' && i + 2 < n && s[i + 1] == '/' && s[i + 2] == '/');
  switch (*st) {
  case U_SCHEME:
  case U_PREFIX:
    if (sep) {
      *st = U_AUTHORITY;
      return 3;
    }
    if (*st == U_PREFIX) {
      if (c == '/') *st = U_PATH;
      else if (c == '?' || c == '#') *st = U_QUERY;
    }
    return 1;
  case U_AUTHORITY:
    if (c == '/') *st = U_PATH;
    else if (c == '?' || c == '#') *st = U_QUERY;
    return 1;
  case U_PATH:
    if (c == '?' || c == '#') *st = U_QUERY;
    return 1;
  default:
    return 1;
  }
}

/* The state a "url" template starts in: with a scheme written out, in the
 * scheme; starting with a placeholder, in a URL prefix; otherwise (a relative
 * URL) in the path. */
static enum url_state url_start(const char *s, size_t n) {
  size_t i = 0;
  if (n > 0 && s[0] == '{' && !(n > 1 && s[1] == '{')) return U_PREFIX;
  /* scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ), then "://" */
  while (i < n && ((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
                   (i > 0 && ((s[i] >= '0' && s[i] <= '9') || s[i] == '+' ||
                              s[i] == '-' || s[i] == '.'))))
    i++;
  if (i > 0 && i + 2 < n && s[i] == ':' && s[i + 1] == '/' && s[i + 2] == '/')
    return U_SCHEME;
  return U_PATH;
}

/* One pass over the source: counts (segs == NULL) or fills. Returns 0 and sets
 * p->err on a syntax error. */
static int parse(parser *p) {
  const char *s = p->src;
  size_t n = p->len, i = 0, lit = 0;
  enum url_state st = url_start(s, n);
  p->nsegs = p->nvars = 0;
  p->textlen = 0;
  while (i < n) {
    char c = s[i];
    if (c == '{' || c == '}') {
      if (i + 1 < n && s[i + 1] == c) { /* "{{" or "}}": one literal brace */
        emit(p, 0, 0, s + lit, i + 1 - lit);
        i += 2;
        lit = i;
        continue;
      }
      if (c == '}') {
        snprintf(p->err, sizeof p->err,
                 "unmatched '}' at position %zu (write '}}' for a brace)",
                 i + 1);
        return 0;
      }
      {
        size_t j = i + 1;
        while (j < n && s[j] != '}' && s[j] != '{') j++;
        if (j >= n || s[j] != '}') {
          snprintf(p->err, sizeof p->err,
                   "unmatched '{' at position %zu (write '{{' for a brace)",
                   i + 1);
          return 0;
        }
        if (j == i + 1) {
          snprintf(p->err, sizeof p->err, "empty placeholder '{}' at position %zu",
                   i + 1);
          return 0;
        }
        {
          size_t k, nl = j - i - 1;
          int ok = nl <= MAX_NAME && is_name_start((unsigned char)s[i + 1]);
          for (k = i + 1; ok && k < j; k++)
            ok = is_name_char((unsigned char)s[k]);
          if (!ok) {
            snprintf(p->err, sizeof p->err,
                     "bad placeholder name at position %zu (letters, digits and "
                     "_ only, starting with a letter or _)",
                     i + 1);
            return 0;
          }
          emit(p, 0, 0, s + lit, i - lit);
          emit(p, 1, p->kind >= 0 ? p->kind : url_ctx(st), s + i + 1, nl);
        }
        i = j + 1;
        lit = i;
        continue;
      }
    }
    if (p->kind < 0) i += url_step(&st, s, i, n);
    else i++;
  }
  emit(p, 0, 0, s + lit, n - lit);
  return 1;
}

static int kind_of(const char *k) {
  if (strcmp(k, "url") == 0) return -1;
  if (strcmp(k, "raw") == 0) return CTX_RAW;
  if (strcmp(k, "header") == 0) return CTX_HEADER;
  if (strcmp(k, "form") == 0) return CTX_FORM;
  if (strcmp(k, "query") == 0) return CTX_QUERY;
  if (strcmp(k, "path") == 0) return CTX_PATH;
  return -2;
}

/* core.template(source, kind) -> template | nil, message.
 * Counts on a first pass, then allocates one userdata block (header, segments,
 * text) and fills it on the second. */
static int template_new(lua_State *L) {
  size_t len;
  const char *src = luaL_checklstring(L, 1, &len);
  const char *kname = luaL_optstring(L, 2, "raw");
  parser p;
  size_t segbytes, size;
  template *t;
  int kind = kind_of(kname);
  if (kind == -2) return luaL_argerror(L, 2, "unknown template kind");
  if (len > 65535) return luaL_argerror(L, 1, "template longer than 65535 bytes");
  memset(&p, 0, sizeof p);
  p.src = src;
  p.len = len;
  p.kind = kind;
  if (!parse(&p)) {
    lua_pushnil(L);
    lua_pushstring(L, p.err);
    return 2;
  }
  segbytes = sizeof(segment) * (size_t)(p.nsegs > 0 ? p.nsegs : 1);
  size = sizeof(template) + segbytes + p.textlen + 1;
  t = (template *)lua_newuserdatauv(L, size, 0);
  t->segs = (segment *)(void *)(t + 1);
  t->text = (char *)t->segs + segbytes;
  p.segs = t->segs;
  p.text = t->text;
  parse(&p);
  t->nsegs = p.nsegs;
  t->nvars = p.nvars;
  t->text[p.textlen] = '\0';
  luaL_setmetatable(L, TEMPLATE_MT);
  return 1;
}

static template *check_template(lua_State *L, int i) {
  return (template *)luaL_checkudata(L, i, TEMPLATE_MT);
}

/* ------------------------------------------------------------------ */
/* Escaping                                                            */
/* ------------------------------------------------------------------ */

static int is_unreserved(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' || c == '~';
}

static int is_host_char(unsigned char c) {
  return is_unreserved(c) || c == ':' || c == '[' || c == ']';
}

/* True when v (length n) may be put into context ctx at all. */
static int value_fits(int ctx, const char *v, size_t n) {
  size_t i;
  switch (ctx) {
  case CTX_HEADER:
    for (i = 0; i < n; i++)
      if (v[i] == '\r' || v[i] == '\n' || v[i] == '\0') return 0;
    return 1;
  case CTX_HOST:
    if (n == 0) return 0;
    for (i = 0; i < n; i++)
      if (!is_host_char((unsigned char)v[i])) return 0;
    return 1;
  case CTX_URLPREFIX:
    for (i = 0; i < n; i++) {
      unsigned char c = (unsigned char)v[i];
      if (c <= 0x20 || c >= 0x7f) return 0;
    }
    return 1;
  default:
    return 1;
  }
}

/* Appends v to b, percent-encoded for ctx (path segment, query, form) or as
 * it is (raw, header, host, prefix: those were checked by value_fits). */
static void add_escaped(luaL_Buffer *b, int ctx, const char *v, size_t n) {
  static const char hex[] = "0123456789ABCDEF";
  size_t i;
  if (ctx != CTX_PATH && ctx != CTX_QUERY && ctx != CTX_FORM) {
    luaL_addlstring(b, v, n);
    return;
  }
  /* encode through a small local chunk: luaL_prepbuffsize is not in 5.1 */
  for (i = 0; i < n;) {
    char chunk[3 * 256];
    char *out = chunk;
    size_t end = i + 256 < n ? i + 256 : n;
    for (; i < end; i++) {
      unsigned char c = (unsigned char)v[i];
      if (is_unreserved(c)) {
        *out++ = (char)c;
      } else if (c == ' ' && ctx == CTX_FORM) {
        *out++ = '+';
      } else {
        *out++ = '%';
        *out++ = hex[c >> 4];
        *out++ = hex[c & 15];
      }
    }
    luaL_addlstring(b, chunk, (size_t)(out - chunk));
  }
}

/* ------------------------------------------------------------------ */
/* Dot segments                                                        */
/* ------------------------------------------------------------------ */

/* A path segment that renders to "." or ".." walks the path: libcurl and
 * servers resolve it, and percent-encoding leaves dots alone. Servers such
 * as nginx also decode %2F before resolving, so a value is cut at "/" (and
 * "\", a separator on Windows servers) as well: "../x" is refused too.
 * A piece tracks the segment being scanned: its length (capped at 3), whether
 * it is all dots, and whether a path placeholder's value is part of it. */
typedef struct {
  int len;
  int dots;
  int var;
} piece;

static int piece_end(piece *p) {
  int bad = p->var && p->dots && p->len >= 1 && p->len <= 2;
  p->len = 0;
  p->dots = 1;
  p->var = 0;
  return bad;
}

static void piece_add(piece *p, char c) {
  if (p->len < 3) p->len++;
  if (c != '.') p->dots = 0;
}

/* Index of the first path placeholder whose value makes a dot segment, or
 * -1. The values are on the stack from base + 1, one per placeholder. */
static int find_dot_segment(lua_State *L, const template *t, int base) {
  piece p = {0, 1, 0};
  int i, vi = base + 1, last = -1;
  for (i = 0; i < t->nsegs; i++) {
    const segment *sg = &t->segs[i];
    const char *s;
    size_t k, n;
    int is_path = sg->is_var && sg->ctx == CTX_PATH;
    if (sg->is_var) {
      s = lua_tolstring(L, vi++, &n);
    } else {
      s = t->text + sg->off;
      n = sg->len;
    }
    if (is_path) {
      p.var = 1;
      last = i;
    }
    for (k = 0; k < n; k++) {
      char c = s[k];
      int cut = is_path ? (c == '/' || c == '\\')
                        : (c == '/' || c == '?' || c == '#');
      if (!cut) {
        piece_add(&p, c);
        continue;
      }
      if (piece_end(&p)) return last;
      /* the rest of a path value is still that value */
      if (is_path) p.var = 1;
    }
  }
  return piece_end(&p) ? last : -1;
}

/* ------------------------------------------------------------------ */
/* Rendering                                                           */
/* ------------------------------------------------------------------ */

/* Pushes a number as a template value: whole numbers without ".0" or an
 * exponent (JSON numbers arrive as floats: 8080.0 must read "8080"), other
 * numbers in the fewest digits that read back as the same double ("0.1",
 * not "0.10000000000000001"). */
static void push_number(lua_State *L, lua_Number d, int is_int) {
  char buf[64];
  int prec;
  if (is_int) {
    lua_pushstring(L, lua_tostring(L, -1));
    return;
  }
  if (d == floor(d) && fabs(d) < 9007199254740992.0) {
    snprintf(buf, sizeof buf, "%.0f", (double)d);
  } else {
    for (prec = 15; prec < 17; prec++) {
      snprintf(buf, sizeof buf, "%.*g", prec, (double)d);
      if (strtod(buf, NULL) == (double)d) break;
    }
    if (prec == 17) snprintf(buf, sizeof buf, "%.17g", (double)d);
  }
  lua_pushstring(L, buf);
}

/* core.format_number(n) -> n as a template would write it */
static int core_format_number(lua_State *L) {
  luaL_checknumber(L, 1);
  lua_pushvalue(L, 1);
  push_number(L, lua_tonumber(L, 1), compat_is_integer_subtype(L, 1));
  return 1;
}

/* Pushes the value of name from the lookup tables at 2..ntab+1; returns 0
 * (with nothing pushed) when none has it. */
static int lookup(lua_State *L, int ntab, const char *name, size_t len) {
  int k;
  lua_pushlstring(L, name, len);
  for (k = 0; k < ntab; k++) {
    if (!lua_istable(L, 2 + k)) continue;
    lua_pushvalue(L, -1);
    lua_gettable(L, 2 + k);
    if (!lua_isnil(L, -1)) {
      lua_remove(L, -2);
      return 1;
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return 0;
}

/* template:render(t1 [, t2 [, t3]]) -> string | nil, reason, name [, ctx].
 * First pushes every placeholder's value (checked for its context), then
 * builds the string, so the buffer's stack use stays balanced. */
static int template_render(lua_State *L) {
  template *t = check_template(L, 1);
  int ntab = lua_gettop(L) - 1, i, base, has_path;
  luaL_Buffer b;
  if (ntab > 3) ntab = 3;
  if (t->nvars == 0) {
    lua_pushlstring(L, t->text, t->nsegs ? t->segs[0].len : 0);
    return 1;
  }
  luaL_checkstack(L, t->nvars + 4, "too many placeholders");
  base = lua_gettop(L);
  has_path = 0;
  for (i = 0; i < t->nsegs; i++) {
    const segment *sg = &t->segs[i];
    const char *name = t->text + sg->off, *v;
    size_t vn;
    int ty;
    if (!sg->is_var) continue;
    if (!lookup(L, ntab, name, sg->len)) {
      lua_pushnil(L);
      lua_pushliteral(L, "missing");
      lua_pushlstring(L, name, sg->len);
      return 3;
    }
    ty = lua_type(L, -1);
    if (ty == LUA_TNUMBER) {
      push_number(L, lua_tonumber(L, -1), compat_is_integer_subtype(L, -1));
      lua_replace(L, -2);
      ty = LUA_TSTRING;
    }
    v = ty == LUA_TSTRING ? lua_tolstring(L, -1, &vn) : NULL;
    if (v == NULL || !value_fits(sg->ctx, v, vn)) {
      lua_pushnil(L);
      lua_pushliteral(L, "invalid");
      lua_pushlstring(L, name, sg->len);
      lua_pushstring(L, ctx_names[sg->ctx]);
      return 4;
    }
    if (sg->ctx == CTX_PATH) has_path = 1;
  }
  if (has_path && (i = find_dot_segment(L, t, base)) >= 0) {
    lua_pushnil(L);
    lua_pushliteral(L, "dots");
    lua_pushlstring(L, t->text + t->segs[i].off, t->segs[i].len);
    lua_pushliteral(L, "path");
    return 4;
  }
  luaL_buffinit(L, &b);
  {
    int vi = base + 1;
    for (i = 0; i < t->nsegs; i++) {
      const segment *sg = &t->segs[i];
      if (!sg->is_var) {
        luaL_addlstring(&b, t->text + sg->off, sg->len);
      } else {
        size_t vn;
        const char *v = lua_tolstring(L, vi++, &vn);
        add_escaped(&b, sg->ctx, v, vn);
      }
    }
  }
  luaL_pushresult(&b);
  return 1;
}

/* template:names() -> array of the placeholder names, each once. */
static int template_names(lua_State *L) {
  template *t = check_template(L, 1);
  int i, n = 0;
  lua_createtable(L, t->nvars, 0);
  lua_newtable(L); /* seen */
  for (i = 0; i < t->nsegs; i++) {
    const segment *sg = &t->segs[i];
    if (!sg->is_var) continue;
    lua_pushlstring(L, t->text + sg->off, sg->len);
    lua_pushvalue(L, -1);
    lua_rawget(L, -3);
    if (lua_toboolean(L, -1)) {
      lua_pop(L, 2);
      continue;
    }
    lua_pop(L, 1);
    lua_pushvalue(L, -1);
    lua_rawseti(L, -4, ++n);
    lua_pushboolean(L, 1);
    lua_rawset(L, -3);
  }
  lua_pop(L, 1);
  return 1;
}

/* template:contexts() -> { name = "path" | "query" | ... } (last one wins) */
static int template_contexts(lua_State *L) {
  template *t = check_template(L, 1);
  int i;
  lua_newtable(L);
  for (i = 0; i < t->nsegs; i++) {
    const segment *sg = &t->segs[i];
    if (!sg->is_var) continue;
    lua_pushlstring(L, t->text + sg->off, sg->len);
    lua_pushstring(L, ctx_names[sg->ctx]);
    lua_rawset(L, -3);
  }
  return 1;
}

static int template_tostring(lua_State *L) {
  template *t = check_template(L, 1);
  lua_pushfstring(L, "connkit.template (%d placeholders)", t->nvars);
  return 1;
}

/* core.escape(value, context) -> the value percent-encoded for context. */
static int core_escape(lua_State *L) {
  static const char *const names[] = {"path", "query", "form", NULL};
  static const int ctxs[] = {CTX_PATH, CTX_QUERY, CTX_FORM};
  size_t n;
  const char *v = luaL_checklstring(L, 1, &n);
  int c = luaL_checkoption(L, 2, "query", names);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  add_escaped(&b, ctxs[c], v, n);
  luaL_pushresult(&b);
  return 1;
}

/* core.header_safe(value) -> true when value holds no CR, LF or NUL. */
static int core_header_safe(lua_State *L) {
  size_t n;
  const char *v = luaL_checklstring(L, 1, &n);
  lua_pushboolean(L, value_fits(CTX_HEADER, v, n));
  return 1;
}

void template_open(lua_State *L) {
  static const luaL_Reg methods[] = {{"render", template_render},
                                     {"names", template_names},
                                     {"contexts", template_contexts},
                                     {NULL, NULL}};
  static const luaL_Reg meta[] = {{"__tostring", template_tostring},
                                  {NULL, NULL}};
  static const luaL_Reg funcs[] = {{"template", template_new},
                                   {"escape", core_escape},
                                   {"header_safe", core_header_safe},
                                   {"format_number", core_format_number},
                                   {NULL, NULL}};
  compat_newclass(L, TEMPLATE_MT, methods, meta);
  luaL_setfuncs(L, funcs, 0);
}
