/* SPDX-License-Identifier: MIT */
/* Hex digits, for the parsers that decode escapes (JSON \u, URL %XX). */
#include "core/core_int.h"

int sk_hex_value(int c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}
