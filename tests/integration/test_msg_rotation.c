/* SPDX-License-Identifier: MIT */
/*
 * Integration: rotating a service's NATS client certificate without a
 * restart. A bus with a relay, a consumer, a KV handle and a KV watcher
 * runs on certificate A (CA 1); the files are replaced with certificate B
 * (CA 2) and sk_bus_reload_tls moves everything onto a new connection.
 * Then nats-server is restarted trusting CA 2 only: the rotated bus comes
 * back and keeps publishing, consuming and watching, while a bus that still
 * presents A is refused. Real nats-server with mTLS, real SQLite files.
 * The same move serves failover: a bus connected to a server through which
 * JetStream does not answer (a node cut off from its cluster's majority;
 * here a server without JetStream) moves to another server of its list.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "msg/msg_int.h"
#include "sk_test.h"
#include "sk_test_nats.h"
#include "sk_test_pki.h"

#define STREAM  "ROT_EVENTS"
#define DURABLE "rotation"
#define BUCKET  "rotkv"
/* Generous: the machine is shared and nats-server restarts in between. */
#define WAIT_MS 20000

static const sk_migration test_migration = {
    "test", 1, "CREATE TABLE seen (msg_id TEXT PRIMARY KEY)"
};

typedef struct fixture {
    sk_test_pki ca1, ca2;
    sk_tls_files server, cert_a, cert_b;
    char dir[64];
    char server_ca[128];   /* CAs nats-server trusts for clients */
    char client_cert[128]; /* the files the bus reads; rotation overwrites them */
    char client_key[128];
    sk_test_nats *nats;
    sk_bus *bus;
    sk_store *store;
    sk_relay *relay;
    sk_consumer *consumer;
    sk_kv *kv;
    sk_kv_watch *watch;
    pthread_mutex_t mu;
    char last_value[64]; /* mu: the last value the watcher saw for key "k" */
    int n_sent;
} fixture;

/* Replace @p dst with the contents of @p src, or of @p src and @p src2 concatenated. */
static void write_files(const char *dst, const char *src, const char *src2)
{
    size_t len = 0, len2 = 0;
    char *a = sk_test_read_file(src, &len);
    char *b = src2 != NULL ? sk_test_read_file(src2, &len2) : NULL;
    char *both = sk_malloc(len + len2 + 1);

    assert_non_null(a);
    assert_non_null(both);
    memcpy(both, a, len);
    if (b != NULL) {
        memcpy(both + len, b, len2);
    }
    assert_int_equal(sk_test_write_file(dst, both, len + len2), SK_OK);
    sk_free(both);
    sk_free(b);
    sk_free(a);
}

static void on_change(const char *key, sk_slice value, bool is_deleted, void *ctx)
{
    fixture *f = ctx;

    if (strcmp(key, "k") != 0 || is_deleted) {
        return;
    }
    pthread_mutex_lock(&f->mu);
    snprintf(f->last_value, sizeof(f->last_value), "%.*s", (int)value.len,
             (const char *)value.ptr);
    pthread_mutex_unlock(&f->mu);
}

static sk_status record_handler(sk_tx *tx, const sk_message *m, void *ctx)
{
    sk_db_value p[1] = { SK_DB_TEXT_V(m->env.id) };

    (void)ctx;
    return sk_tx_exec(tx, "INSERT INTO seen (msg_id) VALUES (?)", p, 1, NULL);
}

/* A store on the fixture's database file (another instance's, when opened twice). */
static void store_open(fixture *f, sk_store **out)
{
    sk_migration mig[8];
    size_t n_mig = 0;
    const sk_migration *msg_mig = sk_msg_migrations(&n_mig);
    char url[160];

    memcpy(mig, msg_mig, n_mig * sizeof(*mig));
    mig[n_mig++] = test_migration;
    snprintf(url, sizeof(url), "sqlite:%s/db.sqlite", f->dir);
    sk_store_config cfg = { .url = url, .migrations = mig, .n_migrations = n_mig };
    assert_int_equal(sk_store_open(out, &cfg), SK_OK);
}

/* The test's consumer on @p store: records each message in "seen". */
static void consumer_start(fixture *f, sk_store *store, sk_consumer **out)
{
    sk_consumer_config cc = { .stream = STREAM,
                              .durable = DURABLE,
                              .filter_subject = "rot.events.>",
                              .ack_wait_ms = 2000,
                              .handler = record_handler,
                              .ctx = f };
    assert_int_equal(sk_consumer_start(out, f->bus, store, NULL, &cc), SK_OK);
}

