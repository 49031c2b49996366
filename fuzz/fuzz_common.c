/* SPDX-License-Identifier: MIT */
/*
 * Helpers linked into every fuzz target and replay driver: process set-up
 * done once, and the report printed when a checked property fails.
 */
#include <stdio.h>

#include "fuzz.h"

void sk_fuzz_fail(const char *what, const char *file, int line)
{
    fprintf(stderr, "fuzz: property failed at %s:%d: %s (last error: %s)\n", file, line, what,
            sk_error_message());
    abort();
}

void sk_fuzz_setup(void)
{
    static int is_done;

    if (is_done) {
        return;
    }
    is_done = 1;
    if (sk_init("fuzz") != SK_OK) {
        sk_fuzz_fail("sk_init", __FILE__, __LINE__);
    }
    /* Parsers do not log, but a warning per input would drown the fuzzer's output. */
    sk_log_set_level(SK_LOG_LEVEL_ERROR);
}
