/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: the small text decoders that see untrusted bytes: UTF-8
 * validation (checked against jansson's own validator), base64url, the
 * X-Consistency-Token header (sk_ctoken_decode), UUIDs and traceparent
 * headers, the Retry-After header of an upstream answer and Istio durations.
 * Properties: every decoder is the exact inverse of its encoder on what it
 * accepts.
 */
#include <string.h>

#include <skald/cqrs.h>
#include <skald/obs.h>

#include "core/core_int.h"
#include "cqrs/cqrs_int.h"
#include "fuzz.h"
#include "mesh/mesh_int.h"

static void fuzz_utf8(sk_slice in)
{
    size_t bad = 0;
    size_t pos = 0;
    bool is_valid = sk__utf8_is_valid(in, &bad);
    json_t *s = json_stringn(in.len > 0 ? (const char *)in.ptr : "", in.len);

    /* Two independent validators must agree (jansson also refuses surrogates and overlongs). */
    SK_FUZZ_CHECK(is_valid == (s != NULL));
    json_decref(s);
    if (!is_valid) {
        SK_FUZZ_CHECK(bad < in.len);
        SK_FUZZ_CHECK(sk__utf8_is_valid((sk_slice){ in.ptr, bad }, NULL));
    }
    while (pos < in.len) {
        uint32_t cp = 0;
        size_t n = sk__utf8_decode(in.ptr + pos, in.len - pos, &cp);
        if (n == 0) {
            SK_FUZZ_CHECK(!is_valid);
            break;
        }
        SK_FUZZ_CHECK(n <= 4 && pos + n <= in.len);
        SK_FUZZ_CHECK(cp <= 0x10FFFF && (cp < 0xD800 || cp > 0xDFFF));
        pos += n;
    }
}

static void fuzz_base64url(sk_slice in)
{
    uint8_t *raw = sk_malloc(in.len * 3 / 4 + 1);
    char *again = NULL;
    size_t raw_len = 0;

    if (raw == NULL) {
        return;
    }
    if (sk_base64url_decode(in, raw, &raw_len) == SK_OK) {
        again = sk_malloc(4 * ((raw_len + 2) / 3) + 1);
        if (again != NULL) {
            size_t n = sk_base64url_encode(raw, raw_len, again);
            SK_FUZZ_CHECK(n == in.len && memcmp(again, in.ptr, n) == 0);
        }
    }
    sk_free(again);
    sk_free(raw);
}

static void fuzz_ctoken(sk_slice in)
{
    char id[SK_CTOKEN_MAX];
    char token[SK_CTOKEN_MAX];
    int64_t version = 0;

    if (sk_ctoken_decode(in, id, sizeof(id), &version) == SK_OK) {
        SK_FUZZ_CHECK(sk_ctoken_encode(id, version, token) == SK_OK);
        SK_FUZZ_CHECK(strlen(token) == in.len && memcmp(token, in.ptr, in.len) == 0);
    }
}

static void fuzz_ids(sk_slice in)
{
    char trace[SK_TRACEPARENT_LEN];

    if (sk_uuid_is_valid(in)) {
        SK_FUZZ_CHECK(in.len == SK_UUID_LEN - 1);
    }
    /* A child of any input is a valid traceparent (a new trace when the parent is invalid). */
    sk_trace_child(in, trace);
    SK_FUZZ_CHECK(sk_trace_is_valid(sk_slice_from_str(trace)));
    if (sk_trace_is_valid(in)) {
        SK_FUZZ_CHECK(in.len == SK_TRACEPARENT_LEN - 1);
        /* Same trace id (bytes 3..34), new span. */
        SK_FUZZ_CHECK(memcmp(trace + 3, in.ptr + 3, 32) == 0);
    }
}

static void fuzz_http_values(sk_slice in, const char *cstr)
{
    int64_t ms = 0;

    if (sk__retry_after_parse(cstr, 1795600800123LL, &ms)) {
        SK_FUZZ_CHECK(ms >= 0);
    }
    if (sk__mesh_duration_parse(in, &ms) == SK_OK) {
        SK_FUZZ_CHECK(ms >= 0 && ms <= 24LL * 3600 * 1000);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sk_slice in = { data, size };
    char *cstr = sk_malloc(size + 1);

    sk_fuzz_setup();
    if (cstr == NULL) {
        return 0;
    }
    if (size > 0) {
        memcpy(cstr, data, size);
    }
    cstr[size] = '\0';
    fuzz_utf8(in);
    fuzz_base64url(in);
    fuzz_ctoken(in);
    fuzz_ids(in);
    fuzz_http_values(in, cstr);
    sk_free(cstr);
    sk_error_clear();
    return 0;
}