static int setup(void **state)
{
    fixture *f = sk_calloc(1, sizeof(*f));
    const char *subjects[] = { "rot.events.>" };
    sk_stream_config sc = { .name = STREAM, .subjects = subjects, .n_subjects = 1 };
    assert_non_null(f);
    pthread_mutex_init(&f->mu, NULL);
    assert_int_equal(sk_test_pki_create(&f->ca1), SK_OK);
    assert_int_equal(sk_test_pki_create(&f->ca2), SK_OK);
    assert_int_equal(sk_test_pki_issue(&f->ca1, "nats-server", &f->server), SK_OK);
    assert_int_equal(sk_test_pki_issue(&f->ca1, "order", &f->cert_a), SK_OK);
    assert_int_equal(sk_test_pki_issue(&f->ca2, "order", &f->cert_b), SK_OK);
    assert_int_equal(sk_test_tmpdir(f->dir, sizeof(f->dir)), SK_OK);
    snprintf(f->server_ca, sizeof(f->server_ca), "%s/clients-ca.pem", f->dir);
    snprintf(f->client_cert, sizeof(f->client_cert), "%s/client.pem", f->dir);
    snprintf(f->client_key, sizeof(f->client_key), "%s/client.key", f->dir);
    /* While certificates roll, the server trusts the old CA and the new one. */
    write_files(f->server_ca, f->cert_a.ca_file, f->cert_b.ca_file);
    write_files(f->client_cert, f->cert_a.cert_file, NULL);
    write_files(f->client_key, f->cert_a.key_file, NULL);

    sk_test_nats_options no = { .cert_file = f->server.cert_file,
                                .key_file = f->server.key_file,
                                .ca_file = f->server_ca,
                                .verify = true };
    assert_int_equal(sk_test_nats_start(&f->nats, &no), SK_OK);
    /* The bus trusts the server's CA (1) and presents the client files. */
    sk_bus_config bc = { .servers = sk_test_nats_url(f->nats),
                         .ca_file = f->server.ca_file,
                         .cert_file = f->client_cert,
                         .key_file = f->client_key,
                         .name = "test-rotation" };
    assert_int_equal(sk_bus_open(&f->bus, &bc), SK_OK);
    assert_int_equal(sk_bus_stream_ensure(f->bus, &sc), SK_OK);

    store_open(f, &f->store);
    assert_int_equal(sk_relay_start(&f->relay, f->store, f->bus, NULL), SK_OK);
    consumer_start(f, f->store, &f->consumer);
    assert_int_equal(sk_kv_open(&f->kv, f->bus, BUCKET, 0), SK_OK);
    assert_int_equal(sk_kv_watch_start(&f->watch, f->kv, ">", on_change, f), SK_OK);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;

    sk_kv_watch_stop(f->watch);
    sk_kv_close(f->kv);
    sk_consumer_stop(f->consumer);
    sk_relay_stop(f->relay);
    sk_store_close(f->store);
    sk_bus_close(f->bus);
    sk_test_nats_stop(f->nats);
    sk_tls_files_fini(&f->server);
    sk_tls_files_fini(&f->cert_a);
    sk_tls_files_fini(&f->cert_b);
    sk_test_pki_destroy(&f->ca1);
    sk_test_pki_destroy(&f->ca2);
    sk_test_rmrf(f->dir);
    pthread_mutex_destroy(&f->mu);
    sk_free(f);
    return 0;
}

/* ---------------------------------------------------------------- helpers */

static sk_status add_messages(sk_tx *tx, void *ctx)
{
    fixture *f = ctx;
    sk_status st = SK_OK;

    for (int i = 0; i < 10 && st == SK_OK; i++) {
        sk_envelope env;
        json_t *data = json_pack("{s:i}", "n", f->n_sent + i);
        sk_envelope_init(&env, "Rotated", "test", "agg-1", NULL);
        st = data != NULL ? sk_outbox_add(tx, "rot.events.Rotated", &env, data)
                          : SK_FAIL(SK_ENOMEM, "json");
        json_decref(data);
    }
    return st;
}

typedef struct seen_query {
    fixture *f;
    int64_t want;
    int64_t got;
} seen_query;

static sk_status count_seen(sk_tx *tx, void *ctx)
{
    seen_query *q = ctx;
    return sk_tx_query_int(tx, "SELECT COUNT(*) FROM seen", NULL, 0, &q->got);
}

static bool seen_reached(void *ctx)
{
    seen_query *q = ctx;
    return sk_store_read(q->f->store, count_seen, q) == SK_OK && q->got >= q->want;
}

