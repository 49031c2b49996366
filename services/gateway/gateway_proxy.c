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

/* Copy a request header to the upstream request when present. */
static void pass_header(sk_http_req *req, const char *name, char *slot, size_t slot_len, const char **list, size_t *n)
{
    const char *v = sk_http_req_header(req, name);
    if (v != NULL && strlen(v) < slot_len - strlen(name) - 3) {
        snprintf(slot, slot_len, "%s: %s", name, v);
        list[(*n)++] = slot;
    }
}

void gateway_forward(sk_http_req *req, const svc_params *params, void *ctx)
{
    gateway_route *route = ctx;
    query_ctx q = { .st = SK_OK };
    sk_buf path;
    char h_type[300], h_idem[600], h_token[600], h_req_id[300], h_trace[128];
    char trace[SK_TRACEPARENT_LEN];
    const char *headers[8];
    size_t n = 0;

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
    pass_header(req, "Content-Type", h_type, sizeof(h_type), headers, &n);
    pass_header(req, "Idempotency-Key", h_idem, sizeof(h_idem), headers, &n);
    pass_header(req, "X-Consistency-Token", h_token, sizeof(h_token), headers, &n);
    pass_header(req, "X-Request-Id", h_req_id, sizeof(h_req_id), headers, &n);
    const char *parent = sk_http_req_header(req, "traceparent");
    sk_trace_child(parent != NULL ? sk_slice_from_str(parent) : (sk_slice){ NULL, 0 }, trace);
    snprintf(h_trace, sizeof(h_trace), "traceparent: %s", trace);
    headers[n++] = h_trace;
    headers[n] = NULL;

    sk_slice body = sk_http_req_body(req);
    sk_http_request out = {
        .method = sk_http_req_method(req),
        .url = path.data,
        .headers = headers,
        .body = (const char *)body.ptr,
        .body_len = body.len,
    };
    st = sk_upstream_send(route->upstream, &out, forwarded, req);
    sk_buf_fini(&q.buf);
    sk_buf_fini(&path);
    if (st != SK_OK) {
        sk_http_req_respond_problem(req, 503, "Service Unavailable", "%s: %s", route->decl->service,
                                    sk_error_message());
    }
}
