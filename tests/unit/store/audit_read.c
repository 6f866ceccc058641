/* tests/unit/store/audit_read.c — see audit_read.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "store/audit_rows.h"
#include "tests/unit/store/audit_read.h"

size_t canons(const char *db, char ***out)
{
    sqlite3 *h;
    assert_int_equal(sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    cg_arows *it;
    assert_int_equal(cg_arows_open(h, 1, NULL, NULL, &it), 0);
    size_t n = 0, cap = 0;
    char **v = NULL;
    cg_arow row;
    int rc;
    while ((rc = cg_arows_next(it, &row)) == 1) {
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            v = realloc(v, cap * sizeof *v);
            assert_non_null(v);
        }
        v[n] = row.canon ? strdup(row.canon) : NULL;
        n++;
    }
    assert_int_equal(rc, 0);
    cg_arows_close(it);
    sqlite3_close(h);
    *out = v;
    return n;
}

void canons_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