/* Ten more messages go out through the outbox and come back through the consumer. */
static void round_trip(fixture *f)
{
    seen_query q = { .f = f };

    assert_int_equal(sk_store_run(f->store, add_messages, f), SK_OK);
    f->n_sent += 10;
    q.want = f->n_sent;
    if (!sk_test_wait_until(seen_reached, &q, WAIT_MS)) {
        fail_msg("consumed %lld of %d messages", (long long)q.got, f->n_sent);
    }
    assert_int_equal(q.got, f->n_sent); /* each exactly once */
}

typedef struct kv_expect {
    fixture *f;
    const char *value;
} kv_expect;

static bool watcher_saw(void *ctx)
{
    kv_expect *e = ctx;
    pthread_mutex_lock(&e->f->mu);
    bool ok = strcmp(e->f->last_value, e->value) == 0;
    pthread_mutex_unlock(&e->f->mu);
    return ok;
}

/* Put @p value under "k"; get returns it and the watcher sees it. */
static void kv_round_trip(fixture *f, const char *value)
{
    kv_expect e = { f, value };
    char *got = NULL;

    assert_int_equal(sk_kv_put(f->kv, "k", sk_slice_from_str(value)), SK_OK);
    assert_int_equal(sk_kv_get(f->kv, "k", &got, NULL), SK_OK);
    assert_string_equal(got, value);
    sk_free(got);
    if (!sk_test_wait_until(watcher_saw, &e, WAIT_MS)) {
        fail_msg("the watcher never saw k=%s", value);
    }
}

static bool bus_up(void *ctx)
{
    return sk_bus_is_connected(ctx);
}

/* ---------------------------------------------------------------- tests */

static void test_rotation_moves_every_user_to_the_new_certificate(void **state)
{
    fixture *f = *state;
    sk_bus *stale = NULL;
    char old_cert[160], old_key[160];

    round_trip(f);
    kv_round_trip(f, "v1");

    /* A second bus keeps presenting certificate A: the control. */
    snprintf(old_cert, sizeof(old_cert), "%s/old.pem", f->dir);
    snprintf(old_key, sizeof(old_key), "%s/old.key", f->dir);
    write_files(old_cert, f->cert_a.cert_file, NULL);
    write_files(old_key, f->cert_a.key_file, NULL);
    sk_bus_config sc = { .servers = sk_test_nats_url(f->nats),
                         .ca_file = f->server.ca_file,
                         .cert_file = old_cert,
                         .key_file = old_key,
                         .name = "test-stale" };
    assert_int_equal(sk_bus_open(&stale, &sc), SK_OK);
    assert_true(sk_test_wait_until(bus_up, stale, WAIT_MS));

    /* Rotate: new files in place, then reload. */
    write_files(f->client_cert, f->cert_b.cert_file, NULL);
    write_files(f->client_key, f->cert_b.key_file, NULL);
    assert_int_equal(sk_bus_reload_tls(f->bus), SK_OK);
    assert_int_equal(atomic_load(&f->bus->generation), 2);
    round_trip(f);
    kv_round_trip(f, "v2");

    /* The server now trusts CA 2 only: certificate A is refused on reconnect. */
    write_files(f->server_ca, f->cert_b.ca_file, NULL);
    assert_int_equal(sk_test_nats_restart(f->nats), SK_OK);
    assert_true(sk_test_wait_until(bus_up, f->bus, WAIT_MS));
    round_trip(f);
    kv_round_trip(f, "v3");
    /* Everything above ran while the stale bus kept retrying with A. */
    assert_false(sk_bus_is_connected(stale));
    sk_bus_close(stale);
}

static void test_rotation_with_bad_files_keeps_the_connection(void **state)
{
    fixture *f = *state;

    round_trip(f);
    assert_int_equal(sk_test_write_file(f->client_cert, "not a certificate\n", 18), SK_OK);
    SK_TEST_ASSERT_ERR(sk_bus_reload_tls(f->bus), SK_ETLS, "client.pem");
    assert_int_equal(atomic_load(&f->bus->generation), 1);
    /* Still on the first connection, still working. */
    round_trip(f);
    kv_round_trip(f, "still");
}

/*
 * A consumer standing by (a second instance sharing the database) follows the
 * reload too: when the holder stops it takes over on the new connection, not
 * on the subscription sk_consumer_start made on the old one (which closes
 * once nothing holds it).
 */
static void test_rotation_standby_consumer_takes_over_on_the_new_connection(void **state)
{
    fixture *f = *state;
    sk_store *store2 = NULL;
    sk_consumer *standby = NULL;

    store_open(f, &store2);
    consumer_start(f, store2, &standby);
    round_trip(f);

    write_files(f->client_cert, f->cert_b.cert_file, NULL);
    write_files(f->client_key, f->cert_b.key_file, NULL);
    assert_int_equal(sk_bus_reload_tls(f->bus), SK_OK);
    round_trip(f); /* the holder moved */

    sk_consumer_stop(f->consumer);
    f->consumer = NULL;
    round_trip(f); /* the standby took over, on the new connection */
    sk_consumer_stop(standby);
    sk_store_close(store2);
}

