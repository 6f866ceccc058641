/* store/policy_store_pg.c — the policy store on PostgreSQL (libpq): the
 * connection (a URL or key=value string, the password from the caller or
 * libpq's own places, never in a message), the migrations (the same
 * numbers as SQLite's, kept in cpmgate_schema), reconnecting, and the
 * LISTEN connection whose notifications say that the policy changed
 * (the migration's triggers NOTIFY cpmgate_policy on every change). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "common/cg_error.h"
#include "common/cg_util.h"
#include "store/policy_backend.h"
#include "store/policy_schema.h"
#include "store/policy_store_impl.h"

_Static_assert(CG_ARRAY_LEN(cg_policy_migrations_pg) == CG_ARRAY_LEN(cg_policy_migrations),
               "every migration has its PostgreSQL text");

#define NMIGRATIONS CG_ARRAY_LEN(cg_policy_migrations)

struct cg_pslisten {
    cg_pstore *store;
    PGconn *conn;
};

/* ---- names without passwords ------------------------------------------------ */

/* Copies in[0..n) to out, bounded by cap. */
static void put(char *out, size_t cap, size_t *at, const char *in, size_t n)
{
    while (n-- && *at + 1 < cap)
        out[(*at)++] = *in++;
    out[*at < cap ? *at : cap - 1] = '\0';
}

/* The length of a password value starting at v: up to '&' in a URL's
 * query; a quoted or bare word in a key=value string. */
static size_t value_len(const char *v, bool url)
{
    if (url)
        return strcspn(v, "&");
    if (*v == '\'') {
        size_t i = 1;
        while (v[i] && v[i] != '\'')
            i += v[i] == '\\' && v[i + 1] ? 2 : 1;
        return v[i] ? i + 1 : i;
    }
    return strcspn(v, " \t\n");
}

void cg_pstore_redact(const char *in, char *out, size_t cap)
{
    size_t at = 0;
    out[0] = '\0';
    bool url = strstr(in, "://") != NULL;
    const char *p = in;
    if (url) {
        /* postgresql://user:PASSWORD@host */
        const char *auth = strstr(in, "://") + 3;
        size_t hostpart = strcspn(auth, "/?");
        const char *at_sign = NULL;
        for (const char *q = auth; q < auth + hostpart; q++)
            if (*q == '@')
                at_sign = q;
        const char *colon = at_sign ? memchr(auth, ':', (size_t)(at_sign - auth)) : NULL;
        if (colon) {
            put(out, cap, &at, in, (size_t)(colon + 1 - in));
            put(out, cap, &at, "xxx", 3);
            p = at_sign;
        }
    }
    /* password=... in a query string or a key=value string */
    while (*p) {
        const char *k = strstr(p, "password");
        while (k && !(k[8] == '=' || (!url && (k[8] == ' ' || k[8] == '\t'))))
            k = strstr(k + 1, "password");
        bool starts = k && (k == in || k[-1] == '?' || k[-1] == '&' || k[-1] == ' ' ||
                            k[-1] == '\t');
        if (!k) {
            put(out, cap, &at, p, strlen(p));
            break;
        }
        const char *v = k + 8;
        while (!url && (*v == ' ' || *v == '\t'))
            v++;
        if (*v != '=' || !starts) {
            put(out, cap, &at, p, (size_t)(v - p));
            p = v;
            continue;
        }
        v++;
        while (!url && (*v == ' ' || *v == '\t'))
            v++;
        put(out, cap, &at, p, (size_t)(v - p));
        put(out, cap, &at, "xxx", 3);
        p = v + value_len(v, url);
    }
}

/* ---- the connection ------------------------------------------------------------ */

const char *cg_pspg_error(cg_pstore *s)
{
    char msg[CG_SAY_MAX];
    cg_strlcpy(msg, s->pg ? PQerrorMessage(s->pg) : "no connection", sizeof msg);
    msg[strcspn(msg, "\n")] = '\0';
    if (s->pg && PQstatus(s->pg) != CONNECTION_OK)
        atomic_store(&s->up, false);
    return cg_say("policy database %s: %s", s->label, msg);
}

