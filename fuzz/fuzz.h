/* SPDX-License-Identifier: MIT */
/*
 * Shared by every fuzz target: the libFuzzer entry point's prototype (the
 * targets are built with -Wmissing-prototypes) and a once-only set-up that
 * routes jansson through sk_malloc and keeps the log quiet. A target must
 * leave no allocation and no error text behind after each input.
 */
#ifndef SK_FUZZ_H
#define SK_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <skald/core.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Abort (a crash the fuzzer records) when a property of the parser does not hold. */
#define SK_FUZZ_CHECK(cond)                                                                        \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            sk_fuzz_fail(#cond, __FILE__, __LINE__);                                               \
        }                                                                                          \
    } while (0)

void sk_fuzz_fail(const char *what, const char *file, int line);
void sk_fuzz_setup(void);

#endif /* SK_FUZZ_H */
