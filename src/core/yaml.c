/* SPDX-License-Identifier: MIT */
/*
 * YAML to jansson, for configuration files. libyaml's event parser drives a
 * small stack of open containers; nothing recursive, so depth is bounded by
 * SK_MAX_JSON_DEPTH. Anchors, aliases, tags (other than !!str) and multiple
 * documents are refused rather than half-supported: a config file should
 * read the same to every tool. Errors read "<origin>:<line>:<col>: problem".
 * Stateless and thread-safe.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <yaml.h>

#include "core/core_int.h"

#define STR_TAG "tag:yaml.org,2002:str"

typedef struct frame {
    json_t *node;  /* object or array being filled; owned until attached */
    char *key;     /* pending key of an object (owned); NULL while waiting for one */
    size_t key_len;
} frame;

typedef struct yaml_ctx {
    const char *origin;
    frame stack[SK_MAX_JSON_DEPTH];
    int depth;
    json_t *root;
} yaml_ctx;

static sk_status fail_at(sk_status st, const yaml_ctx *c, yaml_mark_t mark, const char *fmt, ...)
    SK_PRINTF(4, 5);

static sk_status fail_at(sk_status st, const yaml_ctx *c, yaml_mark_t mark, const char *fmt, ...)
{
    char problem[512];
    va_list ap;

    va_start(ap, fmt);
    (void)vsnprintf(problem, sizeof(problem), fmt, ap);
    va_end(ap);
    return SK_FAIL(st, "%s:%zu:%zu: %s", c->origin, mark.line + 1, mark.column + 1, problem);
}

/* Decimal integer with optional '-', no leading zeros. *is_int false: not an integer at all. */
static bool parse_int(const char *s, size_t len, bool *is_int, json_int_t *out)
{
    size_t i = 0;
    bool neg = false;
    uint64_t limit, acc = 0;

    *is_int = false;
    if (len > 0 && s[0] == '-') {
        neg = true;
        i = 1;
    }
    if (i == len) {
        return true;
    }
    for (size_t j = i; j < len; j++) {
        if (s[j] < '0' || s[j] > '9') {
            return true;
        }
    }
    if (s[i] == '0' && len - i > 1) {
        return true; /* "007": YAML 1.1 would read octal; keep it a string rather than guess */
    }
    *is_int = true;
    limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    for (; i < len; i++) {
        uint64_t d = (uint64_t)(s[i] - '0');
        if (acc > (limit - d) / 10) {
            return false;
        }
        acc = acc * 10 + d;
    }
    if (neg) {
        *out = acc == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(json_int_t)acc;
    } else {
        *out = (json_int_t)acc;
    }
    return true;
}

static bool word_is(const char *s, size_t len, const char *const *words)
{
    for (; *words != NULL; words++) {
        if (strlen(*words) == len && memcmp(s, *words, len) == 0) {
            return true;
        }
    }
    return false;
}

static sk_status scalar_value(const yaml_ctx *c, const yaml_event_t *ev, json_t **out)
{
    static const char *const trues[] = { "true", "True", "TRUE", NULL };
    static const char *const falses[] = { "false", "False", "FALSE", NULL };
    static const char *const nulls[] = { "null", "Null", "NULL", "~", NULL };
    const char *s = (const char *)ev->data.scalar.value;
    size_t len = ev->data.scalar.length;
    bool plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && ev->data.scalar.tag == NULL;
    bool is_int;
    json_int_t n = 0;

    *out = NULL;
    if (plain) {
        if (len == 0 || word_is(s, len, nulls)) {
            *out = json_null();
        } else if (word_is(s, len, trues)) {
            *out = json_true();
        } else if (word_is(s, len, falses)) {
            *out = json_false();
        } else if (!parse_int(s, len, &is_int, &n)) {
            return fail_at(SK_EPROTO, c, ev->start_mark,
                           "integer out of range (int64): %.40s%s", s, len > 40 ? "..." : "");
        } else if (is_int) {
            *out = json_integer(n);
            if (*out == NULL) {
                return SK_FAIL(SK_ENOMEM, "%s: allocating a YAML value", c->origin);
            }
        }
        if (*out != NULL) {
            return SK_OK;
        }
    }
    *out = json_stringn(s, len);
    if (*out == NULL) {
        return SK_FAIL(SK_ENOMEM, "%s: allocating a YAML value", c->origin);
    }
    return SK_OK;
}

