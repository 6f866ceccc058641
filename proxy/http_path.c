/* http_path.c — placeholder until its module lands. */
typedef int cg_placeholder_http_path;
