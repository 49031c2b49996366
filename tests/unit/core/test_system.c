/* SPDX-License-Identifier: MIT */
/* Unit tests for src/core/system.c: loading and validating skald.yaml. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "core/core_int.h"
#include "sk_test.h"

#define DATA SK_TEST_DATA "/core/system/"

static sk_status parse(const char *text, sk_system **out)
{
    return sk_system_parse(sk_slice_from_str(text), "skald.yaml", out);
}

/* Parse @p text and expect a failure with @p want and message @p substr. */
static void expect_bad(const char *text, sk_status want, const char *substr)
{
    sk_system *sys = (sk_system *)1;
    sk_status st = parse(text, &sys);
    if (st == SK_OK) {
        sk_system_destroy(sys);
        fail_msg("accepted: %s", text);
    }
    SK_TEST_ASSERT_ERR(st, want, substr);
    assert_null(sys);
}

static void test_sk_system_load_valid(void **state)
{
    (void)state;
    sk_system *sys = NULL;
    assert_int_equal(sk_system_load(DATA "valid.yaml", &sys), SK_OK);
    assert_string_equal(sys->name, "shop");
    assert_int_equal(sys->gateway_port, 8081);
    assert_int_equal(sys->n_services, 4);
    assert_int_equal(sys->n_routes, 4);
    assert_string_equal(sys->routes[2].method, "POST");
    assert_string_equal(sys->routes[2].path, "/api/v1/orders/{id}/cancel");
    assert_string_equal(sys->routes[2].service, "order");
    assert_string_equal(sys->routes[2].target, "/orders/{id}/cancel");
    assert_true(json_is_object(sys->root));

    const sk_sys_service *gw = sk_system_service_find(sys, "gateway");
    assert_non_null(gw);
    assert_true(gw->is_gateway);
    assert_string_equal(gw->database, "");
    assert_string_equal(gw->context, "gateway");
    assert_int_equal(gw->instances, 1);
    assert_int_equal(gw->n_upstreams, 2);
    assert_string_equal(gw->upstreams[0].service, "order");
    json_t *policy = gw->upstreams[0].policy;
    assert_true(json_is_object(policy));
    assert_string_equal(json_string_value(json_object_get(policy, "timeout")), "5s");
    assert_int_equal(json_integer_value(json_object_get(
                         json_object_get(json_object_get(policy, "trafficPolicy"),
                                         "outlierDetection"),
                         "consecutive5xxErrors")),
                     5);

    const sk_sys_service *order = sk_system_service_find(sys, "order");
    assert_non_null(order);
    assert_false(order->is_gateway);
    assert_string_equal(order->context, "ordering");
    assert_string_equal(order->database, "order");
    assert_int_equal(order->instances, 2);
    assert_int_equal(order->n_commands, 2);
    assert_string_equal(order->commands[1], "CancelOrder");
    assert_int_equal(order->n_queries, 0);
    assert_int_equal(order->n_emits, 1);
    assert_int_equal(order->n_consumes, 1);
    assert_string_equal(order->consumes[0], "StockReserved");
    assert_int_equal(order->n_upstreams, 1);
    assert_non_null(json_object_get(order->upstreams[0].policy, "fault"));
    /* Two rules: the first expands to one per path prefix. */
    assert_int_equal(order->n_authz, 3);
    assert_string_equal(order->authz[0].path_prefix, "/orders");
    assert_string_equal(order->authz[1].path_prefix, "/admin");
    assert_int_equal(order->authz[1].n_from, 1);
    assert_string_equal(order->authz[1].from[0], "gateway");
    assert_int_equal(order->authz[1].n_methods, 2);
    assert_string_equal(order->authz[1].methods[1], "POST");
    assert_string_equal(order->authz[2].from[0], "*");
    assert_int_equal(order->authz[2].n_methods, 0);
    assert_string_equal(order->authz[2].path_prefix, "/healthz");

    const sk_sys_service *view = sk_system_service_find(sys, "orderview");
    assert_string_equal(view->database, "views");
    assert_string_equal(view->queries[0], "GetOrder");
    assert_null(sk_system_service_find(sys, "nope"));
    assert_null(sk_system_service_find(sys, NULL));
    assert_null(sk_system_service_find(NULL, "order"));
    sk_system_destroy(sys);
}

