/* crypto.c - placeholder until this part is written. */
#include "connkit.h"

void crypto_open(lua_State *L) { (void)L; }
