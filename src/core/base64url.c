/* SPDX-License-Identifier: MIT */
/*
 * Unpadded base64url (RFC 4648 section 5). The decoder is strict: no padding,
 * no whitespace, and the unused low bits of the last character must be zero,
 * so every byte string has exactly one accepted encoding.
 */
#include "core/core_int.h"

static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

size_t sk_base64url_encode(const void *data, size_t len, char *out)
{
    const uint8_t *p = data;
    size_t o = 0;
    size_t i = 0;

    if (out == NULL) {
        return 0;
    }
    if (p == NULL) {
        len = 0;
    }
    for (; i + 3 <= len; i += 3) {
        uint32_t v = ((uint32_t)p[i] << 16) | ((uint32_t)p[i + 1] << 8) | p[i + 2];
        out[o++] = alphabet[(v >> 18) & 63];
        out[o++] = alphabet[(v >> 12) & 63];
        out[o++] = alphabet[(v >> 6) & 63];
        out[o++] = alphabet[v & 63];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)p[i] << 16;
        out[o++] = alphabet[(v >> 18) & 63];
        out[o++] = alphabet[(v >> 12) & 63];
    } else if (len - i == 2) {
        uint32_t v = ((uint32_t)p[i] << 16) | ((uint32_t)p[i + 1] << 8);
        out[o++] = alphabet[(v >> 18) & 63];
        out[o++] = alphabet[(v >> 12) & 63];
        out[o++] = alphabet[(v >> 6) & 63];
    }
    out[o] = '\0';
    return o;
}

static int decode_char(uint8_t c)
{
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }
    if (c >= 'a' && c <= 'z') {
        return c - 'a' + 26;
    }
    if (c >= '0' && c <= '9') {
        return c - '0' + 52;
    }
    if (c == '-') {
        return 62;
    }
    if (c == '_') {
        return 63;
    }
    return -1;
}

sk_status sk_base64url_decode(sk_slice text, uint8_t *out, size_t *out_len)
{
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0;

    if (out_len == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_base64url_decode: out_len must not be NULL");
    }
    *out_len = 0;
    if (out == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_base64url_decode: out must not be NULL");
    }
    if (text.ptr == NULL && text.len > 0) {
        return SK_FAIL(SK_EINVAL, "sk_base64url_decode: text.ptr must not be NULL");
    }
    if (text.len % 4 == 1) {
        return SK_FAIL(SK_EPROTO, "base64url: length %zu is not a valid encoded length",
                       text.len);
    }
    for (size_t i = 0; i < text.len; i++) {
        int v = decode_char(text.ptr[i]);
        if (v < 0) {
            return SK_FAIL(SK_EPROTO, "base64url: offset %zu: invalid character 0x%02x", i,
                           text.ptr[i]);
        }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (uint8_t)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    if (acc != 0) {
        return SK_FAIL(SK_EPROTO, "base64url: non-zero trailing bits (not canonical)");
    }
    out[o] = 0;
    *out_len = o;
    return SK_OK;
}
