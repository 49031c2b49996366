/* SPDX-License-Identifier: MIT */
/*
 * Strict UTF-8 decoding (RFC 3629): no overlong forms, no surrogates, nothing
 * above U+10FFFF. Used to validate external text and to count characters.
 */
#include "core/core_int.h"

size_t sk__utf8_decode(const uint8_t *p, size_t len, uint32_t *cp)
{
    uint32_t c, min;
    size_t n;

    if (p == NULL || len == 0) {
        return 0;
    }
    c = p[0];
    if (c < 0x80) {
        n = 1;
        min = 0;
    } else if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
        c &= 0x1F;
        min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        c &= 0x0F;
        min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        c &= 0x07;
        min = 0x10000;
    } else {
        return 0;
    }
    if (n > len) {
        return 0;
    }
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80) {
            return 0;
        }
        c = (c << 6) | (p[i] & 0x3Fu);
    }
    if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) {
        return 0;
    }
    if (cp != NULL) {
        *cp = c;
    }
    return n;
}

bool sk__utf8_is_valid(sk_slice s, size_t *bad_offset)
{
    size_t i = 0;

    while (i < s.len) {
        size_t n;
        if (s.ptr[i] < 0x80) {
            i++;
            continue;
        }
        n = sk__utf8_decode(s.ptr + i, s.len - i, NULL);
        if (n == 0) {
            if (bad_offset != NULL) {
                *bad_offset = i;
            }
            return false;
        }
        i += n;
    }
    return true;
}
