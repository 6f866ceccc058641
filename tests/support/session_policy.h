/* tests/support/session_policy.h — the policy every scripted session runs
 * under (session_policy.c). */
#ifndef CG_SESSION_POLICY_H
#define CG_SESSION_POLICY_H

/* Creates the SQLite policy at path and publishes its snapshot; aborts
 * when any step fails. The policy both session targets' checkers model
 * (keep them in step). */
void sd_make_policy(const char *path);
/* Aborts the setup, naming what failed, when rc < 0. */
void sd_must(int rc, const char *what, const char *why);

#endif
