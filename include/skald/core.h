/* SPDX-License-Identifier: MIT */
/*
 * core: allocation, byte slices and bounded buffers, logging, time, ids
 * (UUIDv7), JSON helpers and the system file (skald.yaml). Every other module
 * builds on this one; it depends on nothing of ours.
 *
 * JSON: Skald uses jansson, and its value type json_t appears in the public
 * API on purpose (command, query and event payloads), so services do not pay
 * for a second representation. See docs/architecture.md for the reasons.
 */
#ifndef SK_CORE_H
#define SK_CORE_H

#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <skald/status.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- limits */

/** Largest HTTP request body accepted anywhere (1 MiB). */
#define SK_MAX_HTTP_BODY (1024u * 1024u)
/** Largest NATS message payload Skald produces or accepts. */
#define SK_MAX_MSG_PAYLOAD (1024u * 1024u)
/** Deepest JSON nesting accepted from external input. */
#define SK_MAX_JSON_DEPTH 32
/** Largest system file accepted. */
#define SK_MAX_CONFIG_BYTES (1024u * 1024u)

/* ---------------------------------------------------------------- library */

/**
 * Initialise the library once per process: routes jansson's allocations
 * through sk_malloc/sk_free and reads SK_LOG_LEVEL / SK_LOG_FORMAT.
 * @param service name written on every log line ("skald" when NULL); copied.
 */
SK_API SK_NODISCARD sk_status sk_init(const char *service);
/** Release what sk_init took. Safe to call when sk_init was never called. */
SK_API void sk_shutdown(void);

/* ---------------------------------------------------------------- memory */

/** Allocation wrappers; every allocation in Skald goes through them. */
SK_API void *sk_malloc(size_t n);
SK_API void *sk_calloc(size_t count, size_t size);
SK_API void *sk_realloc(void *p, size_t n);
SK_API char *sk_strdup(const char *s);
SK_API char *sk_strndup(const char *s, size_t n);
SK_API void sk_free(void *p);
/** Formatted allocation; NULL on out of memory. Owned, free with sk_free. */
SK_API char *sk_asprintf(const char *fmt, ...) SK_PRINTF(1, 2);

/**
 * Test hook: make the @p n-th allocation from now (0-based) fail once; -1
 * turns it off. Always compiled in (one relaxed atomic load per allocation),
 * so tests exercise the library code that ships. Counts every allocation in
 * the process, including jansson's after sk_init.
 */
SK_API void sk_test_fail_alloc_at(long n);

/** A borrowed run of bytes; never assumed NUL-terminated. */
typedef struct sk_slice {
    const uint8_t *ptr;
    size_t len;
} sk_slice;

/** Slice over a NUL-terminated string (borrowed). */
SK_API sk_slice sk_slice_from_str(const char *s);
SK_API bool sk_slice_eq_str(sk_slice s, const char *str);

/** True when @p s is 1..@p max bytes of [A-Za-z0-9_-] (stream, consumer, lock and read-model
 * names). */
SK_API bool sk_name_is_valid(const char *s, size_t max);
/** 64-bit FNV-1a of a NUL-terminated string: for names and hash buckets, not for security. */
SK_API uint64_t sk_hash_text(const char *s);

/**
 * Growable byte buffer with a hard maximum. Always NUL-terminated after a
 * successful append (the terminator is not counted in len).
 * Caller-serialized.
 */
typedef struct sk_buf {
    char *data;
    size_t len;
    size_t cap;
    size_t max_bytes;
} sk_buf;

SK_API void sk_buf_init(sk_buf *b, size_t max_bytes);
SK_API void sk_buf_fini(sk_buf *b);
SK_API void sk_buf_reset(sk_buf *b);
/** @return SK_OK, SK_ELIMIT (would pass max_bytes), SK_ENOMEM. */
SK_API SK_NODISCARD sk_status sk_buf_append(sk_buf *b, const void *data, size_t len);
SK_API SK_NODISCARD sk_status sk_buf_append_str(sk_buf *b, const char *s);
SK_API SK_NODISCARD sk_status sk_buf_appendf(sk_buf *b, const char *fmt, ...) SK_PRINTF(2, 3);
/** Take ownership of the data (free with sk_free); the buffer is reset. */
SK_API char *sk_buf_take(sk_buf *b, size_t *len_out);

