/* lock.c - placeholder until this part is written. */
#include "connkit.h"

void lock_open(lua_State *L) { (void)L; }
