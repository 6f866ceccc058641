/* imap_scan.c — placeholder until its module lands. */
typedef int cg_placeholder_imap_scan;