static void test_rotation_refused_by_the_server_keeps_the_connection(void **state)
{
    fixture *f = *state;
    sk_test_pki other;
    sk_tls_files stranger;

    /* A certificate from a CA the server does not trust. */
    assert_int_equal(sk_test_pki_create(&other), SK_OK);
    assert_int_equal(sk_test_pki_issue(&other, "order", &stranger), SK_OK);
    write_files(f->client_cert, stranger.cert_file, NULL);
    write_files(f->client_key, stranger.key_file, NULL);
    assert_int_not_equal(sk_bus_reload_tls(f->bus), SK_OK);
    assert_non_null(strstr(sk_error_message(), "keeping the current connection"));
    assert_int_equal(atomic_load(&f->bus->generation), 1);
    round_trip(f);
    sk_tls_files_fini(&stranger);
    sk_test_pki_destroy(&other);
}

static void test_rotation_arguments(void **state)
{
    sk_test_nats *plain = NULL;
    sk_bus *bus = NULL;

    (void)state;
    SK_TEST_ASSERT_ERR(sk_bus_reload_tls(NULL), SK_EINVAL, "bus");
    /* A plain connection has no files to re-read. */
    assert_int_equal(sk_test_nats_start(&plain, NULL), SK_OK);
    sk_bus_config bc = { .servers = sk_test_nats_url(plain), .name = "test-plain" };
    assert_int_equal(sk_bus_open(&bus, &bc), SK_OK);
    assert_int_equal(sk_bus_reload_tls(bus), SK_OK);
    assert_int_equal(atomic_load(&bus->generation), 1);
    sk_bus_close(bus);
    sk_test_nats_stop(plain);
}

typedef struct stream_ready {
    sk_bus *bus;
    const sk_stream_config *sc;
} stream_ready;

static bool stream_created(void *ctx)
{
    stream_ready *r = ctx;
    return sk_bus_stream_ensure(r->bus, r->sc) == SK_OK;
}

static void test_failover_when_jetstream_does_not_answer(void **state)
{
    sk_test_nats_options core_only = { .no_jetstream = true };
    sk_test_nats *a = NULL, *b = NULL;
    sk_bus *bus = NULL;
    char servers[300], url[256] = "";
    const char *subjects[] = { "fo.>" };
    sk_stream_config sc = { .name = "FAILOVER", .subjects = subjects, .n_subjects = 1 };

    (void)state;
    assert_int_equal(sk_test_nats_start(&a, &core_only), SK_OK);
    assert_int_equal(sk_test_nats_start(&b, NULL), SK_OK);
    /* B is down while the bus connects, so it lands on A. */
    sk_test_nats_kill(b);
    snprintf(servers, sizeof(servers), "%s,%s", sk_test_nats_url(a), sk_test_nats_url(b));
    sk_bus_config bc = { .servers = servers, .name = "test-failover" };
    assert_int_equal(sk_bus_open(&bus, &bc), SK_OK);
    assert_true(sk_test_wait_until(bus_up, bus, WAIT_MS));
    assert_int_not_equal(sk_bus_stream_ensure(bus, &sc), SK_OK); /* no JetStream on A */

    assert_int_equal(sk_test_nats_restart(b), SK_OK);
    stream_ready r = { bus, &sc };
    assert_true(sk_test_wait_until(stream_created, &r, WAIT_MS));
    assert_true(atomic_load(&bus->generation) >= 2); /* moved, not reconnected */
    assert_int_equal(natsConnection_GetConnectedUrl(sk__bus_conn(bus), url, sizeof(url)), NATS_OK);
    assert_non_null(strstr(url, strrchr(sk_test_nats_url(b), ':')));
    sk_bus_close(bus);
    sk_test_nats_stop(b);
    sk_test_nats_stop(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_rotation_moves_every_user_to_the_new_certificate,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotation_with_bad_files_keeps_the_connection, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_rotation_standby_consumer_takes_over_on_the_new_connection, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotation_refused_by_the_server_keeps_the_connection,
                                        setup, teardown),
        cmocka_unit_test(test_rotation_arguments),
        cmocka_unit_test(test_failover_when_jetstream_does_not_answer),
    };
    int rc;

    if (sk_init("test") != SK_OK) {
        return 1;
    }
    /* No nats_CloseAndWait: with TLS connections it races OpenSSL's own exit cleanup. */
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    sk_shutdown();
    return rc;
}
