/* SPDX-License-Identifier: MIT */
/*
 * UUIDv7 (RFC 9562): 48-bit Unix milliseconds, version 7, a 12-bit counter
 * in rand_a (method 1 of section 6.2, seeded randomly each new millisecond)
 * and 62 random bits. Ids made in one process are strictly increasing, even
 * within a millisecond or when the wall clock steps back.
 *
 * UUIDv5 (RFC 9562, section 5.5): a name's id within a namespace, from the
 * SHA-1 of the two; for ids that must be derived again rather than stored.
 */
/* Hide OpenSSL's deprecated names: its stack.h would otherwise define sk_free. */
#define OPENSSL_API_COMPAT    30000
#define OPENSSL_NO_DEPRECATED 1
#include <openssl/err.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core_int.h"

static pthread_mutex_t uuid_mu = PTHREAD_MUTEX_INITIALIZER;
/* uuid_mu protects: last_ms, last_counter. */
static int64_t last_ms = -1;
static uint16_t last_counter;

static void random_or_die(void *out, size_t len)
{
    if (sk_random_bytes(out, len) != SK_OK) {
        /* Without the kernel RNG ids could collide; that must not pass silently. */
        sk_assert_fail("getrandom works", __FILE__, __LINE__);
    }
}

/* The canonical lower-case text of the 16 bytes @p b. */
static void uuid_text(const uint8_t b[16], char out[SK_UUID_LEN])
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;

    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10) {
            out[o++] = '-';
        }
        out[o++] = hex[b[i] >> 4];
        out[o++] = hex[b[i] & 0x0F];
    }
    out[o] = '\0';
}

void sk_uuid7(char out[SK_UUID_LEN])
{
    uint8_t b[16];
    uint8_t rnd[10];
    int64_t ms;
    uint16_t counter;

    if (out == NULL) {
        return;
    }
    random_or_die(rnd, sizeof(rnd));
    ms = sk_time_now_ms();
    if (ms < 0) {
        ms = 0;
    }
    if (pthread_mutex_lock(&uuid_mu) != 0) {
        abort();
    }
    if (ms > last_ms) {
        /* New millisecond: a random counter start with the top bit clear leaves room. */
        counter = (uint16_t)(((rnd[0] << 8) | rnd[1]) & 0x07FF);
    } else {
        ms = last_ms;
        counter = (uint16_t)(last_counter + 1);
        if (counter > 0x0FFF) {
            ms++; /* counter exhausted: borrow the next millisecond (RFC 9562 6.2) */
            counter = (uint16_t)(((rnd[0] << 8) | rnd[1]) & 0x07FF);
        }
    }
    last_ms = ms;
    last_counter = counter;
    if (pthread_mutex_unlock(&uuid_mu) != 0) {
        abort();
    }

    for (int i = 0; i < 6; i++) {
        b[i] = (uint8_t)((uint64_t)ms >> (40 - 8 * i));
    }
    b[6] = (uint8_t)(0x70 | ((counter >> 8) & 0x0F));
    b[7] = (uint8_t)(counter & 0xFF);
    b[8] = (uint8_t)(0x80 | (rnd[2] & 0x3F));
    memcpy(b + 9, rnd + 3, 7);

    uuid_text(b, out);
}

static bool is_hex(uint8_t c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

bool sk_uuid_is_valid(sk_slice s)
{
    if (s.ptr == NULL || s.len != SK_UUID_LEN - 1) {
        return false;
    }
    for (size_t i = 0; i < s.len; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s.ptr[i] != '-') {
                return false;
            }
        } else if (!is_hex(s.ptr[i])) {
            return false;
        }
    }
    return true;
}

sk_status sk_uuid5(const char *namespace_uuid, sk_slice name, char out[SK_UUID_LEN])
{
    uint8_t ns[16];
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int digest_len = 0;
    EVP_MD_CTX *md = NULL;
    bool is_done = false;

    if (out != NULL) {
        out[0] = '\0';
    }
    if (out == NULL || namespace_uuid == NULL || (name.ptr == NULL && name.len > 0)) {
        return SK_FAIL(SK_EINVAL, "sk_uuid5: namespace, name and out must not be NULL");
    }
    if (!sk_uuid_is_valid(sk_slice_from_str(namespace_uuid))) {
        return SK_FAIL(SK_EINVAL, "sk_uuid5: namespace \"%.40s\" is not a UUID", namespace_uuid);
    }
    for (size_t i = 0, o = 0; o < sizeof(ns); i += 2) {
        if (namespace_uuid[i] == '-') {
            i++;
        }
        ns[o++] =
            (uint8_t)(sk_hex_value(namespace_uuid[i]) << 4 | sk_hex_value(namespace_uuid[i + 1]));
    }
    md = EVP_MD_CTX_new();
    if (md == NULL) {
        ERR_clear_error();
        return SK_FAIL(SK_ENOMEM, "sk_uuid5: EVP_MD_CTX_new");
    }
    is_done = EVP_DigestInit_ex(md, EVP_sha1(), NULL) == 1 &&
              EVP_DigestUpdate(md, ns, sizeof(ns)) == 1 &&
              (name.len == 0 || EVP_DigestUpdate(md, name.ptr, name.len) == 1) &&
              EVP_DigestFinal_ex(md, digest, &digest_len) == 1 && digest_len >= 16;
    EVP_MD_CTX_free(md);
    if (!is_done) {
        ERR_clear_error(); /* a later SSL_get_error on this thread must not see it */
        return SK_FAIL(SK_EINTERNAL, "sk_uuid5: SHA-1 failed (OpenSSL)");
    }
    digest[6] = (unsigned char)(0x50 | (digest[6] & 0x0F)); /* version 5 */
    digest[8] = (unsigned char)(0x80 | (digest[8] & 0x3F)); /* variant 10xx */
    uuid_text(digest, out);
    return SK_OK;
}
