/* SPDX-License-Identifier: MIT */
/*
 * HTTP status helpers: the Skald status -> HTTP status mapping used at every
 * edge, reason phrases, RFC 9457 problem+json bodies and X-Request-Id
 * validation. Pure functions, thread-safe.
 */
#include "mesh/mesh_int.h"

#include <string.h>

int sk_http_status_for(sk_status st)
{
    switch (st) {
    case SK_OK:
        return 200;
    case SK_EINVAL:
    case SK_EPROTO:
        return 400;
    case SK_ENOTFOUND:
        return 404;
    case SK_EEXIST:
    case SK_ECONFLICT:
        return 409;
    case SK_ELIMIT:
        return 413;
    case SK_ETIMEDOUT:
        return 504;
    case SK_EUNAVAILABLE:
        return 503;
    case SK_EDENIED:
        return 403;
    default:
        return 500;
    }
}

sk_status sk__http_problem_format(
    sk_buf *out, int status, const char *title, const char *detail, const char *request_id)
{
    sk_status st = SK_OK;
    json_t *obj = NULL;

    if (out == NULL) {
        return SK_FAIL(SK_EINVAL, "sk__http_problem_format: out must not be NULL");
    }
    if (status < 100 || status > 599) {
        return SK_FAIL(SK_EINVAL, "sk__http_problem_format: status must be 100..599, got %d",
                       status);
    }
    obj = json_object();
    if (obj == NULL) {
        st = SK_FAIL(SK_ENOMEM, "sk__http_problem_format: allocating the object");
        goto out;
    }
    /* json_string refuses invalid UTF-8; fall back to a fixed text rather than fail the answer. */
    json_t *t = json_string(title != NULL ? title : sk_http_reason(status));
    if (json_object_set_new(obj, "type", json_string("about:blank")) != 0 ||
        json_object_set_new(obj, "title", t != NULL ? t : json_string(sk_http_reason(status))) !=
            0 ||
        json_object_set_new(obj, "status", json_integer(status)) != 0) {
        st = SK_FAIL(SK_ENOMEM, "sk__http_problem_format: building the object");
        goto out;
    }
    if (detail != NULL) {
        json_t *d = json_string(detail);
        if (d == NULL) {
            d = json_string("(detail was not valid UTF-8)");
        }
        if (json_object_set_new(obj, "detail", d) != 0) {
            st = SK_FAIL(SK_ENOMEM, "sk__http_problem_format: building the object");
            goto out;
        }
    }
    if (request_id != NULL) {
        json_t *r = json_string(request_id);
        if (r == NULL || json_object_set_new(obj, "request_id", r) != 0) {
            st = SK_FAIL(SK_ENOMEM, "sk__http_problem_format: building the object");
            goto out;
        }
    }
    st = sk_json_dump(obj, out);
out:
    json_decref(obj);
    return st;
}

bool sk__http_request_id_is_valid(const char *s)
{
    size_t n = 0;

    if (s == NULL) {
        return false;
    }
    for (; s[n] != '\0'; n++) {
        char c = s[n];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '_' || c == '.' || c == ':';
        if (!ok || n >= SK_MESH_MAX_REQUEST_ID) {
            return false;
        }
    }
    return n > 0;
}