static void test_sk_system_load_minimal_defaults(void **state)
{
    (void)state;
    sk_system *sys = NULL;
    assert_int_equal(sk_system_load(DATA "minimal.yaml", &sys), SK_OK);
    assert_int_equal(sys->gateway_port, 8080);
    assert_int_equal(sys->n_routes, 0);
    assert_int_equal(sys->n_services, 1);
    const sk_sys_service *s = &sys->services[0];
    assert_string_equal(s->name, "solo");
    assert_string_equal(s->context, "solo");
    assert_string_equal(s->database, "solo");
    assert_int_equal(s->instances, 1);
    assert_false(s->is_gateway);
    assert_int_equal(s->n_commands + s->n_queries + s->n_emits + s->n_consumes, 0);
    assert_int_equal(s->n_upstreams + s->n_authz, 0);
    sk_system_destroy(sys);
}

static void test_sk_system_load_bad_files(void **state)
{
    (void)state;
    sk_system *sys = (sk_system *)1;
    SK_TEST_ASSERT_ERR(sk_system_load(DATA "bad_instances.yaml", &sys), SK_EPROTO,
                       "bad_instances.yaml: services.order.instances: expected an integer in "
                       "1..16");
    assert_null(sys);
    SK_TEST_ASSERT_ERR(sk_system_load(DATA "bad_typo.yaml", &sys), SK_EPROTO,
                       "bad_typo.yaml: services.order.comands: unknown key");
    SK_TEST_ASSERT_ERR(sk_system_load(DATA "bad_duplicate.yaml", &sys), SK_EPROTO,
                       "bad_duplicate.yaml:4:3: duplicate key \"order\"");
    SK_TEST_ASSERT_ERR(sk_system_load(DATA "missing.yaml", &sys), SK_EIO,
                       "missing.yaml: cannot open");
    SK_TEST_ASSERT_ERR(sk_system_load(SK_TEST_DATA "/core", &sys), SK_EIO, "not a regular file");
    assert_null(sys);
}

static void test_sk_system_load_size_limit(void **state)
{
    (void)state;
    char dir[64], path[128];
    sk_system *sys = NULL;
    assert_int_equal(sk_test_tmpdir(dir, sizeof(dir)), SK_OK);
    (void)snprintf(path, sizeof(path), "%s/big.yaml", dir);
    char *big = sk_malloc(SK_MAX_CONFIG_BYTES + 1);
    assert_non_null(big);
    memset(big, '#', SK_MAX_CONFIG_BYTES + 1);
    assert_int_equal(sk_test_write_file(path, big, SK_MAX_CONFIG_BYTES + 1), SK_OK);
    sk_free(big);
    SK_TEST_ASSERT_ERR(sk_system_load(path, &sys), SK_ELIMIT, "more than the limit");
    assert_null(sys);
    sk_test_rmrf(dir);
}

static void test_sk_system_null_args(void **state)
{
    (void)state;
    sk_system *sys = (sk_system *)1;
    SK_TEST_ASSERT_ERR(sk_system_load(DATA "valid.yaml", NULL), SK_EINVAL, "out");
    SK_TEST_ASSERT_ERR(sk_system_load(NULL, &sys), SK_EINVAL, "path");
    assert_null(sys);
    SK_TEST_ASSERT_ERR(sk_system_load("", &sys), SK_EINVAL, "path");
    SK_TEST_ASSERT_ERR(parse("system: x", NULL), SK_EINVAL, "out");
    sk_slice bad = { NULL, 4 };
    SK_TEST_ASSERT_ERR(sk_system_parse(bad, "x", &sys), SK_EINVAL, "text.ptr");
    sk_system_destroy(NULL);
}

