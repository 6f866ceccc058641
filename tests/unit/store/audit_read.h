/* tests/unit/store/audit_read.h — the records of an audit database as the
 * tests read them: every canon in seq order, whether stored as rows or in
 * blocks (store/audit_rows.h). Failures end the test (cmocka). */
#ifndef TESTS_AUDIT_READ_H
#define TESTS_AUDIT_READ_H

#include <stddef.h>

/* Every record's canon in seq order (NULL for one that cannot be read),
 * malloc'd; returns how many. */
size_t canons(const char *db, char ***out);
void canons_free(char **v, size_t n);

#endif
