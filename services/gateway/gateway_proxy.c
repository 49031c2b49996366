/* SPDX-License-Identifier: MIT */
/*
 * gateway: forwarding. The public request is answered from the mesh
 * client's completion, so no gateway thread waits on a service.
 */
#include <stdio.h>
#include <string.h>

#include "gateway.h"

/* Percent-encode everything but RFC 3986 unreserved characters. */
static sk_status append_encoded(sk_buf *out, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    sk_status st = SK_OK;
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0' && st == SK_OK; p++) {
        unsigned char c = *p;
        bool is_unreserved = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                             c == '.' || c == '_' || c == '~';
        if (is_unreserved) {
            st = sk_buf_append(out, p, 1);
        } else {
            char enc[3] = { '%', hex[c >> 4], hex[c & 15] };
            st = sk_buf_append(out, enc, 3);
        }
    }
    return st;
}

sk_status gateway_target_path(const sk_sys_route *route, const svc_params *params, const char *query, sk_buf *out)
{
    sk_status st = SK_OK;
    const char *p = route->target;
    while (*p != '\0' && st == SK_OK) {
        if (*p == '{') {
            const char *end = strchr(p, '}');
            if (end == NULL) {
                return SK_FAIL(SK_EPROTO, "route target %s: unclosed {", route->target);
            }
            char name[64];
            snprintf(name, sizeof(name), "%.*s", (int)(end - p - 1), p + 1);
            const char *value = svc_params_get(params, name);
            if (value == NULL) {
                return SK_FAIL(SK_EPROTO, "route target %s: no parameter %s", route->target, name);
            }
            st = append_encoded(out, value);
            p = end + 1;
        } else {
            st = sk_buf_append(out, p, 1);
            p++;
        }
    }
    if (st == SK_OK && query != NULL && query[0] != '\0') {
        st = sk_buf_append_str(out, "?");
        if (st == SK_OK) {
            st = sk_buf_append_str(out, query);
        }
    }
    return st;
}

typedef struct query_ctx {
    sk_buf buf;
    sk_status st;
} query_ctx;

static void add_query_arg(const char *key, const char *value, void *ctx)
{
    query_ctx *q = ctx;
    if (q->st != SK_OK) {
        return;
    }
    if (q->buf.len > 0) {
        q->st = sk_buf_append_str(&q->buf, "&");
    }
    if (q->st == SK_OK) {
        q->st = append_encoded(&q->buf, key);
    }
    if (q->st == SK_OK && value != NULL) {
        q->st = sk_buf_append_str(&q->buf, "=");
        if (q->st == SK_OK) {
            q->st = append_encoded(&q->buf, value);
        }
    }
}

static void forwarded(sk_status st, const sk_http_response *resp, void *ctx)
{
    sk_http_req *req = ctx;
    if (st != SK_OK) {
        int status = st == SK_ETIMEDOUT ? 504 : (st == SK_EUNAVAILABLE ? 503 : 502);
        sk_http_req_respond_problem(req, status, status == 504 ? "Gateway Timeout" : (status == 503 ? "Service Unavailable" : "Bad Gateway"),
                                    "upstream: %s", sk_error_message());
        return;
    }
    char location[600], retry_after[64];
    const char *headers[3] = { NULL, NULL, NULL };
    size_t n = 0;
    if (resp->location != NULL) {
        snprintf(location, sizeof(location), "Location: %s", resp->location);
        headers[n++] = location;
    }
    if (resp->retry_after != NULL) {
        snprintf(retry_after, sizeof(retry_after), "Retry-After: %s", resp->retry_after);
        headers[n++] = retry_after;
    }
    sk_http_req_respond(req, resp->status, resp->content_type != NULL ? resp->content_type : "application/json",
                        (const char *)resp->body.ptr, resp->body.len, headers);
}

/* Header lines of the upstream request, owned. */
typedef struct header_list {
    char *lines[8];
    size_t n;
} header_list;

/* Add "name: value" to the upstream request; SK_ENOMEM only. */
static sk_status header_add(header_list *h, const char *name, const char *value)
{
    h->lines[h->n] = sk_asprintf("%s: %s", name, value);
    if (h->lines[h->n] == NULL) {
        return SK_FAIL(SK_ENOMEM, "copying header %s", name);
    }
    h->n++;
    return SK_OK;
}

/* Copy a request header to the upstream request when present; SK_ENOMEM only. */
static sk_status pass_header(sk_http_req *req, const char *name, header_list *h)
{
    const char *v = sk_http_req_header(req, name);
    return v != NULL ? header_add(h, name, v) : SK_OK;
}

static void header_list_fini(header_list *h)
{
    for (size_t i = 0; i < h->n; i++) {
        sk_free(h->lines[i]);
    }
    h->n = 0;
}

void gateway_forward(sk_http_req *req, const svc_params *params, void *ctx)
{
    gateway_route *route = ctx;
    query_ctx q = { .st = SK_OK };
    sk_buf path;
    char trace[SK_TRACEPARENT_LEN];
    header_list h = { .n = 0 };
    const char *headers[8];

    sk_buf_init(&q.buf, 8192);
    sk_buf_init(&path, 16384);
    sk_http_req_query_each(req, add_query_arg, &q);
    sk_status st = q.st;
    if (st == SK_OK) {
        st = gateway_target_path(route->decl, params, q.buf.data, &path);
    }
    if (st != SK_OK) {
        sk_buf_fini(&q.buf);
        sk_buf_fini(&path);
        sk_http_req_respond_problem(req, st == SK_ELIMIT ? 414 : 400, "Bad Request", "%s", sk_error_message());
        return;
    }
    /* Every header a service relies on goes through whole (no length cut: MHD bounds them). */
    static const char *const passed[] = { "Content-Type", "Idempotency-Key", "X-Consistency-Token" };
    for (size_t i = 0; i < 3 && st == SK_OK; i++) {
        st = pass_header(req, passed[i], &h);
    }
    /* The id this request is answered with (the client's, or ours when it sent none or a bad one),
     * so the service's problem body and logs name the same id as our X-Request-Id header. */
    if (st == SK_OK) {
        st = header_add(&h, "X-Request-Id", sk_http_req_id(req));
    }
    const char *parent = sk_http_req_header(req, "traceparent");
    sk_trace_child(parent != NULL ? sk_slice_from_str(parent) : (sk_slice){ NULL, 0 }, trace);
    if (st == SK_OK) {
        st = header_add(&h, "traceparent", trace);
    }
    if (st != SK_OK) {
        header_list_fini(&h);
        sk_buf_fini(&q.buf);
        sk_buf_fini(&path);
        sk_http_req_respond_problem(req, 500, "Internal Server Error", "out of memory");
        return;
    }
    for (size_t i = 0; i < h.n; i++) {
        headers[i] = h.lines[i];
    }
    headers[h.n] = NULL;

    sk_slice body = sk_http_req_body(req);
    sk_http_request out = {
        .method = sk_http_req_method(req),
        .url = path.data,
        .headers = headers,
        .body = (const char *)body.ptr,
        .body_len = body.len,
    };
    st = sk_upstream_send(route->upstream, &out, forwarded, req);
    header_list_fini(&h);
    sk_buf_fini(&q.buf);
    sk_buf_fini(&path);
    if (st != SK_OK) {
        sk_http_req_respond_problem(req, 503, "Service Unavailable", "%s: %s", route->decl->service,
                                    sk_error_message());
    }
}
