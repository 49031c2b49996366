/* SPDX-License-Identifier: MIT */
/*
 * mesh internals shared by the mesh sources and their tests: Istio duration
 * parsing, the upstream policy seam, problem+json formatting, request-id
 * validation and a few introspection hooks used by the tests.
 */
#ifndef SK_MESH_INT_H
#define SK_MESH_INT_H

/* OpenSSL's pre-1.1 stack macros include `sk_free`, which collides with ours: hide them. */
#ifndef OPENSSL_API_COMPAT
#define OPENSSL_API_COMPAT 30000
#endif
#ifndef OPENSSL_NO_DEPRECATED
#define OPENSSL_NO_DEPRECATED
#endif

#include <pthread.h>

#include <skald/mesh.h>

/** Longest X-Request-Id accepted from a caller; longer ones are replaced. */
#define SK_MESH_MAX_REQUEST_ID 128

/**
 * Parse an Istio/protobuf duration ("2s", "250ms", "1.5s", "1m30s", "1h";
 * units h, m, s, ms, us, ns) into milliseconds, rounded up so that a
 * non-zero duration never becomes 0.
 * @return SK_OK, SK_EPROTO (malformed, with the offset), SK_ELIMIT (> 24 h).
 */
sk_status sk__mesh_duration_parse(sk_slice text, int64_t *out_ms);

/* ---------------------------------------------------------------- seams */

/** Monotonic clock in milliseconds; tests inject their own. */
typedef int64_t (*sk__clock_fn)(void *ctx);
/** Uniform 64-bit random numbers; tests inject their own. */
typedef uint64_t (*sk__rand_fn)(void *ctx);

/** sk_time_mono_ms() as an sk__clock_fn (ctx ignored). */
int64_t sk__mesh_clock_default(void *ctx);
/** A per-thread xorshift generator seeded from sk_random_bytes (ctx ignored); not for secrets. */
uint64_t sk__mesh_rand_default(void *ctx);

/* ---------------------------------------------------------------- policy */

/** loadBalancer.simple. */
typedef enum sk__lb_kind {
    SK__LB_LEAST_REQUEST = 0, /* Istio's default; LEAST_CONN is its deprecated alias */
    SK__LB_ROUND_ROBIN,
    SK__LB_RANDOM
} sk__lb_kind;

/** trafficPolicy.connectionPool (HTTP/1.1: one request per connection at a time). */
typedef struct sk__pool_policy {
    uint32_t max_connections;             /* tcp.maxConnections; UINT32_MAX (2^32-1) */
    int64_t connect_timeout_ms;           /* tcp.connectTimeout; 10000 */
    uint32_t max_pending;                 /* http.http1MaxPendingRequests; UINT32_MAX */
    uint32_t max_requests_per_connection; /* http.maxRequestsPerConnection; 0 = unlimited */
} sk__pool_policy;

/** trafficPolicy.outlierDetection; is_enabled only when the object is present. */
typedef struct sk__outlier_policy {
    bool is_enabled;
    uint32_t consecutive_5xx;      /* consecutive5xxErrors; 5, 0 = off */
    uint32_t consecutive_gateway;  /* consecutiveGatewayErrors; 0 = off */
    int64_t interval_ms;           /* interval; 10000 */
    int64_t base_ejection_ms;      /* baseEjectionTime; 30000 */
    int64_t max_ejection_ms;       /* Envoy max_ejection_time: max(300 s, baseEjectionTime) */
    uint32_t max_ejection_percent; /* maxEjectionPercent; 10 */
    uint32_t min_health_percent;   /* minHealthPercent; 0 = panic mode off */
} sk__outlier_policy;

/* retryOn conditions. */
#define SK__RETRY_5XX             (1u << 0)
#define SK__RETRY_GATEWAY_ERROR   (1u << 1)
#define SK__RETRY_CONNECT_FAILURE (1u << 2)
#define SK__RETRY_RESET           (1u << 3)
#define SK__RETRY_RETRIABLE_4XX   (1u << 4) /* 409 */
#define SK__RETRY_STATUS_CODES    (1u << 5) /* retriable-status-codes: codes[] */
#define SK__RETRY_MAX_CODES       16
#define SK__RETRY_MAX_ATTEMPTS    10
/** Envoy's default retry back-off: 25 ms base, 10x cap. */
#define SK__RETRY_BACKOFF_BASE_MS 25
#define SK__RETRY_BACKOFF_MAX_MS  250

