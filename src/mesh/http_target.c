/* SPDX-License-Identifier: MIT */
/*
 * Request-target checks of the HTTP server, run before any handler: the raw
 * target (still percent-encoded) must not hide a NUL or a path separator in
 * an escape, and the decoded path must be valid UTF-8 without control
 * characters or dot segments. Nothing is served from disk, so these are not
 * what keeps files safe; they keep every route's view of a path unambiguous
 * (one spelling per resource) and keep bytes that break logs, JSON or C
 * strings out of the handlers.
 */
#include "mesh/mesh_int.h"

#include <stdio.h>
#include <string.h>

bool sk__mesh_utf8_is_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;

    while (i < len) {
        unsigned char c = p[i];
        size_t n;
        uint32_t cp;
        uint32_t min;

        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf) {
            n = 1;
            cp = c & 0x1fu;
            min = 0x80;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 2;
            cp = c & 0x0fu;
            min = 0x800;
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 3;
            cp = c & 0x07u;
            min = 0x10000;
        } else {
            return false; /* continuation byte, 0xc0/0xc1 (overlong) or over U+10FFFF */
        }
        if (len - i <= n) {
            return false;
        }
        for (size_t k = 1; k <= n; k++) {
            if ((p[i + k] & 0xc0u) != 0x80u) {
                return false;
            }
            cp = (cp << 6) | (p[i + k] & 0x3fu);
        }
        if (cp < min || cp > 0x10ffffu || (cp >= 0xd800u && cp <= 0xdfffu)) {
            return false;
        }
        i += n + 1;
    }
    return true;
}

bool sk__http_target_raw_check(const char *raw, char *reason, size_t reason_len)
{
    bool is_query = false;

    if (raw == NULL) {
        snprintf(reason, reason_len, "request target missing");
        return false;
    }
    for (const char *p = raw; *p != '\0'; p++) {
        if (*p == '?') {
            is_query = true;
            continue;
        }
        if (*p != '%' || sk_hex_value((unsigned char)p[1]) < 0 ||
            sk_hex_value((unsigned char)p[2]) < 0) {
            continue;
        }
        int byte = sk_hex_value((unsigned char)p[1]) * 16 + sk_hex_value((unsigned char)p[2]);
        if (byte == 0) {
            snprintf(reason, reason_len, "%s: encoded NUL byte (%%00) at offset %zu",
                     is_query ? "query" : "path", (size_t)(p - raw));
            return false;
        }
        if (!is_query && (byte == '/' || byte == '\\')) {
            snprintf(reason, reason_len,
                     "path: encoded '%c' (%%%c%c) at offset %zu; a path segment cannot contain it",
                     byte, p[1], p[2], (size_t)(p - raw));
            return false;
        }
        p += 2;
    }
    return true;
}

bool sk__http_path_check(const char *path, char *reason, size_t reason_len)
{
    size_t len;

    if (path == NULL || path[0] != '/') {
        snprintf(reason, reason_len, "path: must start with '/'");
        return false;
    }
    len = strlen(path);
    if (!sk__mesh_utf8_is_valid(path, len)) {
        snprintf(reason, reason_len, "path: not valid UTF-8 (overlong or malformed sequence)");
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)path[i];
        if (c < 0x20 || c == 0x7f) {
            snprintf(reason, reason_len, "path: control character 0x%02x at offset %zu", c, i);
            return false;
        }
    }
    /* Segments "." and "..", whether sent plainly or as %2e (the path is decoded here). */
    for (const char *seg = path + 1;; seg++) {
        const char *end = strchr(seg, '/');
        size_t n = end != NULL ? (size_t)(end - seg) : strlen(seg);
        if ((n == 1 && seg[0] == '.') || (n == 2 && seg[0] == '.' && seg[1] == '.')) {
            snprintf(reason, reason_len, "path: '%.*s' segment not allowed", (int)n, seg);
            return false;
        }
        if (end == NULL) {
            break;
        }
        seg = end;
    }
    return true;
}
