/* http_parse.c — placeholder until its module lands. */
typedef int cg_placeholder_http_parse;