/* ---------------------------------------------------------------- logging */

typedef enum sk_log_level {
    SK_LOG_LEVEL_ERROR = 0,
    SK_LOG_LEVEL_WARN = 1,
    SK_LOG_LEVEL_INFO = 2,
    SK_LOG_LEVEL_DEBUG = 3
} sk_log_level;

SK_API extern int sk_log_level_current;
SK_API void sk_log_set_level(sk_log_level level);
SK_API void sk_log_write(sk_log_level level, const char *module, const char *fmt, ...)
    SK_PRINTF(3, 4);

#ifndef SK_LOG_MODULE
#define SK_LOG_MODULE "app"
#endif
/* The level test comes first so that arguments are not evaluated below it. */
#define SK_LOG_AT(lvl, ...)                                                                        \
    do {                                                                                           \
        if ((int)(lvl) <= sk_log_level_current) {                                                  \
            sk_log_write((lvl), SK_LOG_MODULE, __VA_ARGS__);                                       \
        }                                                                                          \
    } while (0)
#define SK_LOG_ERROR(...) SK_LOG_AT(SK_LOG_LEVEL_ERROR, __VA_ARGS__)
#define SK_LOG_WARN(...)  SK_LOG_AT(SK_LOG_LEVEL_WARN, __VA_ARGS__)
#define SK_LOG_INFO(...)  SK_LOG_AT(SK_LOG_LEVEL_INFO, __VA_ARGS__)
#define SK_LOG_DEBUG(...) SK_LOG_AT(SK_LOG_LEVEL_DEBUG, __VA_ARGS__)

/* ---------------------------------------------------------------- time */

/** Wall clock, milliseconds since the Unix epoch. */
SK_API int64_t sk_time_now_ms(void);
/** Monotonic clock in milliseconds / nanoseconds (arbitrary origin). */
SK_API int64_t sk_time_mono_ms(void);
SK_API int64_t sk_time_mono_ns(void);
struct timespec;
/**
 * Fill @p out with the CLOCK_MONOTONIC time @p ms (>= 0) from now: the
 * deadline of a pthread_cond_timedwait on a condition variable set to that
 * clock (pthread_condattr_setclock), immune to wall-clock jumps.
 */
SK_API void sk_time_mono_deadline(int64_t ms, struct timespec *out);
/**
 * Milliseconds since @p stamp_ms, a sk_time_mono_ms() reading; 0 for a stamp
 * of 0, which stands for "not set" (the monotonic clock reads 0 only at boot),
 * and for one in the future.
 */
SK_API int64_t sk_time_mono_since_ms(int64_t stamp_ms);
/** Size of an RFC 3339 timestamp with milliseconds, including the NUL. */
#define SK_RFC3339_LEN 25
/** Format @p epoch_ms as "2026-11-25T10:00:00.123Z" into @p out. */
SK_API void sk_time_format_rfc3339(int64_t epoch_ms, char out[SK_RFC3339_LEN]);

/* ---------------------------------------------------------------- threads */

/**
 * Name the calling thread (shown by top -H, perf, /proc/PID/task/TID/comm),
 * so a profile says which of a service's threads spends the time. Longer
 * names are cut to 15 bytes; a failure is ignored.
 */
SK_API void sk_thread_name(const char *name);
/** The calling thread's name (at most 15 bytes), "" when it cannot be read. */
SK_API void sk_thread_name_get(char out[16]);

/* ---------------------------------------------------------------- ids */

/** Size of a textual UUID including the NUL. */
#define SK_UUID_LEN 37
/** Write a new UUIDv7 (time-ordered, RFC 9562) in lower-case text form. */
SK_API void sk_uuid7(char out[SK_UUID_LEN]);
/**
 * Write the name-based UUIDv5 (RFC 9562: SHA-1 of the namespace's 16 bytes
 * and @p name) in lower-case text form: the same name in the same namespace
 * always gives the same id, in every process and after every restart.
 * Thread-safe.
 * @param namespace_uuid a canonical UUID text (either case)
 * @param name           any bytes, @p name.len of them (may be 0)
 * @return SK_OK; SK_EINVAL when @p namespace_uuid is not a UUID or an
 *         argument is NULL; SK_ENOMEM or SK_EINTERNAL when OpenSSL fails.
 *         On failure @p out, when given, is "".
 */
