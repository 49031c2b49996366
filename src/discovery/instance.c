/* SPDX-License-Identifier: MIT */
/*
 * The value of a registry entry: a JSON object naming one instance, with
 * its validation. Decoding treats the bytes as untrusted input (anyone with
 * access to the bucket can put one): every field is checked, errors name
 * the field, and nothing is assumed NUL-terminated.
 */
#include <limits.h>
#include <string.h>

#include "discovery/discovery_int.h"

/* Longest excerpt of a bad value quoted in an error message. */
#define QUOTE_MAX 64

bool sk__discovery_name_is_valid(const char *s, size_t len)
{
    if (s == NULL || len == 0 || len > SK_DISCOVERY_MAX_NAME) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) {
            return false;
        }
    }
    return true;
}

static bool is_host_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '-' || c == '_';
}

static bool is_ipv6_char(char c)
{
    return (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || (c >= '0' && c <= '9') || c == ':' ||
           c == '.';
}

bool sk__discovery_address_is_valid(const char *s, size_t len)
{
    size_t colon;
    size_t host_len;
    long port = 0;

    if (s == NULL || len < 3 || len > SK_DISCOVERY_MAX_ADDRESS) {
        return false;
    }
    /* The port follows the last colon; an IPv6 host has colons inside brackets. */
    colon = len;
    while (colon > 0 && s[colon - 1] != ':') {
        colon--;
    }
    if (colon == 0) {
        return false;
    }
    colon--; /* index of the ':' */
    host_len = colon;
    if (host_len == 0) {
        return false;
    }
    if (s[0] == '[') {
        if (host_len < 3 || s[host_len - 1] != ']') {
            return false;
        }
        for (size_t i = 1; i + 1 < host_len; i++) {
            if (!is_ipv6_char(s[i])) {
                return false;
            }
        }
    } else {
        for (size_t i = 0; i < host_len; i++) {
            if (!is_host_char(s[i])) {
                return false;
            }
        }
    }
    size_t port_len = len - colon - 1;
    if (port_len == 0 || port_len > 5 || s[colon + 1] == '0') {
        return false;
    }
    for (size_t i = colon + 1; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return false;
        }
        port = port * 10 + (s[i] - '0');
    }
    return port >= 1 && port <= 65535;
}

sk_status sk__instance_validate(const sk_instance *inst)
{
    if (inst == NULL) {
        return SK_FAIL(SK_EINVAL, "instance must not be NULL");
    }
    if (inst->service == NULL ||
        !sk__discovery_name_is_valid(inst->service, strlen(inst->service))) {
        return SK_FAIL(SK_EINVAL, "service: expected [a-z0-9-]{1,%d}, got \"%.*s\"",
                       SK_DISCOVERY_MAX_NAME, QUOTE_MAX,
                       inst->service != NULL ? inst->service : "(null)");
    }
    if (inst->instance == NULL ||
        !sk__discovery_name_is_valid(inst->instance, strlen(inst->instance))) {
        return SK_FAIL(SK_EINVAL, "instance: expected [a-z0-9-]{1,%d}, got \"%.*s\"",
                       SK_DISCOVERY_MAX_NAME, QUOTE_MAX,
                       inst->instance != NULL ? inst->instance : "(null)");
    }
    if (inst->address == NULL ||
        !sk__discovery_address_is_valid(inst->address, strlen(inst->address))) {
        return SK_FAIL(SK_EINVAL,
                       "address: expected \"host:port\" with port 1..65535, got \"%.*s\"",
                       QUOTE_MAX, inst->address != NULL ? inst->address : "(null)");
    }
    if (inst->pid < 0) {
        return SK_FAIL(SK_EINVAL, "pid: expected >= 0, got %d", inst->pid);
    }
    return SK_OK;
}