static void test_sk_system_parse_top_level_errors(void **state)
{
    (void)state;
    expect_bad("", SK_EPROTO, "skald.yaml: expected a mapping at the top level, got null");
    expect_bad("- a\n", SK_EPROTO, "expected a mapping at the top level, got array");
    expect_bad("services: {a: {}}\n", SK_EPROTO, "skald.yaml: system: required");
    expect_bad("system: 5\nservices: {a: {}}\n", SK_EPROTO, "system: expected a string, got integer");
    expect_bad("system: Shop\nservices: {a: {}}\n", SK_EPROTO,
               "system: expected a name matching [a-z][a-z0-9-]{0,31}, got \"Shop\"");
    expect_bad("system: s\n", SK_EPROTO, "skald.yaml: services: required");
    expect_bad("system: s\nservices: {}\n", SK_EPROTO, "services: expected a mapping of at least one");
    expect_bad("system: s\nservices: [a]\n", SK_EPROTO, "got array");
    expect_bad("system: s\nservices: {a: &x {}}\n", SK_EPROTO, "skald.yaml:2:15: anchors (&x)");
}

static void test_sk_system_parse_service_errors(void **state)
{
    (void)state;
    expect_bad("system: s\nservices: {Order: {}}\n", SK_EPROTO,
               "services.Order: service names must match");
    expect_bad("system: s\nservices: {a234567890123456789012345678901234: {}}\n", SK_EPROTO,
               "service names must match");
    expect_bad("system: s\nservices: {a: 5}\n", SK_EPROTO,
               "services.a: expected a mapping, got integer");
    expect_bad("system: s\nservices: {a: {instances: 17}}\n", SK_EPROTO,
               "services.a.instances: expected an integer in 1..16, got out of range");
    expect_bad("system: s\nservices: {a: {instances: \"2\"}}\n", SK_EPROTO,
               "services.a.instances: expected an integer in 1..16, got string");
    expect_bad("system: s\nservices: {a: {context: Foo}}\n", SK_EPROTO,
               "services.a.context: expected a name matching");
    expect_bad("system: s\nservices: {a: {database: \"x y\"}}\n", SK_EPROTO,
               "services.a.database: expected \"none\" or a name");
    expect_bad("system: s\nservices: {a: {gateway: yes}}\n", SK_EPROTO,
               "services.a.gateway: expected true or false, got string");
    expect_bad("system: s\nservices: {a: {commands: Create}}\n", SK_EPROTO,
               "services.a.commands: expected a list, got string");
    expect_bad("system: s\nservices: {a: {emits: [Order.Created]}}\n", SK_EPROTO,
               "services.a.emits[0]: expected an identifier like OrderCreated");
    expect_bad("system: s\nservices: {a: {queries: [Q, 5]}}\n", SK_EPROTO,
               "services.a.queries[1]: expected a string, got integer");
    expect_bad("system: s\nservices: {a: {consumes: [E, E]}}\n", SK_EPROTO,
               "services.a.consumes[1]: \"E\" is listed twice");
    expect_bad("system: s\nservices: {a: {instance: 2}}\n", SK_EPROTO,
               "services.a.instance: unknown key (expected one of: context, instances");
}

static void test_sk_system_parse_cross_service_errors(void **state)
{
    (void)state;
    expect_bad("system: s\nservices: {a: {gateway: true}, b: {gateway: true}}\n", SK_EPROTO,
               "services.b.gateway: only one service may be the gateway; a already is");
    expect_bad("system: s\nservices: {a: {}, b: {database: a}}\n", SK_EPROTO,
               "services.b.database: database \"a\" is already used by service a");
    /* "none" may repeat. */
    sk_system *sys = NULL;
    assert_int_equal(parse("system: s\nservices: {a: {database: none}, b: {database: none}}\n",
                           &sys),
                     SK_OK);
    sk_system_destroy(sys);
}