SK_API SK_NODISCARD sk_status sk_uuid5(const char *namespace_uuid,
                                       sk_slice name,
                                       char out[SK_UUID_LEN]);
/** True when @p s is a canonical lower- or upper-case UUID text. */
SK_API bool sk_uuid_is_valid(sk_slice s);
/** Fill @p out with @p len cryptographically random bytes (getrandom). */
SK_API SK_NODISCARD sk_status sk_random_bytes(void *out, size_t len);

/* ---------------------------------------------------------------- JSON */

/**
 * Parse external JSON: at most SK_MAX_JSON_DEPTH deep, duplicate keys
 * rejected, bytes must be valid UTF-8. On failure the error text gives
 * line:column and what was wrong.
 * @param[out] out owned, json_decref when done; NULL on failure.
 * @return SK_OK, SK_EPROTO (bad JSON), SK_ELIMIT (too deep), SK_ENOMEM.
 */
SK_API SK_NODISCARD sk_status sk_json_parse(sk_slice text, json_t **out);
/** Parse and require a JSON object at the top level. */
SK_API SK_NODISCARD sk_status sk_json_parse_object(sk_slice text, json_t **out);

/**
 * Read a required string member @p key of @p obj with a length in
 * characters (Unicode code points) of [min_chars, max_chars].
 * @param[out] out borrowed from @p obj.
 * @return SK_OK or SK_EPROTO naming the field ("name: expected a string of
 *         1..200 characters, got 0").
 */
SK_API SK_NODISCARD sk_status sk_json_get_string(const json_t *obj,
                                                 const char *key,
                                                 size_t min_chars,
                                                 size_t max_chars,
                                                 const char **out);
/**
 * Read a required integer member in [min, max]. Reals, strings, booleans and
 * integers outside the range are refused with a message naming the field.
 */
SK_API SK_NODISCARD sk_status sk_json_get_int(const json_t *obj,
                                              const char *key,
                                              int64_t min,
                                              int64_t max,
                                              int64_t *out);
/** One member of a flat JSON object, decoded; each ptr is also a C string. */
typedef struct sk_json_member {
    sk_slice name;
    sk_slice value;
} sk_json_member;

/**
 * Parse a JSON object whose members are all strings, without allocating
 * (hot paths: message headers). The same rules as sk_json_parse_object:
 * strict UTF-8, no duplicate names, no NUL inside a string.
 * @param scratch receives the decoded names and values, each followed by a
 *        NUL; at least text.len + 1 bytes.
 * @param[out] members up to @p max_members, in document order, pointing
 *        into @p scratch.
 * @return SK_OK, SK_EPROTO (bad JSON, or a member that is not a string: the
 *         message names it), SK_ELIMIT (more than @p max_members), SK_EINVAL.
 */
SK_API SK_NODISCARD sk_status sk_json_parse_flat_strings(sk_slice text,
                                                         char *scratch,
                                                         size_t scratch_len,
                                                         sk_json_member *members,
                                                         size_t max_members,
                                                         size_t *n_members);
/** Serialise compactly into @p out (appended). */
SK_API SK_NODISCARD sk_status sk_json_dump(const json_t *value, sk_buf *out);
/** Serialise compactly into a new string; owned, free with sk_free. */
SK_API char *sk_json_dumps(const json_t *value);

/* ---------------------------------------------------------------- hex */

/** Value of the hex digit @p c (0-9, a-f, A-F), or -1 for any other byte. */
SK_API int sk_hex_value(int c);

/* ---------------------------------------------------------------- base64url */

/** Unpadded base64url. @p out must hold 4 * ceil(len/3) + 1 bytes. */
SK_API size_t sk_base64url_encode(const void *data, size_t len, char *out);
/** @return SK_OK or SK_EPROTO; @p out must hold len*3/4 + 1 bytes. */
SK_API SK_NODISCARD sk_status sk_base64url_decode(sk_slice text, uint8_t *out, size_t *out_len);


