/* tests/unit/unit_util.c — what several unit tests need alike (unit_util.h). */
#include "tests/unit/unit_util.h"

#include <stdio.h>
#include <unistd.h>

void tu_remove_db(const char *path)
{
    static const char *const sfx[] = { "", "-wal", "-shm", "-journal" };
    char p[4096];
    for (size_t i = 0; i < sizeof sfx / sizeof sfx[0]; i++) {
        snprintf(p, sizeof p, "%s%s", path, sfx[i]);
        unlink(p);
    }
}

void tu_remove_db_dir(const char *path, const char *dir)
{
    tu_remove_db(path);
    rmdir(dir);
}