static void test_sk_system_parse_upstream_errors(void **state)
{
    (void)state;
    expect_bad("system: s\nservices: {a: {upstreams: [{service: b}]}}\n", SK_EPROTO,
               "services.a.upstreams[0].service: no service named \"b\"");
    expect_bad("system: s\nservices: {a: {upstreams: {service: b}}}\n", SK_EPROTO,
               "services.a.upstreams: expected a list, got object");
    expect_bad("system: s\nservices: {a: {upstreams: [b]}}\n", SK_EPROTO,
               "services.a.upstreams[0]: expected a mapping, got string");
    expect_bad("system: s\nservices: {a: {upstreams: [{timeout: 2s}]}}\n", SK_EPROTO,
               "services.a.upstreams[0].service: required");
    expect_bad("system: s\nservices: {a: {upstreams: [{service: a, timeout: 2 s}]}}\n", SK_EPROTO,
               "services.a.upstreams[0].timeout: expected a duration like 2s or 500ms");
    expect_bad("system: s\nservices: {a: {upstreams: [{service: a, timeout: 2}]}}\n", SK_EPROTO,
               "timeout: expected a string, got integer");
    expect_bad("system: s\nservices: {a: {upstreams: [{service: a, retries: 3}]}}\n", SK_EPROTO,
               "services.a.upstreams[0].retries: expected a mapping, got integer");
    expect_bad("system: s\nservices: {a: {upstreams: [{service: a, retry: {}}]}}\n", SK_EPROTO,
               "services.a.upstreams[0].retry: unknown key");
    expect_bad("system: s\nservices: {a: {upstreams: [{service: a}, {service: a}]}}\n", SK_EPROTO,
               "upstream \"a\" is listed twice");
}

static void test_sk_system_parse_authz_errors(void **state)
{
    (void)state;
    expect_bad("system: s\nservices: {a: {authorization: [{from: [b], paths: [/x]}]}}\n",
               SK_EPROTO, "services.a.authorization: from: no service named \"b\"");
    expect_bad("system: s\nservices: {a: {authorization: [{paths: [/x]}]}}\n", SK_EPROTO,
               "services.a.authorization[0].from: required");
    expect_bad("system: s\nservices: {a: {authorization: [{from: [a]}]}}\n", SK_EPROTO,
               "services.a.authorization[0].paths: required");
    expect_bad("system: s\nservices: {a: {authorization: [{from: [a], paths: [x]}]}}\n",
               SK_EPROTO, "services.a.authorization[0].paths[0]: expected a path prefix");
    expect_bad("system: s\nservices: {a: {authorization: [{from: [a], paths: [\"/a/{id}\"]}]}}\n",
               SK_EPROTO, "paths[0]: expected a path prefix");
    expect_bad("system: s\nservices: {a: {authorization: [{from: [a], methods: [GOT], "
               "paths: [/x]}]}}\n",
               SK_EPROTO, "authorization[0].methods[0]: expected one of GET, POST");
    expect_bad("system: s\nservices: {a: {authorization: [{from: [A], paths: [/x]}]}}\n",
               SK_EPROTO, "from[0]: expected a service name or \"*\"");
    expect_bad("system: s\nservices: {a: {authorization: [{from: [a], path: [/x]}]}}\n",
               SK_EPROTO, "authorization[0].path: unknown key");
}

