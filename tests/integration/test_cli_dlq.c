/* SPDX-License-Identifier: MIT */
/*
 * Integration: the functions behind `skald dlq list` and `skald dlq
 * redrive ID` against a real nats-server, with a consumer on a SQLite file
 * producing the dead letter and handling the redrive.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>

#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "msg/msg_int.h"
#include "sk_test.h"
#include "sk_test_nats.h"

static const sk_migration test_migration = {
    "test", 1, "CREATE TABLE handled (seq INTEGER PRIMARY KEY AUTOINCREMENT, n INTEGER NOT NULL)"
};

static _Atomic bool is_broken = true;

static sk_status handler(sk_tx *tx, const sk_message *m, void *ctx)
{
    sk_db_value p[1] = { SK_DB_INT_V(json_integer_value(json_object_get(m->json, "n"))) };
    (void)ctx;
    if (atomic_load(&is_broken)) {
        return SK_FAIL(SK_EPROTO, "cannot handle\tthis yet");
    }
    return sk_tx_exec(tx, "INSERT INTO handled (n) VALUES (?)", p, 1, NULL);
}

typedef struct q {
    sk_store *store;
    const char *sql;
    int64_t want;
    int64_t got;
} q;

static sk_status q_run(sk_tx *tx, void *ctx)
{
    q *x = ctx;
    return sk_tx_query_int(tx, x->sql, NULL, 0, &x->got);
}

static bool q_reached(void *ctx)
{
    q *x = ctx;
    return sk_store_read(x->store, q_run, x) == SK_OK && x->got >= x->want;
}

static bool dlq_has(void *ctx)
{
    sk_bus *bus = ctx;
    sk_dlq_list *l = NULL;
    bool ok = sk_dlq_list_load(bus, &l) == SK_OK && sk_dlq_list_count(l) == 1;
    sk_dlq_list_destroy(l);
    return ok;
}

static char out_path[128];

/* Everything cli_dlq_print wrote with the given options. Owned (sk_free). */
static char *printed(sk_bus *bus, bool is_all, bool is_json)
{
    sk_dlq_list *l = NULL;
    FILE *f = fopen(out_path, "w");

    assert_non_null(f);
    assert_int_equal(sk_dlq_list_load(bus, &l), SK_OK);
    assert_int_equal(cli_dlq_print(l, is_all, is_json, f), CLI_EXIT_OK);
    fclose(f);
    sk_dlq_list_destroy(l);
    char *text = sk_test_read_file(out_path, NULL);
    assert_non_null(text);
    return text;
}

