/* SPDX-License-Identifier: MIT */
/* Small checks and hashes over names: stream, consumer, lock and read-model names. */
#include "core/core_int.h"

bool sk_name_is_valid(const char *s, size_t max)
{
    size_t n = 0;

    if (s == NULL) {
        return false;
    }
    for (; s[n] != '\0'; n++) {
        char c = s[n];
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '-';
        if (!ok || n >= max) {
            return false;
        }
    }
    return n > 0;
}

uint64_t sk_hash_text(const char *s)
{
    uint64_t h = 14695981039346656037ULL; /* FNV-1a, 64 bits */

    for (; *s != '\0'; s++) {
        h = (h ^ (uint8_t)*s) * 1099511628211ULL;
    }
    return h;
}
