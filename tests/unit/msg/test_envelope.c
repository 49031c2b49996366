/* SPDX-License-Identifier: MIT */
/* Unit tests for src/msg/envelope.c: init, validation, header and JSON codecs, RFC 3339. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <string.h>

#include "msg/msg_int.h"
#include "sk_test.h"

#define TRACE "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
#define UUID  "01890a5d-ac96-774b-bcce-b302099a8057"

/* A valid header set; tests change one entry at a time. */
typedef struct hdrset {
    sk__msg_header h[16];
    size_t n;
} hdrset;

static void hdr_add(hdrset *s, const char *name, const char *value)
{
    s->h[s->n].name = sk_slice_from_str(name);
    s->h[s->n].value = sk_slice_from_str(value);
    s->n++;
}

static void hdrs_valid(hdrset *s)
{
    memset(s, 0, sizeof(*s));
    hdr_add(s, "ce-specversion", "1.0");
    hdr_add(s, "ce-id", UUID);
    hdr_add(s, "ce-type", "OrderCreated");
    hdr_add(s, "ce-source", "order");
    hdr_add(s, "ce-time", "2026-11-25T10:00:00.123Z");
    hdr_add(s, "ce-subject", "order-42");
    hdr_add(s, "ce-schemaversion", "3");
    hdr_add(s, "traceparent", TRACE);
}

/* Replace the value of header @p name. */
static void hdr_set(hdrset *s, const char *name, const char *value)
{
    for (size_t i = 0; i < s->n; i++) {
        if (sk_slice_eq_str(s->h[i].name, name)) {
            s->h[i].value = sk_slice_from_str(value);
            return;
        }
    }
    hdr_add(s, name, value);
}

static void hdr_del(hdrset *s, const char *name)
{
    for (size_t i = 0; i < s->n; i++) {
        if (sk_slice_eq_str(s->h[i].name, name)) {
            s->h[i] = s->h[s->n - 1];
            s->n--;
            return;
        }
    }
}

static void valid_env(sk_envelope *env)
{
    sk_envelope_init(env, "OrderCreated", "order", "order-42", TRACE);
}

/* ---------------------------------------------------------------- init */

static void test_envelope_init_fills_fields(void **state)
{
    sk_envelope env;
    (void)state;
    int64_t before = sk_time_now_ms();
    sk_envelope_init(&env, "T", "S", "X", NULL);
    assert_true(sk_uuid_is_valid(sk_slice_from_str(env.id)));
    assert_string_equal(env.type, "T");
    assert_string_equal(env.source, "S");
    assert_string_equal(env.subject, "X");
    assert_true(env.time_ms >= before && env.time_ms <= sk_time_now_ms());
    assert_int_equal(env.schema_version, 1);
    assert_true(sk_trace_is_valid(sk_slice_from_str(env.traceparent)));
    assert_int_equal(env.saga_step, -1);
    assert_null(env.reply_to);
    assert_int_equal(sk__envelope_validate(&env), SK_OK);
}

static void test_envelope_init_continues_trace(void **state)
{
    sk_envelope env;
    (void)state;
    sk_envelope_init(&env, "T", "S", "X", TRACE);
    assert_memory_equal(env.traceparent, TRACE, 35); /* "00-" + trace id */
    assert_string_not_equal(env.traceparent, TRACE);  /* a new span id */
    sk_envelope_init(&env, "T", "S", "X", "garbage");
    assert_true(sk_trace_is_valid(sk_slice_from_str(env.traceparent)));
}

static void test_envelope_init_unique_ids(void **state)
{
    sk_envelope a, b;
    (void)state;
    sk_envelope_init(&a, "T", "S", "X", NULL);
    sk_envelope_init(&b, "T", "S", "X", NULL);
    assert_string_not_equal(a.id, b.id);
    sk_envelope_init(NULL, "T", "S", "X", NULL); /* no crash */
}

/* ---------------------------------------------------------------- validate */