sk_status sk__instance_encode(const sk_instance *inst, char **out, size_t *len)
{
    sk_status st = SK_OK;
    json_t *obj = NULL;
    char *text = NULL;

    if (out == NULL || len == NULL) {
        return SK_FAIL(SK_EINVAL, "sk__instance_encode: out and len must not be NULL");
    }
    *out = NULL;
    *len = 0;
    st = sk__instance_validate(inst);
    if (st != SK_OK) {
        goto out;
    }
    if (inst->pid <= 0) {
        st = SK_FAIL(SK_EINVAL, "pid: expected 1..%d, got %d", INT_MAX, inst->pid);
        goto out;
    }
    if (inst->heartbeat_ms < 0) {
        st = SK_FAIL(SK_EINVAL, "heartbeat_ms: expected >= 0, got %lld",
                     (long long)inst->heartbeat_ms);
        goto out;
    }
    obj = json_pack("{s:s, s:s, s:s, s:b, s:I, s:I}", "service", inst->service, "instance",
                    inst->instance, "address", inst->address, "ready", inst->is_ready ? 1 : 0,
                    "pid", (json_int_t)inst->pid, "heartbeat_ms", (json_int_t)inst->heartbeat_ms);
    if (obj == NULL) {
        /* The fields were validated above, so only allocation can fail here. */
        st = SK_FAIL(SK_ENOMEM, "encoding instance value");
        goto out;
    }
    text = sk_json_dumps(obj);
    if (text == NULL) {
        st = SK_FAIL(SK_ENOMEM, "encoding instance value");
        goto out;
    }
    *len = strlen(text);
    *out = text;
    text = NULL;
out:
    sk_free(text);
    json_decref(obj);
    return st;
}

/* Read required string member @p key that must satisfy @p valid; copy it into @p dst. */
static sk_status get_checked_string(const json_t *obj,
                                    const char *key,
                                    bool (*valid)(const char *, size_t),
                                    const char *expected,
                                    const char **dst)
{
    const json_t *v = json_object_get(obj, key);
    const char *s;
    size_t len;
    char *copy;

    if (v == NULL) {
        return SK_FAIL(SK_EPROTO, "%s: missing, expected %s", key, expected);
    }
    if (!json_is_string(v)) {
        return SK_FAIL(SK_EPROTO, "%s: expected %s, got a JSON %s", key, expected,
                       json_is_object(v)    ? "object"
                       : json_is_array(v)   ? "array"
                       : json_is_number(v)  ? "number"
                       : json_is_boolean(v) ? "boolean"
                                            : "null");
    }
    s = json_string_value(v);
    len = json_string_length(v);
    /* The validators accept printable ASCII only, so quoting a prefix is safe. */
    if (!valid(s, len)) {
        size_t q = 0;
        while (q < len && q < QUOTE_MAX && s[q] >= 0x20 && s[q] < 0x7f && s[q] != '"') {
            q++;
        }
        return SK_FAIL(SK_EPROTO, "%s: expected %s, got \"%.*s%s\"", key, expected, (int)q, s,
                       q < len ? "..." : "");
    }
    copy = sk_strndup(s, len);
    if (copy == NULL) {
        return SK_FAIL(SK_ENOMEM, "copying %s", key);
    }
    *dst = copy;
    return SK_OK;
}

/* Read required integer member @p key in [min, max]. */
static sk_status
get_checked_int(const json_t *obj, const char *key, int64_t min, int64_t max, int64_t *dst)
{
    const json_t *v = json_object_get(obj, key);

    if (v == NULL) {
        return SK_FAIL(SK_EPROTO, "%s: missing, expected an integer %lld..%lld", key,
                       (long long)min, (long long)max);
    }
    if (!json_is_integer(v)) {
        return SK_FAIL(SK_EPROTO, "%s: expected an integer %lld..%lld, got a non-integer", key,
                       (long long)min, (long long)max);
    }
    json_int_t i = json_integer_value(v);
    if (i < min || i > max) {
        return SK_FAIL(SK_EPROTO, "%s: expected an integer %lld..%lld, got %lld", key,
                       (long long)min, (long long)max, (long long)i);
    }
    *dst = (int64_t)i;
    return SK_OK;
}