static void test_sk_system_parse_route_errors(void **state)
{
    (void)state;
    const char *head = "system: s\nservices: {a: {}}\ngateway:\n  routes:\n    - ";
    char text[512];
    static const struct {
        const char *route;
        const char *msg;
    } cases[] = {
        { "{method: FETCH, path: /x, service: a, target: /x}",
          "gateway.routes[0].method: expected one of GET, POST, PUT, PATCH, DELETE, got \"FETCH\"" },
        { "{path: /x, service: a, target: /x}", "gateway.routes[0].method: required" },
        { "{method: GET, path: x, service: a, target: /x}", "gateway.routes[0].path: expected a path" },
        { "{method: GET, path: /x?y=1, service: a, target: /x}", "routes[0].path: expected a path" },
        { "{method: GET, path: /x//y, service: a, target: /x}", "routes[0].path: expected a path" },
        { "{method: GET, path: \"/x/{id\", service: a, target: /x}", "routes[0].path: expected a path" },
        { "{method: GET, path: \"/x/a{id}\", service: a, target: /x}", "routes[0].path: expected" },
        { "{method: GET, path: /x, service: b, target: /x}",
          "gateway.routes[0].service: no service named \"b\"" },
        { "{method: GET, path: /x, service: a}", "gateway.routes[0].target: required" },
        { "{method: GET, path: /x, service: a, target: x}", "routes[0].target: expected a path" },
        { "{method: GET, path: \"/x/{id}\", service: a, target: \"/y/{key}\"}",
          "gateway.routes[0].target: placeholder {key} does not appear in path /x/{id}" },
        { "{method: GET, path: \"/x/{ide}\", service: a, target: \"/y/{id}\"}",
          "placeholder {id} does not appear" },
        { "{method: GET, path: /x, service: a, target: /x, extra: 1}",
          "gateway.routes[0].extra: unknown key" },
        { "[GET, /x]", "gateway.routes[0]: expected a mapping, got array" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        (void)snprintf(text, sizeof(text), "%s%s\n", head, cases[i].route);
        expect_bad(text, SK_EPROTO, cases[i].msg);
    }
    expect_bad("system: s\nservices: {a: {}}\ngateway:\n  routes:\n"
               "    - {method: GET, path: /x, service: a, target: /x}\n"
               "    - {method: GET, path: /x, service: a, target: /y}\n",
               SK_EPROTO, "gateway.routes[1]: GET /x is already routed by gateway.routes[0]");
    expect_bad("system: s\nservices: {a: {}}\ngateway: {routes: 5}\n", SK_EPROTO,
               "gateway.routes: expected a list, got integer");
    expect_bad("system: s\nservices: {a: {}}\ngateway: 5\n", SK_EPROTO,
               "skald.yaml: gateway: expected a mapping, got integer");
    expect_bad("system: s\nservices: {a: {}}\ngateway: {port: 0}\n", SK_EPROTO,
               "gateway.port: expected an integer in 1..65535");
    expect_bad("system: s\nservices: {a: {}}\ngateway: {port: 65536}\n", SK_EPROTO,
               "gateway.port: expected an integer in 1..65535");
    expect_bad("system: s\nservices: {a: {}}\ngateway: {port: http}\n", SK_EPROTO,
               "gateway.port: expected an integer in 1..65535, got string");
}

static void test_sk_system_parse_limits_pass(void **state)
{
    (void)state;
    sk_system *sys = NULL;
    assert_int_equal(parse("system: s\nservices:\n  a2345678901234567890123456789012: "
                           "{instances: 16}\ngateway: {port: 65535}\nx-other: {any: thing}\n",
                           &sys),
                     SK_OK);
    assert_int_equal(sys->services[0].instances, 16);
    assert_int_equal(sys->gateway_port, 65535);
    sk_system_destroy(sys);
}

static void test_sk_system_load_every_alloc_failure(void **state)
{
    (void)state;
    for (long n = 0;; n++) {
        sk_system *sys = NULL;
        sk_test_fail_alloc_at(n);
        sk_status st = sk_system_load(DATA "valid.yaml", &sys);
        sk_test_fail_alloc_at(-1);
        if (st == SK_OK) {
            sk_system_destroy(sys);
            break;
        }
        assert_int_equal(st, SK_ENOMEM);
        assert_null(sys);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sk_system_load_valid),
        cmocka_unit_test(test_sk_system_load_minimal_defaults),
        cmocka_unit_test(test_sk_system_load_bad_files),
        cmocka_unit_test(test_sk_system_load_size_limit),
        cmocka_unit_test(test_sk_system_null_args),
        cmocka_unit_test(test_sk_system_parse_top_level_errors),
        cmocka_unit_test(test_sk_system_parse_service_errors),
        cmocka_unit_test(test_sk_system_parse_cross_service_errors),
        cmocka_unit_test(test_sk_system_parse_upstream_errors),
        cmocka_unit_test(test_sk_system_parse_authz_errors),
        cmocka_unit_test(test_sk_system_parse_route_errors),
        cmocka_unit_test(test_sk_system_parse_limits_pass),
        cmocka_unit_test(test_sk_system_load_every_alloc_failure),
    };
    return cmocka_run_group_tests(tests, sk_test_group_setup, sk_test_group_teardown);
}
