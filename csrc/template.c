/* template.c - placeholder until this part is written. */
#include "connkit.h"

void template_open(lua_State *L) { (void)L; }
