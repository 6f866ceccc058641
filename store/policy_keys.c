/* policy_keys.c — placeholder until its module lands. */
typedef int cg_placeholder_policy_keys;