/** VirtualService retries. */
typedef struct sk__retry_policy {
    int attempts;                   /* retries after the first try; Istio default 2 */
    int64_t per_try_timeout_ms;     /* 0 = bounded by the overall timeout only */
    uint32_t on;                    /* SK__RETRY_* */
    int codes[SK__RETRY_MAX_CODES]; /* retriable status codes (numeric retryOn entries, 503) */
    size_t n_codes;
} sk__retry_policy;

/** VirtualService fault (percentages 0..100, in millionths for exact comparisons). */
typedef struct sk__fault_policy {
    bool has_delay;
    uint32_t delay_ppm; /* delay.percentage.value x 10^4 */
    int64_t delay_ms;   /* delay.fixedDelay */
    bool has_abort;
    uint32_t abort_ppm; /* abort.percentage.value x 10^4 */
    int abort_status;   /* abort.httpStatus, 200..599 */
} sk__fault_policy;

/** The whole traffic policy of one upstream. */
typedef struct sk__upstream_policy {
    int64_t timeout_ms; /* "timeout"; 0 = none (Istio: disabled) */
    sk__lb_kind lb;
    sk__pool_policy pool;
    sk__outlier_policy outlier;
    sk__retry_policy retry;
    sk__fault_policy fault;
    /* "x-idempotent-routes": "METHOD /path" entries (a trailing '*' matches a prefix). */
    char **idempotent_routes;
    size_t n_idempotent_routes;
    int retries_attempts;       /* == retry.attempts (kept for older callers) */
    int64_t per_try_timeout_ms; /* == retry.per_try_timeout_ms */
    json_t *raw;                /* deep copy of the policy object, or NULL */
} sk__upstream_policy;

/**
 * Validate and read @p policy (NULL = defaults). Fields Istio defines but
 * the in-process mesh does not implement are refused by name; keys starting
 * with "x-" are ignored except x-idempotent-routes.
 * @return SK_OK, SK_EPROTO naming the field, SK_ENOMEM.
 */
sk_status sk__upstream_policy_parse(const json_t *policy, sk__upstream_policy *out);
void sk__upstream_policy_fini(sk__upstream_policy *p);

/** Read an Istio percentage (number, or numeric string as YAML gives it) 0..100 into ppm. */
sk_status sk__mesh_percent_parse(const json_t *v, const char *path, uint32_t *out_ppm);

/* ---------------------------------------------------------------- lb.c */

/**
 * Pick one of @p n hosts. @p is_usable[i] says whether host i may be chosen
 * (healthy, not excluded); @p active[i] is its in-flight request count.
 * ROUND_ROBIN walks from *cursor; LEAST_REQUEST draws two usable hosts at
 * random (with replacement, as Envoy) and keeps the one with fewer active
 * requests; RANDOM draws one.
 * @return the index, or SIZE_MAX when no host is usable. Caller-serialized.
 */
size_t sk__lb_pick(sk__lb_kind kind,
                   uint64_t *cursor,
                   const bool *is_usable,
                   const uint32_t *active,
                   size_t n,
                   sk__rand_fn rnd,
                   void *rnd_ctx);

/* ---------------------------------------------------------------- outlier.c */

/** How one attempt ended, as outlier detection sees it. */
typedef enum sk__outcome {
    SK__OUTCOME_SUCCESS = 0, /* 1xx-4xx (4xx never count as failures) */
    SK__OUTCOME_5XX,         /* 500, 501, 505.. */
    SK__OUTCOME_GATEWAY,     /* 502, 503, 504, and local failures: connect, reset, timeout */
    SK__OUTCOME_IGNORED      /* canceled, our own errors: not the host's fault */
} sk__outcome;

/** Per-host outlier state. */
typedef struct sk__outlier_host {
    uint32_t n_5xx;       /* consecutive 5xx (gateway errors included) */
    uint32_t n_gateway;   /* consecutive gateway errors */
    uint32_t n_ejections; /* ejection-time multiplier */
    bool is_ejected;
    int64_t ejected_until_ms; /* monotonic */
    bool has_been_unejected;
    int64_t unejected_at_ms; /* monotonic, valid with has_been_unejected */
} sk__outlier_host;