int cg_pspg_exec(cg_pstore *s, const char *sql, const char **error_r)
{
    PGresult *r = PQexec(s->pg, sql);
    ExecStatusType t = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    int rc = 0;
    if (t != PGRES_COMMAND_OK && t != PGRES_TUPLES_OK) {
        const char *msg = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
        *error_r = msg ? cg_say("policy database %s: %s", s->label, msg) : cg_pspg_error(s);
        const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
        rc = state && (strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0)
                 ? CG_E_BUSY : CG_E_DB;
    }
    PQclear(r);
    return rc;
}

static void quiet(void *arg, const char *message)
{
    (void)arg;
    (void)message; /* "relation already exists, skipping" and the like */
}

void cg_pspg_rollback(cg_pstore *s)
{
    PQclear(PQexec(s->pg, "ROLLBACK"));
}

/* A new connection: conninfo expanded, the password (when given) after
 * it so it wins; libpq's messages without the notice chatter. */
static PGconn *connect_db(const cg_pstore *s, const char **error_r)
{
    /* a connect_timeout of the string's own wins over this default */
    const char *keys[] = { "connect_timeout", "application_name", "dbname", "password", NULL };
    const char *vals[] = { "5", "cpmgate", s->conninfo, s->password, NULL };
    if (!s->password)
        keys[3] = vals[3] = NULL;
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    if (!c) {
        *error_r = "out of memory";
        return NULL;
    }
    if (PQstatus(c) != CONNECTION_OK) {
        char msg[CG_SAY_MAX];
        cg_strlcpy(msg, PQerrorMessage(c), sizeof msg);
        msg[strcspn(msg, "\n")] = '\0';
        *error_r = cg_say("policy database %s: %s", s->label, msg);
        PQfinish(c);
        return NULL;
    }
    PQsetNoticeProcessor(c, quiet, NULL);
    return c;
}

/* The schema version (0: none) inside the migration's transaction. */
static int schema_version(cg_pstore *s, int64_t *v, const char **error_r)
{
    bool found = false;
    *v = 0;
    int rc = cg_ps_one_int(s, cg_ps_prep(s, error_r,
                                         "SELECT version FROM cpmgate_schema", ""),
                           v, &found, error_r);
    return rc;
}

static int migrate(cg_pstore *s, const char **error_r)
{
    /* one migrator at a time, however many cpmgatectl init run at once */
    int rc = cg_pspg_exec(s, "BEGIN; SELECT pg_advisory_xact_lock(" CG_PSPG_EDIT_LOCK "); "
                             "CREATE TABLE IF NOT EXISTS cpmgate_schema (version INTEGER NOT NULL)",
                          error_r);
    int64_t v = 0;
    if (rc == 0)
        rc = schema_version(s, &v, error_r);
    if (rc == 0 && v > (int64_t)NMIGRATIONS) {
        *error_r = cg_say("policy database %s has policy schema version %lld, this program "
                          "knows %zu", s->label, (long long)v, NMIGRATIONS);
        rc = CG_E_INVAL;
    }
    for (size_t i = (size_t)v; rc == 0 && i < NMIGRATIONS; i++)
        rc = cg_pspg_exec(s, cg_policy_migrations_pg[i], error_r);
    if (rc == 0 && v < (int64_t)NMIGRATIONS)
        rc = cg_ps_done(s, cg_ps_prep(s, error_r, v == 0
                                          ? "INSERT INTO cpmgate_schema (version) VALUES (?1)"
                                          : "UPDATE cpmgate_schema SET version = ?1",
                                      "i", (int64_t)NMIGRATIONS),
                        NULL, error_r);
    return cg_ps_read_end(s, rc, error_r);
}

