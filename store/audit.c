/* audit.c — placeholder until its module lands. */
typedef int cg_placeholder_audit;