static void test_cli_dlq_list_and_redrive(void **state)
{
    sk_test_nats *nats = NULL;
    sk_bus *bus = NULL;
    sk_store *store = NULL;
    sk_relay *relay = NULL;
    sk_consumer *c = NULL;
    sk_migration mig[8];
    size_t n_mig = 0;
    const sk_migration *msg_mig = sk_msg_migrations(&n_mig);
    const char *subjects[] = { "cli.events.>" };
    sk_stream_config sc = { .name = "CLI_EVENTS", .subjects = subjects, .n_subjects = 1 };
    char dir[64], url[128], id[SK_UUID_LEN];
    sk_envelope env;
    char *out;
    (void)state;

    memcpy(mig, msg_mig, n_mig * sizeof(*mig));
    mig[n_mig++] = test_migration;
    assert_int_equal(sk_test_nats_start(&nats, NULL), SK_OK);
    sk_bus_config bc = { .servers = sk_test_nats_url(nats), .name = "test-cli-dlq" };
    assert_int_equal(sk_bus_open(&bus, &bc), SK_OK);
    assert_int_equal(sk_bus_stream_ensure(bus, &sc), SK_OK);
    assert_int_equal(sk_test_tmpdir(dir, sizeof(dir)), SK_OK);
    snprintf(url, sizeof(url), "sqlite:%s/db.sqlite", dir);
    snprintf(out_path, sizeof(out_path), "%s/out.txt", dir);
    sk_store_config cfg = { .url = url, .migrations = mig, .n_migrations = n_mig };
    assert_int_equal(sk_store_open(&store, &cfg), SK_OK);
    assert_int_equal(sk_relay_start(&relay, store, bus, NULL), SK_OK);
    sk_consumer_config cc = { .stream = "CLI_EVENTS",
                              .durable = "cliview",
                              .filter_subject = "cli.events.>",
                              .handler = handler };
    assert_int_equal(sk_consumer_start(&c, bus, store, NULL, &cc), SK_OK);

    /* Nothing yet. */
    out = printed(bus, false, false);
    assert_non_null(strstr(out, "(no open dead letters)"));
    sk_free(out);

    sk_envelope_init(&env, "ThingHappened", "test", "thing-7", NULL);
    for (int n = 1; n <= 2; n++) {
        natsMsg *m = NULL;
        char data[32];
        snprintf(data, sizeof(data), "{\"n\":%d}", n);
        sk_uuid7(env.id);
        assert_int_equal(natsMsg_Create(&m, "cli.events.Thing", NULL, data, (int)strlen(data)),
                         NATS_OK);
        assert_int_equal(sk__envelope_encode(&env, m), SK_OK);
        assert_int_equal(js_PublishMsg(NULL, sk__bus_js(bus), m, NULL, NULL), NATS_OK);
        natsMsg_Destroy(m);
    }
    assert_true(sk_test_wait_until(dlq_has, bus, 15000));

    out = printed(bus, false, false);
    assert_non_null(strstr(out, "ID"));
    assert_non_null(strstr(out, "open"));
    assert_non_null(strstr(out, "cliview"));
    assert_non_null(strstr(out, "cli.events.Thing"));
    assert_non_null(strstr(out, "ThingHappened"));
    assert_non_null(strstr(out, "thing-7"));
    assert_non_null(strstr(out, "cannot handle this yet")); /* the tab made a space */
    sk_free(out);
    out = printed(bus, false, true);
    {
        json_error_t jerr;
        json_t *arr = json_loads(out, 0, &jerr);
        assert_true(json_is_array(arr));
        assert_int_equal(json_array_size(arr), 1);
        json_t *d = json_array_get(arr, 0);
        assert_string_equal(json_string_value(json_object_get(d, "aggregate")), "thing-7");
        assert_string_equal(json_string_value(json_object_get(d, "state")), "open");
        assert_int_equal(json_integer_value(json_object_get(d, "deliveries")), 1);
        snprintf(id, sizeof(id), "%s", json_string_value(json_object_get(d, "id")));
        json_decref(arr);
    }
    sk_free(out);

    /* Redrive after the fix: both messages handled, in order; the list shows it resolved. */
    atomic_store(&is_broken, false);
    {
        FILE *f = fopen("/dev/null", "w");
        assert_non_null(f);
        assert_int_equal(cli_dlq_redrive(bus, id, f), CLI_EXIT_OK);
        q x = { .store = store, .sql = "SELECT COUNT(*) FROM handled", .want = 2 };
        assert_true(sk_test_wait_until(q_reached, &x, 15000));
        x.sql = "SELECT COUNT(*) FROM handled WHERE (seq = 1 AND n = 1) OR (seq = 2 AND n = 2)";
        assert_int_equal(sk_store_read(store, q_run, &x), SK_OK);
        assert_int_equal(x.got, 2);
        for (int64_t deadline = sk_time_mono_ms() + 15000; sk_time_mono_ms() < deadline;) {
            out = printed(bus, false, false);
            bool is_gone = strstr(out, "(no open dead letters)") != NULL;
            sk_free(out);
            if (is_gone) {
                break;
            }
            cli_sleep_ms(20);
        }
        out = printed(bus, true, false);
        assert_non_null(strstr(out, "resolved"));
        sk_free(out);
        /* Again: refused as a usage error; an unknown id too. */
        assert_int_equal(cli_dlq_redrive(bus, id, f), CLI_EXIT_USAGE);
        assert_int_equal(cli_dlq_redrive(bus, "0190a0a0-0000-7000-8000-000000000000", f),
                         CLI_EXIT_USAGE);
        fclose(f);
    }

    sk_consumer_stop(c);
    sk_relay_stop(relay);
    sk_store_close(store);
    sk_bus_close(bus);
    sk_test_nats_stop(nats);
    sk_test_rmrf(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cli_dlq_list_and_redrive),
    };
    int rc;

    if (sk_init("test") != SK_OK) {
        return 1;
    }
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    nats_CloseAndWait(5000);
    sk_shutdown();
    return rc;
}
