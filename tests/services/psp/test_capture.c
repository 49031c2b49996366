/* SPDX-License-Identifier: MIT */
/*
 * psp's Capture handler on a real command bus: the same Idempotency-Key
 * gets the same capture id, in another psp (a restart) too, whatever the
 * body; another key another id; without a key the order id decides, apart
 * from any key of the same text; an empty key, or one past PSP_KEY_MAX, is
 * refused with 400.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "psp.h"
#include "sk_test.h"

typedef struct answer {
    int status;
    char capture_id[SK_UUID_LEN];
    char detail[256];
} answer;

static void on_done(const sk_result *res, void *ctx)
{
    answer *a = ctx;
    const char *id = json_string_value(json_object_get(res->body, "capture_id"));
    a->status = res->http_status;
    snprintf(a->capture_id, sizeof(a->capture_id), "%s", id != NULL ? id : "");
    snprintf(a->detail, sizeof(a->detail), "%s", res->detail != NULL ? res->detail : "");
}

/* A psp as its provider wires it: the Capture command on a bus of its own. */
typedef struct psp_under_test {
    sk_cqrs_bus *bus;
    psp_state state;
} psp_under_test;

static void psp_start(psp_under_test *p)
{
    p->state.capture_namespace = PSP_CAPTURE_NAMESPACE;
    assert_int_equal(sk_cqrs_bus_create(&p->bus, SK_CQRS_COMMAND, NULL), SK_OK);
    assert_int_equal(sk_cqrs_bus_register(p->bus, "Capture", psp_validate_capture,
                                          psp_handle_capture, &p->state),
                     SK_OK);
}

static answer capture(psp_under_test *p, const char *key, const char *order_id, int64_t amount)
{
    answer a = { 0 };
    json_t *payload =
        json_pack("{s:s, s:I}", "order_id", order_id, "amount_cents", (json_int_t)amount);
    sk_request req = { .type = "Capture", .payload = payload, .idempotency_key = key };
    assert_non_null(payload);
    assert_int_equal(sk_cqrs_bus_dispatch(p->bus, &req, on_done, &a), SK_OK);
    json_decref(payload);
    return a;
}

static void test_psp_capture_id_follows_the_key(void **state)
{
    (void)state;
    psp_under_test p = { 0 };
    psp_start(&p);

    answer first = capture(&p, "charge-1", "order-1", 500);
    assert_int_equal(first.status, 201);
    assert_true(sk_uuid_is_valid(sk_slice_from_str(first.capture_id)));
    assert_int_equal(first.capture_id[14], '5'); /* name-based: UUIDv5 */

    /* A retry, even with another body, is the same capture. */
    answer again = capture(&p, "charge-1", "order-1", 500);
    assert_string_equal(again.capture_id, first.capture_id);
    answer other_body = capture(&p, "charge-1", "order-9", 1);
    assert_string_equal(other_body.capture_id, first.capture_id);

    /* Another key, another capture. */
    answer second = capture(&p, "charge-2", "order-1", 500);
    assert_int_equal(second.status, 201);
    assert_string_not_equal(second.capture_id, first.capture_id);

    /* Without a key the order id is the key. */
    answer by_order = capture(&p, NULL, "order-7", 300);
    assert_int_equal(by_order.status, 201);
    assert_string_equal(capture(&p, NULL, "order-7", 300).capture_id, by_order.capture_id);
    assert_string_not_equal(capture(&p, NULL, "order-8", 300).capture_id, by_order.capture_id);
    assert_string_not_equal(capture(&p, "order-7", "order-7", 300).capture_id, by_order.capture_id);

    /* A psp started again (no state kept) answers the same ids. */
    psp_under_test restarted = { 0 };
    psp_start(&restarted);
    assert_string_equal(capture(&restarted, "charge-1", "order-1", 500).capture_id,
                        first.capture_id);
    assert_string_equal(capture(&restarted, NULL, "order-7", 300).capture_id, by_order.capture_id);

    sk_cqrs_bus_destroy(restarted.bus);
    sk_cqrs_bus_destroy(p.bus);
}

static void test_psp_capture_refuses_an_empty_or_long_key(void **state)
{
    (void)state;
    psp_under_test p = { 0 };
    char key[PSP_KEY_MAX + 2];
    psp_start(&p);

    memset(key, 'k', PSP_KEY_MAX);
    key[PSP_KEY_MAX] = '\0';
    assert_int_equal(capture(&p, key, "order-1", 1).status, 201);
    key[PSP_KEY_MAX] = 'k';
    key[PSP_KEY_MAX + 1] = '\0';
    answer a = capture(&p, key, "order-1", 1);
    assert_int_equal(a.status, 400);
    assert_non_null(strstr(a.detail, "Idempotency-Key"));
    answer empty = capture(&p, "", "order-1", 1);
    assert_int_equal(empty.status, 400);
    assert_non_null(strstr(empty.detail, "empty key"));
    sk_cqrs_bus_destroy(p.bus);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_psp_capture_id_follows_the_key),
        cmocka_unit_test(test_psp_capture_refuses_an_empty_or_long_key),
    };
    return cmocka_run_group_tests(tests, sk_test_group_setup, sk_test_group_teardown);
}