/** Per-upstream detector: policy and the next sweep. Caller-serialized. */
typedef struct sk__outlier {
    sk__outlier_policy p;
    int64_t next_sweep_ms;
} sk__outlier;

void sk__outlier_init(sk__outlier *o, const sk__outlier_policy *p, int64_t now_ms);
/** Outcome of an attempt on @p hosts[i]; true when host i was ejected now. */
bool sk__outlier_record(sk__outlier *o,
                        sk__outlier_host *const *hosts,
                        size_t n,
                        size_t i,
                        sk__outcome oc,
                        int64_t now_ms);
/**
 * Every interval: return hosts whose ejection time passed and decrement the
 * multiplier of hosts that stayed in. Does nothing before the next sweep time.
 * @return the number of hosts returned to service.
 */
size_t sk__outlier_sweep(sk__outlier *o, sk__outlier_host *const *hosts, size_t n, int64_t now_ms);
/** Number of ejected hosts. */
size_t sk__outlier_n_ejected(sk__outlier_host *const *hosts, size_t n);
/** True when healthy hosts are below minHealthPercent: ejections are then ignored. */
bool sk__outlier_is_panic(const sk__outlier *o, sk__outlier_host *const *hosts, size_t n);
/** Map an attempt's result to an outcome. */
sk__outcome sk__outcome_of(sk_status st, int http_status);

/* ---------------------------------------------------------------- pool.c */

typedef enum sk__pool_verdict { SK__POOL_GO, SK__POOL_QUEUE, SK__POOL_OVERFLOW } sk__pool_verdict;

/** Per-upstream limits of one calling process. Caller-serialized. */
typedef struct sk__pool {
    uint32_t max_active;  /* maxConnections */
    uint32_t max_pending; /* http1MaxPendingRequests */
    uint32_t n_active;
    uint32_t n_pending;
    uint64_t n_overflows;
} sk__pool;

void sk__pool_init(sk__pool *p, const sk__pool_policy *policy);
/** Admit a request: GO (a slot is taken), QUEUE (a pending place is taken) or OVERFLOW (counted).
 */
sk__pool_verdict sk__pool_admit(sk__pool *p);
/**
 * Release a slot. @return true when a pending request must be started now:
 * the slot passed to it (n_active unchanged, n_pending decremented).
 */
bool sk__pool_release(sk__pool *p);
/** A pending request left the queue without a slot (deadline, shutdown). */
void sk__pool_unqueue(sk__pool *p);

/* ---------------------------------------------------------------- retry.c */

/** How an attempt ended, as the retry policy sees it. */
typedef enum sk__attempt {
    SK__ATTEMPT_RESPONSE,        /* an HTTP status arrived */
    SK__ATTEMPT_CONNECT_FAILURE, /* never reached the server */
    SK__ATTEMPT_RESET,           /* sent, then the connection failed */
    SK__ATTEMPT_TIMEOUT,         /* per-try timeout */
    SK__ATTEMPT_OTHER            /* canceled, too large, identity mismatch, ...: final */
} sk__attempt;

/** Parse a retryOn list ("5xx,gateway-error,connect-failure,reset,503"). */
sk_status sk__retry_on_parse(sk_slice text, sk__retry_policy *p);
/**
 * Should this attempt be retried (attempts left aside)? A request that may
 * have reached the upstream is retried only when @p is_idempotent.
 */
bool sk__retry_is_retriable(const sk__retry_policy *p,
                            sk__attempt a,
                            int http_status,
                            bool is_idempotent);
/** Envoy's fully jittered back-off before retry number @p n (1-based): [0, min((2^n-1)*25, 250))
 * ms. */
int64_t sk__retry_backoff_ms(int n, uint64_t rnd);
/**
 * Parse Retry-After (delta-seconds or an IMF-fixdate) into a delay from
 * @p now_epoch_ms. @return false when malformed.
 */
bool sk__retry_after_parse(const char *value, int64_t now_epoch_ms, int64_t *out_ms);
/**
 * True for GET, HEAD, OPTIONS, TRACE, PUT, DELETE, for any request with an
 * Idempotency-Key header, and for a route listed in @p routes.
 */
bool sk__http_is_idempotent(const char *method,
                            const char *path,
                            const char *const *headers,
                            char *const *routes,
                            size_t n_routes);

/* ---------------------------------------------------------------- fault.c */

/** Parse an Istio fault object {delay:{percentage:{value},fixedDelay},
 * abort:{percentage:{value},httpStatus}}. */