/* Attach @p v (taken, even on failure) to the innermost open container or make it the root. */
static sk_status attach(yaml_ctx *c, json_t *v)
{
    frame *f;
    int rc;

    if (c->depth == 0) {
        json_decref(c->root);
        c->root = v;
        return SK_OK;
    }
    f = &c->stack[c->depth - 1];
    if (json_is_array(f->node)) {
        rc = json_array_append_new(f->node, v);
    } else {
        rc = json_object_setn_new(f->node, f->key, f->key_len, v);
        sk_free(f->key);
        f->key = NULL;
    }
    if (rc != 0) {
        return SK_FAIL(SK_ENOMEM, "%s: building the YAML document", c->origin);
    }
    return SK_OK;
}

static bool expecting_key(const yaml_ctx *c)
{
    return c->depth > 0 && json_is_object(c->stack[c->depth - 1].node) &&
           c->stack[c->depth - 1].key == NULL;
}

static sk_status check_node(const yaml_ctx *c, const yaml_event_t *ev, const yaml_char_t *anchor,
                            const yaml_char_t *tag, bool is_scalar)
{
    if (anchor != NULL) {
        return fail_at(SK_EPROTO, c, ev->start_mark, "anchors (&%.40s) are not supported",
                       (const char *)anchor);
    }
    if (tag != NULL && !(is_scalar && strcmp((const char *)tag, STR_TAG) == 0)) {
        return fail_at(SK_EPROTO, c, ev->start_mark, "tags (%.60s) are not supported",
                       (const char *)tag);
    }
    return SK_OK;
}

static sk_status on_scalar(yaml_ctx *c, const yaml_event_t *ev)
{
    sk_status st;
    json_t *v = NULL;
    const char *s = (const char *)ev->data.scalar.value;
    size_t len = ev->data.scalar.length;

    st = check_node(c, ev, ev->data.scalar.anchor, ev->data.scalar.tag, true);
    if (st != SK_OK) {
        return st;
    }
    if (expecting_key(c)) {
        frame *f = &c->stack[c->depth - 1];
        if (memchr(s, '\0', len) != NULL) {
            return fail_at(SK_EPROTO, c, ev->start_mark, "keys must not contain NUL characters");
        }
        if (json_object_getn(f->node, s, len) != NULL) {
            return fail_at(SK_EPROTO, c, ev->start_mark, "duplicate key \"%.80s\"", s);
        }
        f->key = sk_strndup(s, len);
        if (f->key == NULL) {
            return SK_FAIL(SK_ENOMEM, "%s: allocating a YAML key", c->origin);
        }
        f->key_len = len;
        return SK_OK;
    }
    st = scalar_value(c, ev, &v);
    if (st != SK_OK) {
        return st;
    }
    return attach(c, v);
}

static sk_status on_start(yaml_ctx *c, const yaml_event_t *ev, bool is_map)
{
    const yaml_char_t *anchor =
        is_map ? ev->data.mapping_start.anchor : ev->data.sequence_start.anchor;
    const yaml_char_t *tag = is_map ? ev->data.mapping_start.tag : ev->data.sequence_start.tag;
    sk_status st = check_node(c, ev, anchor, tag, false);
    json_t *node;

    if (st != SK_OK) {
        return st;
    }
    if (expecting_key(c)) {
        return fail_at(SK_EPROTO, c, ev->start_mark,
                       "mapping keys must be scalars, got a %s", is_map ? "mapping" : "sequence");
    }
    if (c->depth >= SK_MAX_JSON_DEPTH) {
        return fail_at(SK_ELIMIT, c, ev->start_mark, "nested deeper than %d levels",
                       SK_MAX_JSON_DEPTH);
    }
    node = is_map ? json_object() : json_array();
    if (node == NULL) {
        return SK_FAIL(SK_ENOMEM, "%s: allocating a YAML node", c->origin);
    }
    c->stack[c->depth].node = node;
    c->stack[c->depth].key = NULL;
    c->stack[c->depth].key_len = 0;
    c->depth++;
    return SK_OK;
}

