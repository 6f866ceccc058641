/* policy_rules.c — placeholder until its module lands. */
typedef int cg_placeholder_policy_rules;
