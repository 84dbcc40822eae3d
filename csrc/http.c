/* http.c - placeholder until this part is written. */
#include "connkit.h"

void http_open(lua_State *L) { (void)L; }