sk_status sk__instance_decode(sk_slice value, sk_instance *out)
{
    sk_status st = SK_OK;
    json_t *root = NULL;
    sk_instance inst;
    const json_t *ready;
    int64_t pid = 0;
    int64_t heartbeat_ms = 0;

    memset(&inst, 0, sizeof(inst));
    if (out == NULL) {
        return SK_FAIL(SK_EINVAL, "sk__instance_decode: out must not be NULL");
    }
    memset(out, 0, sizeof(*out));
    if (value.ptr == NULL && value.len != 0) {
        return SK_FAIL(SK_EINVAL, "sk__instance_decode: value.ptr is NULL with len %zu", value.len);
    }
    if (value.len > SK__DISCOVERY_MAX_VALUE) {
        return SK_FAIL(SK_ELIMIT, "instance value: %zu bytes, at most %d accepted", value.len,
                       SK__DISCOVERY_MAX_VALUE);
    }
    if (value.len == 0) {
        st = SK_FAIL(SK_EPROTO, "empty, expected a JSON object");
        goto out;
    }
    st = sk_json_parse_object(value, &root);
    if (st != SK_OK) {
        goto out;
    }
    st = get_checked_string(root, "service", sk__discovery_name_is_valid, "[a-z0-9-]{1,64}",
                            &inst.service);
    if (st != SK_OK) {
        goto out;
    }
    st = get_checked_string(root, "instance", sk__discovery_name_is_valid, "[a-z0-9-]{1,64}",
                            &inst.instance);
    if (st != SK_OK) {
        goto out;
    }
    st = get_checked_string(root, "address", sk__discovery_address_is_valid,
                            "\"host:port\" with port 1..65535", &inst.address);
    if (st != SK_OK) {
        goto out;
    }
    ready = json_object_get(root, "ready");
    if (ready == NULL || !json_is_boolean(ready)) {
        st = SK_FAIL(SK_EPROTO, "ready: %s, expected true or false",
                     ready == NULL ? "missing" : "not a boolean");
        goto out;
    }
    inst.is_ready = json_is_true(ready);
    st = get_checked_int(root, "pid", 1, INT_MAX, &pid);
    if (st != SK_OK) {
        goto out;
    }
    inst.pid = (int)pid;
    st = get_checked_int(root, "heartbeat_ms", 0, INT64_MAX, &heartbeat_ms);
    if (st != SK_OK) {
        goto out;
    }
    inst.heartbeat_ms = heartbeat_ms;
    *out = inst; /* ownership of the strings moves to the caller */
    memset(&inst, 0, sizeof(inst));
out:
    if (st != SK_OK) {
        st = SK_WRAP(st, "instance value");
    }
    sk__instance_fini(&inst);
    json_decref(root);
    return st;
}

sk_status sk__instance_copy(sk_instance *dst, const sk_instance *src)
{
    if (dst == NULL || src == NULL) {
        return SK_FAIL(SK_EINVAL, "sk__instance_copy: dst and src must not be NULL");
    }
    memset(dst, 0, sizeof(*dst));
    dst->service = sk_strdup(src->service != NULL ? src->service : "");
    dst->instance = sk_strdup(src->instance != NULL ? src->instance : "");
    dst->address = sk_strdup(src->address != NULL ? src->address : "");
    if (dst->service == NULL || dst->instance == NULL || dst->address == NULL) {
        sk__instance_fini(dst);
        return SK_FAIL(SK_ENOMEM, "copying instance");
    }
    dst->is_ready = src->is_ready;
    dst->pid = src->pid;
    dst->heartbeat_ms = src->heartbeat_ms;
    return SK_OK;
}

void sk__instance_fini(sk_instance *inst)
{
    if (inst == NULL) {
        return;
    }
    /* The public struct has const pointers because callbacks only borrow them;
     * the copies made here are owned and freed here. */
    sk_free((void *)(uintptr_t)inst->service);
    sk_free((void *)(uintptr_t)inst->instance);
    sk_free((void *)(uintptr_t)inst->address);
    memset(inst, 0, sizeof(*inst));
}
