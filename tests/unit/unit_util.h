/* tests/unit/unit_util.h — what several unit tests need alike. */
#ifndef CG_UNIT_UTIL_H
#define CG_UNIT_UTIL_H

/* Removes a SQLite database and the files SQLite keeps beside it
 * (-wal, -shm, -journal); missing ones are no error. */
void tu_remove_db(const char *path);
/* The same, then its (emptied) temporary directory. */
void tu_remove_db_dir(const char *path, const char *dir);

#endif
