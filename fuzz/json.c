/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: the JSON helpers every HTTP body and message payload goes
 * through (src/core/json.c): sk_json_parse with its UTF-8 and depth checks,
 * sk_json_parse_object, the typed readers sk_json_get_string/get_int on
 * every member, sk_json_dump, and the allocation-free parser of flat
 * string objects (src/core/json_flat.c). Properties: an accepted document
 * is at most SK_MAX_JSON_DEPTH deep, dumps and re-parses to an equal value
 * whose dump is the same text, a string the reader returns is valid UTF-8
 * without NUL, and the flat parser accepts exactly the objects of strings
 * that sk_json_parse_object accepts, with the same members. And
 * sk_json_parse (our own one-pass parser, src/core/json_parse.c) against
 * the reference it replaced, jansson's json_loadb behind the UTF-8 and
 * depth checks: the same verdict on every input, equal trees with the same
 * member order. And sk_json_dump (our own writer, src/core/json_dump.c)
 * against jansson's json_dumps: the same text for every accepted document.
 */
#include <string.h>

#include "core/core_int.h"
#include "fuzz.h"

static int depth_of(const json_t *v)
{
    int max = 0;
    size_t i;
    const char *key;
    json_t *child;

    if (json_is_object(v)) {
        json_object_foreach ((json_t *)(uintptr_t)v, key, child) {
            int d = depth_of(child);
            max = d > max ? d : max;
        }
        return max + 1;
    }
    if (json_is_array(v)) {
        json_array_foreach (v, i, child) {
            int d = depth_of(child);
            max = d > max ? d : max;
        }
        return max + 1;
    }
    return 0;
}

static void read_members(const json_t *obj, int64_t min, int64_t max)
{
    const char *key;
    json_t *v;

    json_object_foreach ((json_t *)(uintptr_t)obj, key, v) {
        const char *s = NULL;
        int64_t n = 0;
        if (sk_json_get_string(obj, key, 0, 1000, &s) == SK_OK) {
            size_t len = json_string_length(v);
            SK_FUZZ_CHECK(s != NULL && memchr(s, '\0', len) == NULL);
            SK_FUZZ_CHECK(sk__utf8_is_valid((sk_slice){ (const uint8_t *)s, len }, NULL));
        } else {
            SK_FUZZ_CHECK(s == NULL);
        }
        if (sk_json_get_int(obj, key, min, max, &n) == SK_OK) {
            SK_FUZZ_CHECK(json_is_integer(v) && n >= min && n <= max);
        } else {
            SK_FUZZ_CHECK(n == 0);
        }
    }
}

/* Members the flat parser may return; more is SK_ELIMIT, which the check allows for. */
#define FLAT_MAX 16

/* True when @p obj is an object with at most FLAT_MAX members, all strings. */
static bool is_flat_strings(const json_t *obj)
{
    const char *key;
    json_t *v;

    if (!json_is_object(obj) || json_object_size(obj) > FLAT_MAX) {
        return false;
    }
    json_object_foreach ((json_t *)(uintptr_t)obj, key, v) {
        if (!json_is_string(v)) {
            return false;
        }
    }
    return true;
}

/* The flat parser against jansson: same verdict, same members. */
static void check_flat(sk_slice in, const json_t *obj)
{
    sk_json_member m[FLAT_MAX];
    size_t n = 0;
    char *scratch = sk_malloc(in.len + 1);

    if (scratch == NULL) {
        return;
    }
    sk_status st = sk_json_parse_flat_strings(in, scratch, in.len + 1, m, FLAT_MAX, &n);
    SK_FUZZ_CHECK((st == SK_OK) == is_flat_strings(obj));
    if (st == SK_OK) {
        SK_FUZZ_CHECK(n == json_object_size(obj));
        for (size_t i = 0; i < n; i++) {
            json_t *v = json_object_get(obj, (const char *)m[i].name.ptr);
            SK_FUZZ_CHECK(strlen((const char *)m[i].name.ptr) == m[i].name.len);
            SK_FUZZ_CHECK(v != NULL && json_string_length(v) == m[i].value.len &&
                          memcmp(json_string_value(v), m[i].value.ptr, m[i].value.len) == 0);
            SK_FUZZ_CHECK(m[i].value.ptr[m[i].value.len] == '\0');
        }
    } else {
        SK_FUZZ_CHECK(n == 0);
        SK_FUZZ_CHECK(st == SK_EPROTO || st == SK_ELIMIT);
    }
    sk_free(scratch);
}