/* The gateway must not start on a database cpmgatectl never set up. */
static int check_version(cg_pstore *s, const char **error_r)
{
    PGresult *r = PQexec(s->pg, "SELECT version FROM cpmgate_schema");
    int64_t v = 0;
    int rc = 0;
    if (r && PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
        v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    else if (!r || PQstatus(s->pg) != CONNECTION_OK)
        rc = CG_E_DB;
    PQclear(r);
    if (rc < 0) {
        *error_r = cg_pspg_error(s);
        return rc;
    }
    if (v != (int64_t)NMIGRATIONS) {
        *error_r = v == 0 ? cg_say("%s is not an initialised policy database (cpmgatectl init)",
                                   s->label)
                          : cg_say("%s has policy schema version %lld, this program needs %zu",
                                   s->label, (long long)v, NMIGRATIONS);
        return CG_E_INVAL;
    }
    return 0;
}

int cg_pspg_open(cg_pstore *s, const char *conninfo, const char *password, int flags,
                 const char **error_r)
{
    char label[512];
    cg_pstore_redact(conninfo, label, sizeof label);
    s->label = strdup(label);
    s->conninfo = strdup(conninfo);
    s->password = password ? strdup(password) : NULL;
    if (!s->label || !s->conninfo || (password && !s->password)) {
        *error_r = "out of memory";
        return CG_E_NOMEM;
    }
    s->pg = connect_db(s, error_r);
    if (!s->pg)
        return CG_E_DB;
    /* the store's text is UTF-8 whatever the server's locale */
    int rc = PQsetClientEncoding(s->pg, "UTF8") == 0 ? 0 : CG_E_DB;
    if (rc < 0)
        *error_r = cg_pspg_error(s);
    if (rc == 0)
        rc = s->readonly ? check_version(s, error_r) : migrate(s, error_r);
    (void)flags;
    return rc;
}

void cg_pspg_close(cg_pstore *s)
{
    if (s->pg)
        PQfinish(s->pg);
    s->pg = NULL;
    free(s->conninfo);
    if (s->password) {
        explicit_bzero(s->password, strlen(s->password));
        free(s->password);
    }
}

int cg_pstore_reconnect(cg_pstore *s, const char **error_r)
{
    if (!s->pg)
        return 0;
    PGconn *c = connect_db(s, error_r);
    if (!c)
        return CG_E_UNAVAIL;
    PQfinish(s->pg);
    s->pg = c;
    int rc = PQsetClientEncoding(s->pg, "UTF8") == 0 ? check_version(s, error_r) : CG_E_DB;
    if (rc < 0)
        return rc;
    /* whatever was missed while away: the next poll reloads everything */
    atomic_store(&s->changed, true);
    atomic_store(&s->up, true);
    return 0;
}

void cg_pstore_mark_changed(cg_pstore *s)
{
    atomic_store(&s->changed, true);
}

/* ---- LISTEN ------------------------------------------------------------------- */

int cg_pslisten_open(cg_pstore *s, cg_pslisten **out, const char **error_r)
{
    *out = NULL;
    cg_pslisten *l = calloc(1, sizeof *l);
    if (!l) {
        *error_r = "out of memory";
        return CG_E_NOMEM;
    }
    l->store = s;
    l->conn = connect_db(s, error_r);
    PGresult *r = l->conn ? PQexec(l->conn, "LISTEN cpmgate_policy") : NULL;
    bool ok = r && PQresultStatus(r) == PGRES_COMMAND_OK && PQsetnonblocking(l->conn, 1) == 0;
    PQclear(r);
    if (!ok) {
        if (l->conn)
            *error_r = cg_say("policy database %s: LISTEN failed: %s", s->label,
                              PQerrorMessage(l->conn));
        cg_pslisten_close(l);
        return CG_E_DB;
    }
    *out = l;
    return 0;
}

int cg_pslisten_fd(const cg_pslisten *l)
{
    return PQsocket(l->conn);
}

int cg_pslisten_read(cg_pslisten *l, bool *notified, const char **error_r)
{
    *notified = false;
    if (PQconsumeInput(l->conn) != 1 || PQstatus(l->conn) != CONNECTION_OK) {
        char msg[CG_SAY_MAX];
        cg_strlcpy(msg, PQerrorMessage(l->conn), sizeof msg);
        msg[strcspn(msg, "\n")] = '\0';
        *error_r = cg_say("policy database %s: %s", l->store->label,
                          msg[0] ? msg : "connection lost");
        atomic_store(&l->store->up, false);
        return CG_E_DB;
    }
    PGnotify *n;
    while ((n = PQnotifies(l->conn)) != NULL) {
        *notified = true;
        PQfreemem(n);
    }
    if (*notified)
        atomic_store(&l->store->changed, true);
    return 0;
}

void cg_pslisten_close(cg_pslisten *l)
{
    if (!l)
        return;
    if (l->conn)
        PQfinish(l->conn);
    free(l);
}