static void test_envelope_validate_errors(void **state)
{
    char big[SK_ENVELOPE_MAX_ATTR + 2];
    sk_envelope env;
    (void)state;

    SK_TEST_ASSERT_ERR(sk__envelope_validate(NULL), SK_EINVAL, "env must not be NULL");
    valid_env(&env);
    env.type = NULL;
    SK_TEST_ASSERT_ERR(sk__envelope_validate(&env), SK_EINVAL, "type must not be NULL");
    valid_env(&env);
    env.source = "";
    SK_TEST_ASSERT_ERR(sk__envelope_validate(&env), SK_EINVAL, "source");
    valid_env(&env);
    env.subject = "has space";
    SK_TEST_ASSERT_ERR(sk__envelope_validate(&env), SK_EINVAL, "subject");
    memset(big, 'a', sizeof(big));
    big[SK_ENVELOPE_MAX_ATTR] = '\0';
    valid_env(&env);
    env.type = big; /* exactly the maximum */
    assert_int_equal(sk__envelope_validate(&env), SK_OK);
    big[SK_ENVELOPE_MAX_ATTR] = 'a';
    big[SK_ENVELOPE_MAX_ATTR + 1] = '\0';
    SK_TEST_ASSERT_ERR(sk__envelope_validate(&env), SK_EINVAL, "type");
    valid_env(&env);
    snprintf(env.id, sizeof(env.id), "%s", "not-a-uuid");
    SK_TEST_ASSERT_ERR(sk__envelope_validate(&env), SK_EINVAL, "id");
    valid_env(&env);
    env.schema_version = 0;
    SK_TEST_ASSERT_ERR(sk__envelope_validate(&env), SK_EINVAL, "schema_version");
    env.schema_version = SK__MAX_SCHEMA_VERSION + 1;
    SK_TEST_ASSERT_ERR(sk__envelope_validate(&env), SK_EINVAL, "schema_version");
    valid_env(&env);
    env.time_ms = -1;
    SK_TEST_ASSERT_ERR(sk__envelope_validate(&env), SK_EINVAL, "time_ms");
    valid_env(&env);
    env.saga_step = -2;
    SK_TEST_ASSERT_ERR(sk__envelope_validate(&env), SK_EINVAL, "saga_step");
    valid_env(&env);
    env.reply_to = "";
    SK_TEST_ASSERT_ERR(sk__envelope_validate(&env), SK_EINVAL, "reply_to");
    valid_env(&env);
    snprintf(env.traceparent, sizeof(env.traceparent), "%s", "00-bad");
    SK_TEST_ASSERT_ERR(sk__envelope_validate(&env), SK_EINVAL, "traceparent");
}

/* ---------------------------------------------------------------- decode */

static void test_envelope_decode_valid(void **state)
{
    sk__envelope_buf buf;
    sk_envelope env;
    hdrset s;
    (void)state;

    hdrs_valid(&s);
    assert_int_equal(sk__envelope_decode(s.h, s.n, &env, &buf), SK_OK);
    assert_string_equal(env.id, UUID);
    assert_string_equal(env.type, "OrderCreated");
    assert_string_equal(env.source, "order");
    assert_string_equal(env.subject, "order-42");
    assert_int_equal(env.time_ms, 1795600800123LL);
    assert_int_equal(env.schema_version, 3);
    assert_string_equal(env.traceparent, TRACE);
    assert_int_equal(env.saga_step, -1);
    assert_null(env.reply_to);

    hdr_add(&s, "ce-sagastep", "1000");
    hdr_add(&s, "ce-replyto", "order.replies.CreateOrderSaga");
    hdr_add(&s, "X-Other", "ignored");
    assert_int_equal(sk__envelope_decode(s.h, s.n, &env, &buf), SK_OK);
    assert_int_equal(env.saga_step, 1000);
    assert_string_equal(env.reply_to, "order.replies.CreateOrderSaga");
}

static void test_envelope_decode_names_ignore_case(void **state)
{
    sk__envelope_buf buf;
    sk_envelope env;
    hdrset s;
    (void)state;

    hdrs_valid(&s);
    s.h[2].name = sk_slice_from_str("CE-Type");
    assert_int_equal(sk__envelope_decode(s.h, s.n, &env, &buf), SK_OK);
    assert_string_equal(env.type, "OrderCreated");
    hdr_add(&s, "ce-type", "Again");
    SK_TEST_ASSERT_ERR(sk__envelope_decode(s.h, s.n, &env, &buf), SK_EPROTO,
                       "ce-type: given more than once");
}