sk_status sk__fault_parse(const json_t *fault, const char *path, sk__fault_policy *out);
/** Decide for one request: *delay_ms (0 = none) and *abort_status (0 = none). */
void sk__fault_decide(const sk__fault_policy *f,
                      sk__rand_fn rnd,
                      void *rnd_ctx,
                      int64_t *delay_ms,
                      int *abort_status);

/* ---------------------------------------------------------------- timer.c */

/** One thread running callbacks at monotonic deadlines. Thread-safe. */
/**
 * Initialise @p mu and @p cv with @p cv timed on CLOCK_MONOTONIC, the clock
 * of sk_time_mono_ms. Aborts on failure (only out of resources at start).
 */
void sk__mono_sync_init(pthread_mutex_t *mu, pthread_cond_t *cv);
/**
 * With @p mu held, wait on @p cv (from sk__mono_sync_init) until woken or
 * until @p deadline_ms on the sk_time_mono_ms clock; INT64_MAX: no deadline.
 */
void sk__mono_wait_until(pthread_cond_t *cv, pthread_mutex_t *mu, int64_t deadline_ms);

typedef struct sk__timers sk__timers;
/** @p is_canceled is true when the timers are destroyed before the deadline. */
typedef void (*sk__timer_fn)(void *ctx, bool is_canceled);

sk_status sk__timers_create(sk__timers **out);
/** Stop the thread; callbacks still pending run now with is_canceled = true, on this thread. */
void sk__timers_destroy(sk__timers *t);
/** Run @p fn at @p due_ms (sk_time_mono_ms clock); *out_id for sk__timers_cancel. */
sk_status
sk__timers_add(sk__timers *t, int64_t due_ms, sk__timer_fn fn, void *ctx, uint64_t *out_id);
/** True when the timer was removed before it ran (its callback will never run). */
bool sk__timers_cancel(sk__timers *t, uint64_t id);

/* ---------------------------------------------------------------- upstream test hooks */

/** Replace the clock and random source of @p u (tests). Call before the first send. */
void sk__upstream_set_seams(
    sk_upstream *u, sk__clock_fn clock, void *clock_ctx, sk__rand_fn rnd, void *rnd_ctx);
/** Current pool counters of @p u (tests). */
void sk__upstream_pool_get(sk_upstream *u, uint32_t *n_active, uint32_t *n_pending);


/**
 * Append the RFC 9457 body {type,title,status,detail,request_id} to @p out.
 * @param title NULL = the reason phrase; @param detail NULL = omitted;
 * @param request_id NULL = omitted.
 */
sk_status sk__http_problem_format(
    sk_buf *out, int status, const char *title, const char *detail, const char *request_id);

/** True when @p s is an acceptable X-Request-Id: 1..128 of [A-Za-z0-9._:-]. */
bool sk__http_request_id_is_valid(const char *s);

/** True when @p name is a usable identity/file name: 1..64 of [A-Za-z0-9._-], not starting with
 * '.'. */
bool sk__pki_name_is_valid(const char *name);

/** Connections accepted so far by @p srv (tests count keep-alive reuse). */
uint64_t sk__http_server_connections_total(const sk_http_server *srv);

/**
 * A time bound from the environment variable @p env (milliseconds,
 * 100..3600000), as sk_http_server_start reads it; @p def when unset.
 * @return SK_OK, SK_EINVAL (malformed or out of range: *out is @p def).
 */
sk_status sk__http_env_timeout_ms(const char *env, int64_t def, int64_t *out);

/**
 * Tests: free the easy handles kept for reuse after @p easy_ms without a
 * transfer, and close the pooled connections after @p pool_ms (defaults 2 s
 * and the servers' idle bound). The client looks at least once a second.
 */
void sk__http_client_set_idle_ms(sk_http_client *c, int64_t easy_ms, int64_t pool_ms);
/** Tests: the easy handles the client keeps for reuse now, and the times it closed its pooled
 * connections for being idle. */
void sk__http_client_idle_counts(sk_http_client *c, size_t *n_idle_easy, uint64_t *n_pool_closes);

/** True when @p c was created with a TLS identity. */
bool sk__http_client_is_tls(const sk_http_client *c);