/* ---------------------------------------------------------------- HTTP */

/** Reason phrase of an HTTP status ("Not Found"), "Unknown" for others. Never NULL. */
SK_API const char *sk_http_reason(int status);

/* ---------------------------------------------------------------- YAML */

/**
 * Parse a YAML 1.1 document (block and flow style, no anchors, no tags
 * other than the core scalars) into JSON values: mappings become objects,
 * sequences arrays; plain scalars that read as integers, true/false or null
 * become those, everything else a string.
 * @param origin used in error messages ("skald.yaml:12:3: ...").
 * @return SK_OK, SK_EPROTO (with line:column), SK_ELIMIT, SK_ENOMEM.
 */
SK_API SK_NODISCARD sk_status sk_yaml_parse(sk_slice text, const char *origin, json_t **out);

/* ---------------------------------------------------------------- system file */

/** One gateway route: METHOD + path pattern ("{x}" matches one segment). */
typedef struct sk_sys_route {
    char *method;  /* "GET", "POST", ... */
    char *path;    /* public path pattern, e.g. "/api/v1/orders/{id}" */
    char *service; /* upstream service name */
    char *target;  /* internal path pattern, same placeholders, e.g. "/orders/{id}" */
} sk_sys_route;

/** One synchronous upstream and its mesh policy (Istio field names). */
typedef struct sk_sys_upstream {
    char *service;
    json_t *policy; /* object: trafficPolicy, retries, timeout, fault; borrowed from the system */
} sk_sys_upstream;

/** Authorization: identities allowed to call METHODS on paths under PREFIX. */
typedef struct sk_sys_authz_rule {
    char **from; /* service names (identities); "*" means any mesh identity */
    size_t n_from;
    char **methods; /* empty = any method */
    size_t n_methods;
    char *path_prefix;
} sk_sys_authz_rule;

typedef struct sk_sys_service {
    char *name;    /* [a-z][a-z0-9-]{0,31} */
    char *context; /* bounded context; subjects start with it */
    int instances; /* 1..16 */
    char *database; /* database name ("" for none); unique across services */
    bool is_gateway;
    char **commands, **queries, **emits, **consumes;
    size_t n_commands, n_queries, n_emits, n_consumes;
    sk_sys_upstream *upstreams;
    size_t n_upstreams;
    sk_sys_authz_rule *authz;
    size_t n_authz;
} sk_sys_service;

/** Most nats-server nodes `skald up` runs (JetStream allows at most 5 replicas). */
#define SK_SYS_BROKER_MAX_NODES 5

/**
 * The message broker `skald up` runs (top-level `broker:` section of the
 * system file): @c nodes nats-server processes on loopback, clustered when
 * more than one, and the number of copies JetStream keeps of every stream
 * and key-value bucket of the system.
 */
typedef struct sk_sys_broker {
    int nodes;    /* 1..SK_SYS_BROKER_MAX_NODES; default 1 (a single server) */
    int replicas; /* 1..nodes; default nodes */
} sk_sys_broker;

typedef struct sk_system {
    char *name;
    sk_sys_service *services;
    size_t n_services;
    sk_sys_route *routes;
    size_t n_routes;
    int gateway_port; /* default public port */
    json_t *root;     /* the whole document, for sections read by later modules */
    sk_sys_broker broker; /* always filled (defaults when the section is absent) */
} sk_system;

/**
 * Parse and validate a system file. Errors name the file, the path of the
 * field ("services.order.instances") and what was expected.
 * @param[out] out owned, sk_system_destroy.
 * @return SK_OK, SK_EIO (cannot read), SK_EPROTO, SK_ELIMIT, SK_ENOMEM.
 */
SK_API SK_NODISCARD sk_status sk_system_load(const char *path, sk_system **out);
SK_API SK_NODISCARD sk_status sk_system_parse(sk_slice text, const char *origin, sk_system **out);
SK_API void sk_system_destroy(sk_system *sys);
/** Borrowed pointer into @p sys, or NULL. */
SK_API const sk_sys_service *sk_system_service_find(const sk_system *sys, const char *name);

#ifdef __cplusplus
}
#endif
#endif /* SK_CORE_H */