static void test_envelope_decode_missing(void **state)
{
    static const char *const required[] = { "ce-specversion", "ce-id",      "ce-type",
                                            "ce-source",      "ce-time",    "ce-subject",
                                            "ce-schemaversion" };
    sk__envelope_buf buf;
    sk_envelope env;
    hdrset s;
    (void)state;

    for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++) {
        char want[64];
        hdrs_valid(&s);
        hdr_del(&s, required[i]);
        snprintf(want, sizeof(want), "%s: missing", required[i]);
        SK_TEST_ASSERT_ERR(sk__envelope_decode(s.h, s.n, &env, &buf), SK_EPROTO, want);
    }
    SK_TEST_ASSERT_ERR(sk__envelope_decode(NULL, 0, &env, &buf), SK_EPROTO, "missing");
}

static void test_envelope_decode_bad_values(void **state)
{
    static const struct {
        const char *name, *value, *msg;
    } cases[] = {
        { "ce-specversion", "0.3", "ce-specversion" },
        { "ce-id", "1234", "ce-id: expected a UUID" },
        { "ce-id", "01890a5d-ac96-774b-bcce-b302099a805g", "ce-id" },
        { "ce-type", "", "ce-type" },
        { "ce-type", "with space", "ce-type" },
        { "ce-type", "tab\there", "ce-type" },
        { "ce-source", "caf\xc3\xa9", "ce-source" },
        { "ce-subject", "", "ce-subject" },
        { "ce-time", "2026-11-25", "ce-time" },
        { "ce-time", "2026-02-30T00:00:00Z", "ce-time" },
        { "ce-schemaversion", "0", "ce-schemaversion" },
        { "ce-schemaversion", "1000001", "ce-schemaversion" },
        { "ce-schemaversion", "-1", "ce-schemaversion" },
        { "ce-schemaversion", "1.5", "ce-schemaversion" },
        { "ce-schemaversion", "", "ce-schemaversion" },
        { "ce-sagastep", "2147483648", "ce-sagastep" },
        { "ce-sagastep", "x", "ce-sagastep" },
        { "ce-replyto", "", "ce-replyto" },
    };
    sk__envelope_buf buf;
    sk_envelope env;
    hdrset s;
    (void)state;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        hdrs_valid(&s);
        hdr_set(&s, cases[i].name, cases[i].value);
        SK_TEST_ASSERT_ERR(sk__envelope_decode(s.h, s.n, &env, &buf), SK_EPROTO, cases[i].msg);
    }
}

static void test_envelope_decode_attr_limits(void **state)
{
    char big[SK_ENVELOPE_MAX_ATTR + 2];
    sk__envelope_buf buf;
    sk_envelope env;
    hdrset s;
    (void)state;

    memset(big, 'x', sizeof(big));
    big[SK_ENVELOPE_MAX_ATTR] = '\0';
    hdrs_valid(&s);
    hdr_set(&s, "ce-subject", big);
    assert_int_equal(sk__envelope_decode(s.h, s.n, &env, &buf), SK_OK);
    assert_int_equal(strlen(env.subject), SK_ENVELOPE_MAX_ATTR);
    hdr_set(&s, "ce-subject", "a");
    assert_int_equal(sk__envelope_decode(s.h, s.n, &env, &buf), SK_OK);
    big[SK_ENVELOPE_MAX_ATTR] = 'x';
    big[SK_ENVELOPE_MAX_ATTR + 1] = '\0';
    hdr_set(&s, "ce-subject", big);
    SK_TEST_ASSERT_ERR(sk__envelope_decode(s.h, s.n, &env, &buf), SK_EPROTO, "257 bytes");
    hdrs_valid(&s);
    hdr_set(&s, "ce-schemaversion", "1000000");
    assert_int_equal(sk__envelope_decode(s.h, s.n, &env, &buf), SK_OK);
    assert_int_equal(env.schema_version, 1000000);
    hdr_set(&s, "ce-sagastep", "0");
    assert_int_equal(sk__envelope_decode(s.h, s.n, &env, &buf), SK_OK);
    assert_int_equal(env.saga_step, 0);
}

