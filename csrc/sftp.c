/* sftp.c - placeholder until this part is written. */
#include "connkit.h"

void sftp_open(lua_State *L) { (void)L; }
