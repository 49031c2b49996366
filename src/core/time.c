/* SPDX-License-Identifier: MIT */
/*
 * Clocks and RFC 3339 formatting. Wall time is for timestamps only; measure
 * durations and deadlines with the monotonic clock.
 */
#include <string.h>
#include <time.h>

#include "core/core_int.h"

/* 0000-01-01 .. 9999-12-31T23:59:59.999Z is what fits the fixed-size text. */
#define MIN_EPOCH_MS (-62167219200000LL)
#define MAX_EPOCH_MS (253402300799999LL)

int64_t sk_time_now_ms(void)
{
    struct timespec ts;

    if (clock_gettime(CLOCK_REALTIME, &ts) != 0) {
        return 0;
    }
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void sk_time_mono_deadline(int64_t ms, struct timespec *out)
{
    clock_gettime(CLOCK_MONOTONIC, out);
    if (ms < 0) {
        ms = 0;
    }
    out->tv_sec += (time_t)(ms / 1000);
    out->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (out->tv_nsec >= 1000000000L) {
        out->tv_sec++;
        out->tv_nsec -= 1000000000L;
    }
}

int64_t sk_time_mono_since_ms(int64_t stamp_ms)
{
    if (stamp_ms == 0) {
        return 0;
    }
    int64_t since = sk_time_mono_ms() - stamp_ms;
    return since > 0 ? since : 0;
}

int64_t sk_time_mono_ns(void)
{
    struct timespec ts;

    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) {
        return 0;
    }
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int64_t sk_time_mono_ms(void)
{
    return sk_time_mono_ns() / 1000000;
}

static void put_digits(char *out, int value, int width)
{
    for (int i = width - 1; i >= 0; i--) {
        out[i] = (char)('0' + value % 10);
        value /= 10;
    }
}

void sk_time_format_rfc3339(int64_t epoch_ms, char out[SK_RFC3339_LEN])
{
    struct tm tm;
    time_t secs;
    int64_t ms;

    if (out == NULL) {
        return;
    }
    if (epoch_ms < MIN_EPOCH_MS) {
        epoch_ms = MIN_EPOCH_MS;
    } else if (epoch_ms > MAX_EPOCH_MS) {
        epoch_ms = MAX_EPOCH_MS;
    }
    /* Floor division, so that -1 ms is 1969-12-31T23:59:59.999Z. */
    secs = (time_t)(epoch_ms / 1000);
    ms = epoch_ms % 1000;
    if (ms < 0) {
        ms += 1000;
        secs -= 1;
    }
    if (gmtime_r(&secs, &tm) == NULL) {
        memcpy(out, "1970-01-01T00:00:00.000Z", SK_RFC3339_LEN);
        return;
    }
    /* Written digit by digit: every field is in range after the clamp above. */
    put_digits(out, tm.tm_year + 1900, 4);
    out[4] = '-';
    put_digits(out + 5, tm.tm_mon + 1, 2);
    out[7] = '-';
    put_digits(out + 8, tm.tm_mday, 2);
    out[10] = 'T';
    put_digits(out + 11, tm.tm_hour, 2);
    out[13] = ':';
    put_digits(out + 14, tm.tm_min, 2);
    out[16] = ':';
    put_digits(out + 17, tm.tm_sec, 2);
    out[19] = '.';
    put_digits(out + 20, (int)ms, 3);
    out[23] = 'Z';
    out[24] = '\0';
}