static void test_envelope_decode_bad_traceparent_replaced(void **state)
{
    sk__envelope_buf buf;
    sk_envelope env;
    hdrset s;
    (void)state;

    hdrs_valid(&s);
    hdr_set(&s, "traceparent", "nonsense");
    assert_int_equal(sk__envelope_decode(s.h, s.n, &env, &buf), SK_OK);
    assert_true(sk_trace_is_valid(sk_slice_from_str(env.traceparent)));
    hdr_del(&s, "traceparent");
    assert_int_equal(sk__envelope_decode(s.h, s.n, &env, &buf), SK_OK);
    assert_true(sk_trace_is_valid(sk_slice_from_str(env.traceparent)));
}

static void test_envelope_decode_null_args(void **state)
{
    sk__envelope_buf buf;
    sk_envelope env;
    hdrset s;
    (void)state;

    hdrs_valid(&s);
    SK_TEST_ASSERT_ERR(sk__envelope_decode(s.h, s.n, NULL, &buf), SK_EINVAL, "NULL");
    SK_TEST_ASSERT_ERR(sk__envelope_decode(s.h, s.n, &env, NULL), SK_EINVAL, "NULL");
    SK_TEST_ASSERT_ERR(sk__envelope_decode(NULL, 2, &env, &buf), SK_EINVAL, "NULL");
}

/* Values are slices: bytes after len must never be read. */
static void test_envelope_decode_not_nul_terminated(void **state)
{
    char id[] = UUID "zzzz";
    sk__envelope_buf buf;
    sk_envelope env;
    hdrset s;
    (void)state;

    hdrs_valid(&s);
    hdr_set(&s, "ce-id", id);
    s.h[1].value.len = 36;
    assert_int_equal(sk__envelope_decode(s.h, s.n, &env, &buf), SK_OK);
    assert_string_equal(env.id, UUID);
}

/* ---------------------------------------------------------------- RFC 3339 */

static void test_rfc3339_parse_values(void **state)
{
    static const struct {
        const char *text;
        int64_t ms;
    } ok[] = {
        { "1970-01-01T00:00:00Z", 0 },
        { "1970-01-01T00:00:00.1Z", 100 },
        { "1970-01-01T00:00:00.123456789Z", 123 },
        { "2026-11-25T10:00:00.123Z", 1795600800123LL },
        { "2026-11-25t10:00:00.123z", 1795600800123LL },
        { "2026-11-25T11:00:00.123+01:00", 1795600800123LL },
        { "2026-11-25T09:30:00.123-00:30", 1795600800123LL },
        { "2024-02-29T00:00:00Z", 1709164800000LL },
        { "2016-12-31T23:59:60Z", 1483228799000LL },
        { "1969-12-31T23:59:59Z", -1000 },
    };
    static const char *const bad[] = {
        "", "2026", "2026-11-25T10:00:00", "2026-11-25T10:00:00.Z", "2026-13-01T00:00:00Z",
        "2023-02-29T00:00:00Z", "2026-11-25T24:00:00Z", "2026-11-25T10:60:00Z",
        "2026-11-25T10:00:00.1234567890Z", "2026-11-25T10:00:00+0100", "2026-11-25T10:00:00Zx",
        "2026-11-00T10:00:00Z", "２026-11-25T10:00:00Z",
    };
    int64_t ms;
    (void)state;

    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        assert_int_equal(sk__rfc3339_parse(sk_slice_from_str(ok[i].text), &ms), SK_OK);
        assert_int_equal(ms, ok[i].ms);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        SK_TEST_ASSERT_ERR(sk__rfc3339_parse(sk_slice_from_str(bad[i]), &ms), SK_EPROTO,
                           "RFC 3339");
    }
    SK_TEST_ASSERT_ERR(sk__rfc3339_parse(sk_slice_from_str("x"), NULL), SK_EINVAL, "NULL");
}

static void test_rfc3339_round_trip_with_format(void **state)
{
    char text[SK_RFC3339_LEN];
    int64_t ms;
    (void)state;

    for (int64_t t = 0; t < 4102444800000LL; t += 86399999LL * 37) {
        sk_time_format_rfc3339(t, text);
        assert_int_equal(sk__rfc3339_parse(sk_slice_from_str(text), &ms), SK_OK);
        assert_int_equal(ms, t);
    }
}

