/* content_store.c — placeholder until its module lands. */
typedef int cg_placeholder_content_store;
