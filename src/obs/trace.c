/* SPDX-License-Identifier: MIT */
/*
 * W3C Trace Context (traceparent, version 00): validation, new roots and
 * children. Input is untrusted (it arrives in HTTP and NATS headers), so it
 * is read as (ptr, len) and only the exact 55-byte lower-case form passes.
 */
#include <stdatomic.h>
#include <string.h>

#include "obs/obs_int.h"

#define TRACE_ID_BYTES  16
#define PARENT_ID_BYTES 8
#define TRACE_ID_HEX    ((size_t)2 * TRACE_ID_BYTES)
#define PARENT_ID_HEX   ((size_t)2 * PARENT_ID_BYTES)
/* "00-" + 32 + "-" + 16 + "-" + 2 */
#define TRACEPARENT_TEXT_LEN (SK_TRACEPARENT_LEN - 1)
#define TRACE_ID_OFF         3
#define PARENT_ID_OFF        36
#define FLAGS_OFF            53

static const char hex_digits[] = "0123456789abcdef";

static bool is_lower_hex(uint8_t c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

/* @p n lower-case hex digits at @p p, not all '0'. */
static bool hex_field_ok(const uint8_t *p, size_t n, bool may_be_zero)
{
    bool is_zero = true;

    for (size_t i = 0; i < n; i++) {
        if (!is_lower_hex(p[i])) {
            return false;
        }
        if (p[i] != '0') {
            is_zero = false;
        }
    }
    return may_be_zero || !is_zero;
}

bool sk_trace_is_valid(sk_slice s)
{
    const uint8_t *p = s.ptr;

    if (p == NULL || s.len != TRACEPARENT_TEXT_LEN) {
        return false;
    }
    return p[0] == '0' && p[1] == '0' && p[2] == '-' &&
           hex_field_ok(p + TRACE_ID_OFF, TRACE_ID_HEX, false) && p[PARENT_ID_OFF - 1] == '-' &&
           hex_field_ok(p + PARENT_ID_OFF, PARENT_ID_HEX, false) && p[FLAGS_OFF - 1] == '-' &&
           hex_field_ok(p + FLAGS_OFF, 2, true);
}

/* splitmix64: only a fallback when the kernel cannot give random bytes. */
static uint64_t fallback_next(void)
{
    static _Atomic uint64_t state;
    uint64_t z = atomic_fetch_add_explicit(&state, 0x9E3779B97F4A7C15ull, memory_order_relaxed);

    z += (uint64_t)sk_time_mono_ns() ^ ((uint64_t)sk_time_now_ms() << 20);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Random non-zero id bytes; never fails (an id is not a secret). */
static void random_id(uint8_t *out, size_t len)
{
    bool is_zero = true;

    if (sk_random_bytes(out, len) != SK_OK) {
        for (size_t i = 0; i < len; i += 8) {
            uint64_t v = fallback_next();
            size_t n = len - i < 8 ? len - i : 8;
            memcpy(out + i, &v, n);
        }
        sk_error_clear(); /* the failure was handled here */
    }
    for (size_t i = 0; i < len; i++) {
        if (out[i] != 0) {
            is_zero = false;
        }
    }
    if (is_zero) {
        out[len - 1] = 1; /* all-zero ids are invalid */
    }
}

static void write_hex(char *out, const uint8_t *bytes, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = hex_digits[bytes[i] >> 4];
        out[2 * i + 1] = hex_digits[bytes[i] & 0x0f];
    }
}

/* Write the separators, version, a new parent id and the NUL; ids and flags are the caller's. */
static void write_frame_and_span(char out[SK_TRACEPARENT_LEN])
{
    uint8_t span[PARENT_ID_BYTES];

    random_id(span, sizeof(span));
    out[0] = '0';
    out[1] = '0';
    out[2] = '-';
    out[PARENT_ID_OFF - 1] = '-';
    write_hex(out + PARENT_ID_OFF, span, sizeof(span));
    out[FLAGS_OFF - 1] = '-';
    out[TRACEPARENT_TEXT_LEN] = '\0';
}

void sk_trace_new(char out[SK_TRACEPARENT_LEN])
{
    uint8_t trace[TRACE_ID_BYTES];

    if (out == NULL) {
        return;
    }
    random_id(trace, sizeof(trace));
    write_hex(out + TRACE_ID_OFF, trace, sizeof(trace));
    write_frame_and_span(out);
    out[FLAGS_OFF] = '0';
    out[FLAGS_OFF + 1] = '1'; /* sampled */
}

void sk_trace_child(sk_slice parent, char out[SK_TRACEPARENT_LEN])
{
    if (out == NULL) {
        return;
    }
    if (!sk_trace_is_valid(parent)) {
        sk_trace_new(out);
        return;
    }
    /* Copy first: @p parent may point into @p out. */
    char trace_and_flags[TRACE_ID_HEX + 2];
    memcpy(trace_and_flags, parent.ptr + TRACE_ID_OFF, TRACE_ID_HEX);
    memcpy(trace_and_flags + TRACE_ID_HEX, parent.ptr + FLAGS_OFF, 2);
    memcpy(out + TRACE_ID_OFF, trace_and_flags, TRACE_ID_HEX);
    write_frame_and_span(out);
    memcpy(out + FLAGS_OFF, trace_and_flags + TRACE_ID_HEX, 2);
}
