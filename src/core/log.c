/* SPDX-License-Identifier: MIT */
/*
 * Logging: one line per event on stderr, as text
 * ("2026-11-25T10:00:00.123Z INFO service module message") or as JSON lines.
 * Each line is built in a stack buffer and written under one mutex, so lines
 * from different threads never interleave. Control characters and invalid
 * UTF-8 in the message are escaped, so one event is always one line.
 * Thread-safe; the setters are meant for startup (sk_init) and tests.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/core_int.h"

/* Longest message kept before escaping; longer ones are cut and marked "...". */
#define LOG_MSG_MAX 4096
/* Worst case: every message byte becomes a 6-byte escape, plus the prefix. */
#define LOG_LINE_MAX (LOG_MSG_MAX * 6 + 512)
#define SERVICE_MAX 64

int sk_log_level_current = SK_LOG_LEVEL_INFO;

static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
/* log_mu protects: log_service, log_stream. */
static char log_service[SERVICE_MAX] = "skald";
static FILE *log_stream; /* NULL means stderr */
static _Atomic int log_format = SK__LOG_FORMAT_TEXT;

static const char *const level_upper[] = { "ERROR", "WARN", "INFO", "DEBUG" };
static const char *const level_lower[] = { "error", "warn", "info", "debug" };

static void lock(void)
{
    if (pthread_mutex_lock(&log_mu) != 0) {
        abort();
    }
}

static void unlock(void)
{
    if (pthread_mutex_unlock(&log_mu) != 0) {
        abort();
    }
}

void sk_log_set_level(sk_log_level level)
{
    int l = (int)level;

    if (l < SK_LOG_LEVEL_ERROR) {
        l = SK_LOG_LEVEL_ERROR;
    } else if (l > SK_LOG_LEVEL_DEBUG) {
        l = SK_LOG_LEVEL_DEBUG;
    }
    /* A plain int read by SK_LOG_AT without a lock: set it before starting threads. */
    sk_log_level_current = l;
}

bool sk__log_level_parse(const char *name, sk_log_level *out)
{
    if (name == NULL) {
        return false;
    }
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(name, level_lower[i]) == 0) {
            if (out != NULL) {
                *out = (sk_log_level)i;
            }
            return true;
        }
    }
    return false;
}

void sk__log_set_service(const char *service)
{
    lock();
    (void)snprintf(log_service, sizeof(log_service), "%s", service != NULL ? service : "skald");
    unlock();
}

void sk__log_set_format(sk__log_format format)
{
    atomic_store(&log_format, (int)format);
}

void sk__log_set_stream(FILE *stream)
{
    lock();
    log_stream = stream;
    unlock();
}

/* Appends to a fixed line buffer; silently stops at the end (the caller sized it). */
typedef struct line_buf {
    char *p;
    size_t len;
    size_t cap;
} line_buf;

static void put(line_buf *l, const char *s, size_t n)
{
    if (n > l->cap - 1 - l->len) {
        n = l->cap - 1 - l->len;
    }
    memcpy(l->p + l->len, s, n);
    l->len += n;
    l->p[l->len] = '\0';
}

static void put_str(line_buf *l, const char *s)
{
    put(l, s, strlen(s));
}

/* Escape @p s for one text or JSON line. */
static void put_escaped(line_buf *l, const char *s, bool json)
{
    const uint8_t *p = (const uint8_t *)s;
    size_t len = strlen(s);
    size_t i = 0;
    char esc[8];

    while (i < len) {
        uint8_t c = p[i];
        if (c >= 0x80) {
            size_t n = sk__utf8_decode(p + i, len - i, NULL);
            if (n > 0) {
                put(l, (const char *)p + i, n);
                i += n;
            } else {
                if (json) {
                    put_str(l, "\\ufffd");
                } else {
                    (void)snprintf(esc, sizeof(esc), "\\x%02x", c);
                    put_str(l, esc);
                }
                i++;
            }
            continue;
        }
        switch (c) {
        case '\n':
            put_str(l, "\\n");
            break;
        case '\r':
            put_str(l, "\\r");
            break;
        case '\t':
            put_str(l, "\\t");
            break;
        case '\\':
            put_str(l, "\\\\");
            break;
        case '"':
            put_str(l, json ? "\\\"" : "\"");
            break;
        default:
            if (c < 0x20 || c == 0x7F) {
                (void)snprintf(esc, sizeof(esc), json ? "\\u%04x" : "\\x%02x", c);
                put_str(l, esc);
            } else {
                put(l, (const char *)&c, 1);
            }
            break;
        }
        i++;
    }
}

void sk_log_write(sk_log_level level, const char *module, const char *fmt, ...)
{
    static _Thread_local char msg[LOG_MSG_MAX + 4];
    static _Thread_local char line_mem[LOG_LINE_MAX];
    char ts[SK_RFC3339_LEN];
    line_buf l = { line_mem, 0, sizeof(line_mem) };
    bool json = atomic_load(&log_format) == SK__LOG_FORMAT_JSON;
    va_list ap;
    int n;
    int li = (int)level;
    FILE *out;

    if (li < SK_LOG_LEVEL_ERROR || li > SK_LOG_LEVEL_DEBUG) {
        li = SK_LOG_LEVEL_ERROR;
    }
    if (module == NULL) {
        module = "app";
    }
    msg[0] = '\0';
    if (fmt != NULL) {
        va_start(ap, fmt);
        n = vsnprintf(msg, LOG_MSG_MAX + 1, fmt, ap);
        va_end(ap);
        if (n < 0) {
            msg[0] = '\0';
        } else if (n > LOG_MSG_MAX) {
            memcpy(msg + LOG_MSG_MAX - 3, "...", 4);
        }
    }
    line_mem[0] = '\0';
    sk_time_format_rfc3339(sk_time_now_ms(), ts);

    lock();
    if (json) {
        put_str(&l, "{\"ts\":\"");
        put_str(&l, ts);
        put_str(&l, "\",\"level\":\"");
        put_str(&l, level_lower[li]);
        put_str(&l, "\",\"service\":\"");
        put_escaped(&l, log_service, true);
        put_str(&l, "\",\"module\":\"");
        put_escaped(&l, module, true);
        put_str(&l, "\",\"msg\":\"");
        put_escaped(&l, msg, true);
        put_str(&l, "\"}\n");
    } else {
        put_str(&l, ts);
        put_str(&l, " ");
        put_str(&l, level_upper[li]);
        put_str(&l, " ");
        put_escaped(&l, log_service, false);
        put_str(&l, " ");
        put_escaped(&l, module, false);
        put_str(&l, " ");
        put_escaped(&l, msg, false);
        put_str(&l, "\n");
    }
    if (l.len > 0 && l.p[l.len - 1] != '\n') {
        l.p[l.len - 1] = '\n'; /* an oversized module name filled the line: still one line */
    }
    out = log_stream != NULL ? log_stream : stderr;
    (void)fwrite(l.p, 1, l.len, out);
    (void)fflush(out);
    unlock();
}
