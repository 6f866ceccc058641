/* ctl_cred.h — credential output shared by `cred list` and `principal
 * show`: the id, type, value and creation time, never a key or an HA1. */
#ifndef CG_CTL_CRED_H
#define CG_CTL_CRED_H

#include <json-c/json.h>

#include "store/policy_store.h"

json_object *ctl_json_cred(const cg_pstore_cred *c); /* one JSON object */
void ctl_text_cred(const cg_pstore_cred *c);         /* one tab-separated line */

#endif
