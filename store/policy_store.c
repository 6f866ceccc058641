/* policy_store.c — placeholder until its module lands. */
#include "policy_store.h"
#include "cg_error.h"
int cg_pstore_open(const char *path, int flags, cg_pstore **out, const char **error_r)
{ *error_r = "policy store not available yet"; return CG_E_UNAVAIL; }
void cg_pstore_close(cg_pstore *s) {}
