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

/**
 * The parts of an upstream's policy applied today. The whole policy object
 * is kept (sk__upstream_policy.raw) for outlier detection, pool limits,
 * retries and fault injection, which plug in here later.
 */
typedef struct sk__upstream_policy {
    int64_t timeout_ms;         /* "timeout"; 0 = none */
    int retries_attempts;       /* "retries.attempts"; parsed, not applied yet */
    int64_t per_try_timeout_ms; /* "retries.perTryTimeout"; parsed, not applied yet */
    json_t *raw;                /* deep copy of the policy object, or NULL */
} sk__upstream_policy;

/**
 * Validate and read @p policy (NULL = defaults). Unknown members are kept
 * for later work, members read here must have the right type.
 * @return SK_OK, SK_EPROTO naming the field, SK_ENOMEM.
 */
sk_status sk__upstream_policy_parse(const json_t *policy, sk__upstream_policy *out);
void sk__upstream_policy_fini(sk__upstream_policy *p);

/** Recommended reason phrase for @p status ("Not Found"), "Unknown" otherwise. */
const char *sk__http_reason(int status);

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

/** True when @p c was created with a TLS identity. */
bool sk__http_client_is_tls(const sk_http_client *c);

#endif /* SK_MESH_INT_H */