/*
 * A guest of the client thread: another event source served by the same loop
 * (the gateway's HTTP server), so that a proxied request never changes
 * thread. The loop polls @c fd for input together with its transfers, waits
 * at most timeout_ms(ctx) (negative = no limit), then calls run(ctx), which
 * must not block. sk_http_client_send called from run (or from a completion)
 * needs no wake-up: the loop takes the queue before it polls again.
 */
typedef struct sk__loop_guest {
    int fd;
    void (*run)(void *ctx);
    int64_t (*timeout_ms)(void *ctx);
    void *ctx;
} sk__loop_guest;

/** Run @p fn(ctx) on the client thread and wait for it (directly when called there). */
void sk__http_client_on_loop(sk_http_client *c, void (*fn)(void *ctx), void *ctx);
/** Have the loop run its guest soon although the guest's fd shows nothing (libmicrohttpd
 * without a thread of its own signals no resumed connection). Any thread. */
void sk__http_client_guest_wake(sk_http_client *c);
/**
 * Serve @p g on the client thread from now on (at most one guest: a second
 * aborts). NULL detaches it: when this returns, the loop calls the old guest
 * no more. The client must outlive its guest.
 * @return SK_OK, or SK_ESTATE when the client is being destroyed (not hosted).
 */
SK_NODISCARD sk_status sk__http_client_host(sk_http_client *c, const sk__loop_guest *g);

/**
 * Read the PEM file @p path (at most 64 KiB, must contain "-----BEGIN ")
 * into a new NUL-terminated string (owned, sk_free; wipe it first when it
 * may hold a key). @p what names the field in messages ("cert_file").
 * @return SK_OK, SK_EINVAL (empty path), SK_EIO, SK_EPROTO (not PEM), SK_ELIMIT, SK_ENOMEM.
 */
SK_NODISCARD sk_status sk__mesh_pem_read(const char *what, const char *path, char **out);

/** Connections cut by the slow-client deadlines of @p srv so far (tests). */
uint64_t sk__http_server_cut_total(const sk_http_server *srv);

/**
 * Check a request target before it is routed, on the raw (still
 * percent-encoded) form: the path must not hold an encoded NUL, '/' or '\\'
 * (%00, %2F, %5C) and the query no encoded NUL. On failure writes a
 * message for the client (at most @p reason_len bytes) and returns false.
 */
bool sk__http_target_raw_check(const char *raw, char *reason, size_t reason_len);
/**
 * Check a decoded path: starts with '/', valid UTF-8 (no overlong forms or
 * surrogates), no control characters, no "." or ".." segment.
 */
bool sk__http_path_check(const char *path, char *reason, size_t reason_len);
/** Strict UTF-8 check (RFC 3629: no overlong forms, no surrogates, at most U+10FFFF). */
bool sk__mesh_utf8_is_valid(const char *s, size_t len);

/* ---------------------------------------------------------------- conn_guard.c */

/**
 * One guarded connection, embedded in the caller's per-connection state. Its
 * fields belong to the guard (read them only through the guard's calls).
 */
typedef struct sk__guarded {
    struct sk__guarded *prev, *next;
    int fd;
    uint64_t ino, dev;   /* identity of the socket behind fd when added */
    int64_t deadline_ms; /* monotonic; 0 = none */
    bool is_cut;
    bool is_linked;
} sk__guarded;

/** A thread that shuts down the socket of a connection whose deadline passed. Thread-safe. */
typedef struct sk__conn_guard sk__conn_guard;

sk_status sk__conn_guard_create(sk__conn_guard **out);
/** Stop the thread. Entries still added are left alone (their sockets untouched). NULL-safe. */
void sk__conn_guard_destroy(sk__conn_guard *g);
/** Watch socket @p fd with @p deadline_ms (sk_time_mono_ms clock, 0 = none). */
void sk__conn_guard_add(sk__conn_guard *g, sk__guarded *e, int fd, int64_t deadline_ms);
/** Move the deadline of @p e (0 = none). No effect once it was cut. */
void sk__conn_guard_set(sk__conn_guard *g, sk__guarded *e, int64_t deadline_ms);
/**
 * Stop watching @p e; call before its socket is closed. NULL-safe, idempotent.
 * @return true when the guard had cut it.
 */
bool sk__conn_guard_remove(sk__conn_guard *g, sk__guarded *e);
/** Connections cut so far. */
uint64_t sk__conn_guard_cut_total(const sk__conn_guard *g);

#endif /* SK_MESH_INT_H */
