/* SPDX-License-Identifier: MIT */
/*
 * Cryptographically secure random bytes from the kernel (getrandom(2)).
 */
#include <errno.h>
#include <string.h>
#include <sys/random.h>

#include "core/core_int.h"

sk_status sk_random_bytes(void *out, size_t len)
{
    uint8_t *p = out;
    size_t done = 0;

    if (out == NULL && len > 0) {
        return SK_FAIL(SK_EINVAL, "sk_random_bytes: out must not be NULL when len > 0");
    }
    while (done < len) {
        ssize_t n = getrandom(p + done, len - done, 0);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return SK_FAIL(SK_EIO, "getrandom: %s", strerror(errno));
        }
        done += (size_t)n;
    }
    return SK_OK;
}
