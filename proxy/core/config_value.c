/* proxy/core/config_value.c — one written value by its key's type (string,
 * path, readable file, number in bounds, yes/no, one of a list, auth
 * methods, TLS versions, workers, pin, secret file, header name, duration), into the
 * field the key table names. */
#include "proxy/core/config_internal.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cg_buf.h"
#include "common/cg_error.h"
#include "common/cg_util.h"
#include "store/policy_store.h"

static char *resolve_path(const cg_config *cfg, const char *v)
{
    /* policy_db may name a PostgreSQL database instead of a file */
    if (v[0] == '/' || !cfg->dir[0] || cg_pstore_url(v))
        return cg_config_strdup(v);
    size_t n = strlen(cfg->dir) + 1 + strlen(v) + 1;
    char *out = cg_config_calloc(1, n);
    snprintf(out, n, "%s/%s", cfg->dir, v);
    return out;
}

static int parse_bool(const char *v, bool *out)
{
    static const char *yes[] = { "yes", "true", "on", "1" }, *no[] = { "no", "false", "off", "0" };
    for (size_t i = 0; i < 4; i++) {
        if (strcmp(v, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcmp(v, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return CG_E_INVAL;
}

static int parse_enum(const enum_val *e, const char *v, int *out)
{
    for (; e->name; e++)
        if (strcmp(e->name, v) == 0) {
            *out = e->value;
            return 0;
        }
    return CG_E_INVAL;
}

const char *cg_config_names(const enum_val *e, bool all, unsigned bits, char *out, size_t cap)
{
    cg_buf b;
    cg_buf_init_fixed(&b, out, cap);
    for (; e->name; e++)
        if (all || (bits & (unsigned)e->value))
            cg_buf_fmt(&b, "%s%s", b.len ? ", " : "", e->name);
    return out;
}

static bool valid_header_name(const char *v)
{
    if (!*v)
        return false;
    for (; *v; v++)
        if (!((*v >= 'a' && *v <= 'z') || (*v >= 'A' && *v <= 'Z') || (*v >= '0' && *v <= '9') ||
              *v == '-'))
            return false;
    return true;
}

/* Parses value v of key k into obj; returns an error sentence or NULL. */
const char *cg_config_set_value(parser *p, const key_def *k, void *obj, const char *v,
                                char *why, size_t whylen)
{
    char *field = (char *)obj + k->off;
    uint64_t u;
    switch (k->type) {
    case K_STR:
        if (!*v)
            return "empty value";
        free(*(char **)field);
        *(char **)field = cg_config_strdup(v);
        return NULL;
    case K_PATH:
    case K_RFILE:
        if (!*v)
            return "empty path";
        free(*(char **)field);
        *(char **)field = resolve_path(p->cfg, v);
        if (k->type == K_RFILE && access(*(char **)field, R_OK) != 0) {
            snprintf(why, whylen, "cannot read %s: %s", v, strerror(errno));
            return why;
        }
        return NULL;
    case K_SECRET: {
        char *path = resolve_path(p->cfg, v);
        FILE *f = fopen(path, "r");
        if (!f) {
            snprintf(why, whylen, "cannot read %s: %s", v, strerror(errno));
            free(path);
            return why;
        }
        char buf[1024];
        bool ok = fgets(buf, sizeof buf, f) != NULL;
        fclose(f);
        free(path);
        if (!ok)
            return "secret file is empty";
        buf[strcspn(buf, "\r\n")] = '\0';
        if (!buf[0])
            return "secret file is empty";
        free(*(char **)field);
        *(char **)field = cg_config_strdup(buf);
        return NULL;
    }
    case K_UINT:
    case K_SIZE:
        if (cg_parse_u64(v, k->min, k->max, &u) < 0) {
            snprintf(why, whylen, "expected a whole number from %llu to %llu",
                     (unsigned long long)k->min, (unsigned long long)k->max);
            return why;
        }
        if (k->type == K_UINT)
            *(unsigned *)field = (unsigned)u; /* max bounds it */
        else
            *(size_t *)field = (size_t)u;
        return NULL;
    case K_WORKERS:
        if (strcmp(v, "auto") == 0) {
            long n = sysconf(_SC_NPROCESSORS_ONLN);
            *(unsigned *)field = n > 0 ? (unsigned)(n > 256 ? 256 : n) : 1;
            return NULL;
        }
        if (cg_parse_u64(v, k->min, k->max, &u) < 0)
            return "expected 'auto' or a whole number from 1 to 256";
        *(unsigned *)field = (unsigned)u;
        return NULL;
    case K_DURATION: {
        char num[32];
        size_t n = strlen(v);
        unsigned mul = 1;
        if (n && (v[n - 1] == 's' || v[n - 1] == 'm' || v[n - 1] == 'h')) {
            mul = v[n - 1] == 'h' ? 3600 : v[n - 1] == 'm' ? 60 : 1;
            n--;
        }
        if (n == 0 || n >= sizeof num)
            return "expected a duration: N seconds, or N followed by s, m or h";
        memcpy(num, v, n);
        num[n] = '\0';
        if (cg_parse_u64(num, 0, UINT32_MAX, &u) < 0 || u * mul < k->min || u * mul > k->max) {
            snprintf(why, whylen, "expected a duration from %llu to %llu seconds "
                     "(N, Ns, Nm or Nh)", (unsigned long long)k->min, (unsigned long long)k->max);
            return why;
        }
        *(unsigned *)field = (unsigned)(u * mul);
        return NULL;
    }
    case K_BOOL:
        if (parse_bool(v, (bool *)field) < 0)
            return "expected yes or no";
        return NULL;
    case K_ENUM: {
        int e;
        if (parse_enum(k->enums, v, &e) < 0) {
            char names[128];
            cg_config_names(k->enums, true, 0, names, sizeof names);
            snprintf(why, whylen, "expected one of: %s", names);
            return why;
        }
        if (k->off == offsetof(cg_config, audit_fail_closed) && obj == p->cfg)
            *(bool *)field = e != 0;
        else
            *(int *)field = e;
        return NULL;
    }
    case K_AUTH:
    case K_VERSIONS: {
        char buf[256];
        if (!cg_strlcpy(buf, v, sizeof buf))
            return "value too long";
        unsigned bits = 0;
        bool t12 = false, t13 = false;
        char *save = NULL;
        int n = 0;
        for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
            const char *w = cg_config_trim(tok);
            n++;
            if (k->type == K_VERSIONS) {
                if (strcmp(w, "1.2") == 0)
                    t12 = true;
                else if (strcmp(w, "1.3") == 0)
                    t13 = true;
                else
                    return "expected a list of 1.2, 1.3";
                continue;
            }
            int e;
            if (parse_enum(cg_config_auth_methods, w, &e) < 0) {
                snprintf(why, whylen, "unknown method '%s' (cert, psk, address, login, digest, saml)", w);
                return why;
            }
            if (bits & (unsigned)e) {
                snprintf(why, whylen, "method '%s' listed twice", w);
                return why;
            }
            bits |= (unsigned)e;
        }
        if (n == 0)
            return "empty list";
        if (k->type == K_VERSIONS) {
            cg_listener_cfg *l = obj;
            l->tls12 = t12;
            l->tls13 = t13;
        } else {
            *(unsigned *)field = bits;
        }
        return NULL;
    }
    case K_PIN: {
        cg_upstream_cfg *u2 = obj;
        if (strlen(v) != 64 || cg_hex_decode(v, u2->pin_sha256, 32) != 32)
            return "expected 64 hex digits (SHA-256)";
        u2->has_pin = true;
        return NULL;
    }
    case K_HEADER:
        free(*(char **)field);
        *(char **)field = NULL;
        if (strcmp(v, "none") == 0)
            return NULL;
        if (!valid_header_name(v))
            return "expected a header name or 'none'";
        *(char **)field = cg_config_strdup(v);
        return NULL;
    }
    return "internal: unknown key type";
}