/* ---------------------------------------------------------------- JSON form */

static void test_envelope_json_round_trip(void **state)
{
    sk__envelope_buf buf;
    sk_envelope env, back;
    char *json = NULL;
    (void)state;

    valid_env(&env);
    env.saga_step = 2;
    env.reply_to = "order.replies.CreateOrderSaga";
    env.schema_version = 7;
    env.subject = "cust\"omer\\42"; /* visible ASCII that JSON must escape */
    assert_int_equal(sk__envelope_to_json(&env, &json), SK_OK);
    assert_non_null(strstr(json, "\"ce-subject\":\"cust\\\"omer\\\\42\""));
    assert_non_null(strstr(json, "\"Nats-Msg-Id\":\""));
    assert_non_null(strstr(json, "\"content-type\":\"application/json\""));
    assert_non_null(strstr(json, "\"ce-specversion\":\"1.0\""));
    assert_int_equal(sk__envelope_from_json(sk_slice_from_str(json), &back, &buf), SK_OK);
    assert_string_equal(back.id, env.id);
    assert_string_equal(back.type, env.type);
    assert_string_equal(back.source, env.source);
    assert_string_equal(back.subject, env.subject);
    assert_int_equal(back.time_ms, env.time_ms);
    assert_int_equal(back.schema_version, 7);
    assert_string_equal(back.traceparent, env.traceparent);
    assert_int_equal(back.saga_step, 2);
    assert_string_equal(back.reply_to, env.reply_to);
    sk_free(json);
}

static void test_envelope_json_errors(void **state)
{
    sk__envelope_buf buf;
    sk_envelope env;
    char *json = (char *)1;
    (void)state;

    SK_TEST_ASSERT_ERR(sk__envelope_to_json(NULL, &json), SK_EINVAL, "env");
    assert_null(json);
    valid_env(&env);
    SK_TEST_ASSERT_ERR(sk__envelope_to_json(&env, NULL), SK_EINVAL, "out");
    env.type = "";
    SK_TEST_ASSERT_ERR(sk__envelope_to_json(&env, &json), SK_EINVAL, "type");
    SK_TEST_ASSERT_ERR(sk__envelope_from_json(sk_slice_from_str("[1]"), &env, &buf), SK_EPROTO,
                       "");
    SK_TEST_ASSERT_ERR(sk__envelope_from_json(sk_slice_from_str("{\"ce-id\":1}"), &env, &buf),
                       SK_EPROTO, "ce-id: expected a string");
    SK_TEST_ASSERT_ERR(sk__envelope_from_json(sk_slice_from_str("{}"), &env, &buf), SK_EPROTO,
                       "missing");
    SK_TEST_ASSERT_ERR(sk__envelope_from_json(sk_slice_from_str("{"), &env, &buf), SK_EPROTO,
                       "envelope headers");
    SK_TEST_ASSERT_ERR(sk__envelope_from_json(sk_slice_from_str("{}"), NULL, &buf), SK_EINVAL,
                       "NULL");
}

static void test_envelope_to_json_every_alloc_failure(void **state)
{
    sk_envelope env;
    (void)state;

    valid_env(&env);
    for (long n = 0;; n++) {
        char *json = NULL;
        sk_test_fail_alloc_at(n);
        sk_status st = sk__envelope_to_json(&env, &json);
        sk_test_fail_alloc_at(-1);
        if (st == SK_OK) {
            sk_free(json);
            break;
        }
        assert_int_equal(st, SK_ENOMEM);
        assert_null(json);
    }
}

/* ---------------------------------------------------------------- natsMsg */