static sk_status on_end(yaml_ctx *c)
{
    json_t *node;

    SK_ASSERT(c->depth > 0);
    if (c->depth <= 0) {
        return SK_FAIL(SK_EINTERNAL, "%s: unbalanced YAML events", c->origin);
    }
    c->depth--;
    node = c->stack[c->depth].node;
    sk_free(c->stack[c->depth].key); /* NULL unless the parser broke its own rules */
    c->stack[c->depth].node = NULL;
    c->stack[c->depth].key = NULL;
    return attach(c, node);
}

static sk_status parser_error(const yaml_ctx *c, const yaml_parser_t *p)
{
    if (p->error == YAML_MEMORY_ERROR) {
        return SK_FAIL(SK_ENOMEM, "%s: libyaml ran out of memory", c->origin);
    }
    if (p->context != NULL) {
        /* The classic trap: `{path: /orders/{id}}` is not YAML; braces end a flow plain scalar. */
        bool flow = strstr(p->context, "flow") != NULL;
        return fail_at(SK_EPROTO, c, p->problem_mark, "%s (%s)%s",
                       p->problem != NULL ? p->problem : "syntax error", p->context,
                       flow ? "; in flow style {...} or [...], quote values that contain "
                              "braces, brackets or commas, e.g. path: \"/orders/{id}\""
                            : "");
    }
    return fail_at(SK_EPROTO, c, p->problem_mark, "%s",
                   p->problem != NULL ? p->problem : "syntax error");
}

sk_status sk_yaml_parse(sk_slice text, const char *origin, json_t **out)
{
    sk_status st = SK_OK;
    yaml_parser_t parser;
    yaml_event_t ev;
    yaml_ctx c;
    bool done = false;
    int n_docs = 0;

    if (out == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_yaml_parse: out must not be NULL");
    }
    *out = NULL;
    if (origin == NULL) {
        origin = "<yaml>";
    }
    if (text.ptr == NULL && text.len > 0) {
        return SK_FAIL(SK_EINVAL, "sk_yaml_parse: text.ptr must not be NULL when len > 0");
    }
    if (text.len > SK_MAX_CONFIG_BYTES) {
        return SK_FAIL(SK_ELIMIT, "%s: %zu bytes is more than the limit of %u bytes", origin,
                       text.len, SK_MAX_CONFIG_BYTES);
    }
    memset(&c, 0, sizeof(c));
    c.origin = origin;
    if (yaml_parser_initialize(&parser) == 0) {
        return SK_FAIL(SK_ENOMEM, "%s: initialising libyaml", origin);
    }
    yaml_parser_set_input_string(&parser, text.len > 0 ? text.ptr : (const unsigned char *)"",
                                 text.len);
    while (!done && st == SK_OK) {
        if (yaml_parser_parse(&parser, &ev) == 0) {
            st = parser_error(&c, &parser);
            break;
        }
        switch (ev.type) {
        case YAML_STREAM_END_EVENT:
            done = true;
            break;
        case YAML_DOCUMENT_START_EVENT:
            if (++n_docs > 1) {
                st = fail_at(SK_EPROTO, &c, ev.start_mark,
                             "multiple documents are not supported");
            }
            break;
        case YAML_ALIAS_EVENT:
            st = fail_at(SK_EPROTO, &c, ev.start_mark, "aliases (*%.40s) are not supported",
                         (const char *)ev.data.alias.anchor);
            break;
        case YAML_SCALAR_EVENT:
            st = on_scalar(&c, &ev);
            break;
        case YAML_SEQUENCE_START_EVENT:
            st = on_start(&c, &ev, false);
            break;
        case YAML_MAPPING_START_EVENT:
            st = on_start(&c, &ev, true);
            break;
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT:
            st = on_end(&c);
            break;
        default:
            break; /* stream start, document end, no event */
        }
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&parser);
    if (st == SK_OK && c.root == NULL) {
        c.root = json_null(); /* an empty stream is an empty document */
    }
    if (st == SK_OK) {
        *out = c.root;
        c.root = NULL;
    }
    for (int i = 0; i < c.depth; i++) {
        json_decref(c.stack[i].node);
        sk_free(c.stack[i].key);
    }
    json_decref(c.root);
    return st;
}