/* The depth check sk_json_parse ran before jansson when jansson parsed: nesting outside strings. */
static bool too_deep(sk_slice text, int max_depth)
{
    bool in_string = false;
    int depth = 0;

    for (size_t i = 0; i < text.len; i++) {
        uint8_t c = text.ptr[i];
        if (in_string) {
            if (c == '\\') {
                i++; /* the escaped character cannot end the string */
            } else if (c == '"') {
                in_string = false;
            }
            continue;
        }
        if (c == '"') {
            in_string = true;
        } else if (c == '[' || c == '{') {
            if (++depth > max_depth) {
                return true;
            }
        } else if ((c == ']' || c == '}') && depth > 0) {
            depth--;
        }
    }
    return false;
}

/*
 * What sk_json_parse accepted before it had its own parser; NULL when
 * refused, with *is_oom set when for want of memory.
 */
static json_t *reference_parse(sk_slice in, bool *is_oom)
{
    json_error_t jerr;
    json_t *v;

    *is_oom = false;
    /*
     * A NUL byte is JSON nowhere, but jansson's reader drops one that
     * follows a token it had to look past (a number, a literal): json_loadb
     * accepts {"a":1<NUL>}. sk_json_parse refuses it.
     */
    if (in.len > 0 && memchr(in.ptr, '\0', in.len) != NULL) {
        return NULL;
    }
    if (!sk__utf8_is_valid(in, NULL) || too_deep(in, SK_MAX_JSON_DEPTH)) {
        return NULL;
    }
    v = json_loadb(in.len > 0 ? (const char *)in.ptr : "", in.len,
                   JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    *is_oom = v == NULL && json_error_code(&jerr) == json_error_out_of_memory;
    return v;
}

/* sk_json_parse's verdict and tree against json_loadb's. */
static void check_reference(sk_slice in, sk_status st, const json_t *root)
{
    bool is_oom = false;
    json_t *ref = reference_parse(in, &is_oom);

    if (st != SK_ENOMEM && !is_oom) {
        SK_FUZZ_CHECK((st == SK_OK) == (ref != NULL));
    }
    if (st == SK_OK && ref != NULL) {
        char *a = sk_json_dumps(root);
        char *b = sk_json_dumps(ref);
        SK_FUZZ_CHECK(json_equal(root, ref));
        SK_FUZZ_CHECK(a == NULL || b == NULL || strcmp(a, b) == 0);
        sk_free(a);
        sk_free(b);
    }
    json_decref(ref);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sk_slice in = { data, size };
    json_t *root = NULL;
    json_t *again = NULL;
    json_t *obj = NULL;
    char *text = NULL;
    char *text2 = NULL;
    char *reference_text = NULL;

    sk_fuzz_setup();

    sk_status st = sk_json_parse(in, &root);
    check_reference(in, st, root);
    if (st != SK_OK && st != SK_ENOMEM) {
        check_flat(in, NULL); /* what jansson refuses, the flat parser refuses too */
    }
    if (st != SK_OK) {
        SK_FUZZ_CHECK(root == NULL);
        SK_FUZZ_CHECK(st == SK_EPROTO || st == SK_ELIMIT || st == SK_ENOMEM);
        goto out;
    }
    SK_FUZZ_CHECK(depth_of(root) <= SK_MAX_JSON_DEPTH);
    text = sk_json_dumps(root);
    if (text == NULL) {
        goto out;
    }
    /* sk_json_dump (src/core/json_dump.c) writes exactly jansson's compact text. */
    reference_text = json_dumps(root, JSON_COMPACT | JSON_ENCODE_ANY);
    SK_FUZZ_CHECK(reference_text != NULL && strcmp(text, reference_text) == 0);
    SK_FUZZ_CHECK(sk_json_parse(sk_slice_from_str(text), &again) == SK_OK);
    SK_FUZZ_CHECK(json_equal(root, again));
    text2 = sk_json_dumps(again);
    SK_FUZZ_CHECK(text2 != NULL && strcmp(text, text2) == 0);

    st = sk_json_parse_object(in, &obj);
    SK_FUZZ_CHECK((st == SK_OK) == json_is_object(root));
    if (st != SK_ENOMEM) {
        check_flat(in, obj); /* NULL (refused) when the document is no object */
    }
    if (st == SK_OK) {
        read_members(obj, -1000, 1000);
        read_members(obj, INT64_MIN, INT64_MAX);
    }
out:
    sk_free(text);
    sk_free(text2);
    sk_free(reference_text); /* jansson allocates with sk_malloc */
    json_decref(root);
    json_decref(again);
    json_decref(obj);
    sk_error_clear();
    return 0;
}