static void test_envelope_msg_round_trip(void **state)
{
    sk__envelope_buf buf;
    sk_envelope env, back;
    natsMsg *msg = NULL;
    const char *v = NULL;
    (void)state;

    valid_env(&env);
    env.saga_step = 0;
    env.reply_to = "inventory.replies.X";
    assert_int_equal(natsMsg_Create(&msg, "order.events.OrderCreated", NULL, "{}", 2), NATS_OK);
    assert_int_equal(sk__envelope_encode(&env, msg), SK_OK);
    assert_int_equal(natsMsgHeader_Get(msg, "Nats-Msg-Id", &v), NATS_OK);
    assert_string_equal(v, env.id);
    assert_int_equal(natsMsgHeader_Get(msg, "content-type", &v), NATS_OK);
    assert_string_equal(v, "application/json");
    assert_int_equal(sk__envelope_from_msg(msg, &back, &buf), SK_OK);
    assert_string_equal(back.id, env.id);
    assert_int_equal(back.time_ms, env.time_ms);
    assert_int_equal(back.saga_step, 0);
    assert_string_equal(back.reply_to, "inventory.replies.X");
    SK_TEST_ASSERT_ERR(sk__envelope_encode(&env, NULL), SK_EINVAL, "msg");
    SK_TEST_ASSERT_ERR(sk__envelope_from_msg(NULL, &back, &buf), SK_EINVAL, "NULL");
    natsMsg_Destroy(msg);

    assert_int_equal(natsMsg_Create(&msg, "x", NULL, "{}", 2), NATS_OK);
    SK_TEST_ASSERT_ERR(sk__envelope_from_msg(msg, &back, &buf), SK_EPROTO, "no headers");
    assert_int_equal(natsMsgHeader_Set(msg, "ce-type", "A"), NATS_OK);
    assert_int_equal(natsMsgHeader_Add(msg, "ce-type", "B"), NATS_OK);
    SK_TEST_ASSERT_ERR(sk__envelope_from_msg(msg, &back, &buf), SK_EPROTO, "more than once");
    natsMsg_Destroy(msg);
}

static void test_headers_json_apply(void **state)
{
    natsMsg *msg = NULL;
    const char *v = NULL;
    (void)state;

    assert_int_equal(natsMsg_Create(&msg, "x", NULL, NULL, 0), NATS_OK);
    assert_int_equal(sk__headers_json_apply(sk_slice_from_str("{\"a\":\"1\",\"b\":\"2\"}"), msg),
                     SK_OK);
    assert_int_equal(natsMsgHeader_Get(msg, "b", &v), NATS_OK);
    assert_string_equal(v, "2");
    SK_TEST_ASSERT_ERR(sk__headers_json_apply(sk_slice_from_str("{\"a\":1}"), msg), SK_EPROTO,
                       "a: expected a string");
    SK_TEST_ASSERT_ERR(sk__headers_json_apply(sk_slice_from_str("nope"), msg), SK_EPROTO,
                       "outbox headers");
    SK_TEST_ASSERT_ERR(sk__headers_json_apply(sk_slice_from_str("{}"), NULL), SK_EINVAL, "msg");
    natsMsg_Destroy(msg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_envelope_init_fills_fields),
        cmocka_unit_test(test_envelope_init_continues_trace),
        cmocka_unit_test(test_envelope_init_unique_ids),
        cmocka_unit_test(test_envelope_validate_errors),
        cmocka_unit_test(test_envelope_decode_valid),
        cmocka_unit_test(test_envelope_decode_names_ignore_case),
        cmocka_unit_test(test_envelope_decode_missing),
        cmocka_unit_test(test_envelope_decode_bad_values),
        cmocka_unit_test(test_envelope_decode_attr_limits),
        cmocka_unit_test(test_envelope_decode_bad_traceparent_replaced),
        cmocka_unit_test(test_envelope_decode_null_args),
        cmocka_unit_test(test_envelope_decode_not_nul_terminated),
        cmocka_unit_test(test_rfc3339_parse_values),
        cmocka_unit_test(test_rfc3339_round_trip_with_format),
        cmocka_unit_test(test_envelope_json_round_trip),
        cmocka_unit_test(test_envelope_json_errors),
        cmocka_unit_test(test_envelope_to_json_every_alloc_failure),
        cmocka_unit_test(test_envelope_msg_round_trip),
        cmocka_unit_test(test_headers_json_apply),
    };
    int rc;

    if (sk_init("test") != SK_OK || nats_Open(-1) != NATS_OK) {
        return 1;
    }
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    nats_Close();
    sk_shutdown();
    return rc;
}
