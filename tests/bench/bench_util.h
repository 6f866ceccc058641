/* tests/bench/bench_util.h — what the C benchmarks share: a monotonic
 * clock in seconds, and stopping with the program's name and the error's
 * sentence when a step fails. */
#ifndef CG_BENCH_UTIL_H
#define CG_BENCH_UTIL_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static inline double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static inline void check(int rc, const char *what, const char *err)
{
    if (rc < 0) {
        fprintf(stderr, "%s: %s: %s\n", program_invocation_short_name, what,
                err ? err : "error");
        exit(1);
    }
}

#endif
