/* policy_rules.c — ACL rule edits: add (subject checked), remove, list. */
#include "store/policy_rules.h"

#include <stdio.h>
#include <string.h>

#include "common/cg_error.h"
#include "common/cg_util.h"
#include "store/db.h"

static const char *say(const char *what, const char *name)
{
    static _Thread_local char buf[300];
    snprintf(buf, sizeof buf, "%s '%.200s'", what, name);
    return buf;
}

static sqlite3 *H(cg_pstore *s)
{
    return cg_db_handle(cg_pstore_db(s));
}

static int exists(cg_pstore *s, const char *sql, const char *arg, bool *found, const char **error_r)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(H(s), sql, -1, &st, NULL) != SQLITE_OK) {
        *error_r = cg_db_errmsg(cg_pstore_db(s));
        return CG_E_DB;
    }
    sqlite3_bind_text(st, 1, arg, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    *found = rc == SQLITE_ROW;
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        *error_r = cg_db_errmsg(cg_pstore_db(s));
        return CG_E_DB;
    }
    return 0;
}

static bool text_ok(const char *t)
{
    for (const unsigned char *p = (const unsigned char *)t; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            return false;
    return true;
}

int cg_pstore_rule_add(cg_pstore *s, bool deny, const char *subject, const char *service,
                       const char *pattern, unsigned rights, const char *comment,
                       int64_t *id_out, const char **error_r)
{
    const char *dummy;
    if (!error_r)
        error_r = &dummy;
    if (strcmp(service, "imap") != 0 && strcmp(service, "http") != 0 && strcmp(service, "*") != 0) {
        *error_r = say("unknown service (imap, http or *):", service);
        return CG_E_INVAL;
    }
    if (rights == 0 || rights >= 32) {
        *error_r = "invalid rights";
        return CG_E_INVAL;
    }
    if (!*pattern || !text_ok(pattern) || (comment && !text_ok(comment))) {
        *error_r = "pattern and comment must be non-empty text without control characters";
        return CG_E_INVAL;
    }
    int rc = cg_pstore_begin(s, error_r);
    if (rc < 0)
        return rc;
    bool found = true;
    if (strcmp(subject, "*") != 0) {
        if (subject[0] == '@') {
            rc = exists(s, "SELECT 1 FROM grp WHERE name = ?1", subject + 1, &found, error_r);
            if (rc == 0 && !found)
                *error_r = say("unknown group", subject + 1);
        } else {
            rc = exists(s, "SELECT 1 FROM principal WHERE name = ?1", subject, &found, error_r);
            if (rc == 0 && !found)
                *error_r = say("unknown principal", subject);
        }
    }
    if (rc == 0 && !found)
        rc = CG_E_NOTFOUND;
    char t[CG_TIME_LEN];
    cg_time_rfc3339(cg_time_now_usec(), t);
    if (rc == 0) {
        sqlite3_stmt *st;
        if (sqlite3_prepare_v2(H(s),
                               "INSERT INTO acl_rule (effect, subject, service, pattern, rights, "
                               "comment, created) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                               -1, &st, NULL) != SQLITE_OK) {
            rc = CG_E_DB;
        } else {
            sqlite3_bind_text(st, 1, deny ? "deny" : "allow", -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 2, subject, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 3, service, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 4, pattern, -1, SQLITE_STATIC);
            sqlite3_bind_int(st, 5, (int)rights);
            if (comment)
                sqlite3_bind_text(st, 6, comment, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 7, t, -1, SQLITE_STATIC);
            rc = sqlite3_step(st) == SQLITE_DONE ? 0 : CG_E_DB;
            sqlite3_finalize(st);
        }
        if (rc < 0)
            *error_r = cg_db_errmsg(cg_pstore_db(s));
    }
    int64_t id = sqlite3_last_insert_rowid(H(s));
    if (rc == 0) {
        char detail[1400];
        snprintf(detail, sizeof detail, "id=%lld %s %s %s %.1000s rights=%u", (long long)id,
                 deny ? "deny" : "allow", subject, service, pattern, rights);
        rc = cg_pstore_log_change(s, "acl add", detail, error_r);
    }
    if (rc == 0)
        rc = cg_pstore_commit(s, error_r);
    if (rc < 0) {
        cg_pstore_rollback(s);
        return rc;
    }
    if (id_out)
        *id_out = id;
    return 0;
}

int cg_pstore_rule_remove(cg_pstore *s, int64_t id, const char **error_r)
{
    const char *dummy;
    if (!error_r)
        error_r = &dummy;
    int rc = cg_pstore_begin(s, error_r);
    if (rc < 0)
        return rc;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(H(s), "DELETE FROM acl_rule WHERE id = ?1", -1, &st, NULL) != SQLITE_OK) {
        *error_r = cg_db_errmsg(cg_pstore_db(s));
        cg_pstore_rollback(s);
        return CG_E_DB;
    }
    sqlite3_bind_int64(st, 1, id);
    rc = sqlite3_step(st) == SQLITE_DONE ? 0 : CG_E_DB;
    sqlite3_finalize(st);
    if (rc < 0)
        *error_r = cg_db_errmsg(cg_pstore_db(s));
    else if (sqlite3_changes(H(s)) == 0) {
        static _Thread_local char buf[64];
        snprintf(buf, sizeof buf, "no rule %lld", (long long)id);
        *error_r = buf;
        rc = CG_E_NOTFOUND;
    }
    if (rc == 0) {
        char detail[64];
        snprintf(detail, sizeof detail, "id=%lld", (long long)id);
        rc = cg_pstore_log_change(s, "acl remove", detail, error_r);
    }
    if (rc == 0)
        rc = cg_pstore_commit(s, error_r);
    if (rc < 0)
        cg_pstore_rollback(s);
    return rc;
}

int cg_pstore_rule_list(cg_pstore *s, const char *subject, const char *service,
                        cg_pstore_rule_cb cb, void *ctx, const char **error_r)
{
    const char *dummy;
    if (!error_r)
        error_r = &dummy;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(H(s),
                           "SELECT id, effect, subject, service, pattern, rights, comment, created "
                           "FROM acl_rule WHERE (?1 IS NULL OR subject = ?1) AND "
                           "(?2 IS NULL OR service = ?2) ORDER BY id",
                           -1, &st, NULL) != SQLITE_OK) {
        *error_r = cg_db_errmsg(cg_pstore_db(s));
        return CG_E_DB;
    }
    if (subject)
        sqlite3_bind_text(st, 1, subject, -1, SQLITE_STATIC);
    if (service)
        sqlite3_bind_text(st, 2, service, -1, SQLITE_STATIC);
    int rc = 0, step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        cg_pstore_rule r = {
            .id = sqlite3_column_int64(st, 0),
            .deny = strcmp((const char *)sqlite3_column_text(st, 1), "deny") == 0,
            .subject = (const char *)sqlite3_column_text(st, 2),
            .service = (const char *)sqlite3_column_text(st, 3),
            .pattern = (const char *)sqlite3_column_text(st, 4),
            .rights = (unsigned)sqlite3_column_int(st, 5),
            .comment = (const char *)sqlite3_column_text(st, 6),
            .created = (const char *)sqlite3_column_text(st, 7),
        };
        rc = cb(ctx, &r);
        if (rc != 0)
            break;
    }
    if (rc == 0 && step != SQLITE_DONE) {
        *error_r = cg_db_errmsg(cg_pstore_db(s));
        rc = CG_E_DB;
    }
    sqlite3_finalize(st);
    return rc;
}
