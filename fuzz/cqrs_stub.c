/* SPDX-License-Identifier: MIT */
/*
 * Stand-in for src/cqrs/bus.c's sk__cqrs_pthread_check (same behaviour:
 * abort on a failed pthread call), so that the consistency-token codec of
 * src/cqrs/consistency.c links into the fuzz targets without the command bus.
 */
#include <stdio.h>
#include <string.h>

#include "cqrs/cqrs_int.h"

void sk__cqrs_pthread_check(int rc, const char *what)
{
    if (rc != 0) {
        fprintf(stderr, "%s failed: %s\n", what, strerror(rc));
        abort();
    }
}
