/* SPDX-License-Identifier: MIT */
/*
 * bench_json: the JSON work of one order-view answer and of the messages the
 * services decode, through Skald's path (src/core/json.c helpers, the order
 * service's validator) against raw jansson calls on the same bytes, in the
 * same run. Both sides must produce the same output (byte-identical JSON, the
 * same field values) before anything is timed. After an unmeasured warm-up of
 * ROUND_MS / 2 per side, each case runs ROUNDS rounds,
 * alternating which side goes first; a round times a side for ROUND_MS of
 * wall time. ns/op is thread CPU time per operation (the machine is shared,
 * so CPU time is less noisy than wall time); the figure to use is the ratio
 * skald/raw, reported as the median over the rounds with its min..max.
 *
 * The order view is built by a static function of orderview
 * (services/orderview/orderview_queries.c, view_from_row); this program
 * repeats its calls on the same data: sk_json_parse of the stored priced
 * items, the same json_pack format, and sk_json_dump into an sk_buf bounded
 * like sk_http_req_respond_json's. After sk_init jansson allocates through
 * sk_malloc on both sides (malloc plus one relaxed atomic load).
 *
 * Usage: bench_json [ROUNDS 1..100 [ROUND_MS 10..10000]]   (default 5 200)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <skald/core.h>

#include "order.h"

/* ---------------------------------------------------------------- sample data */

/*
 * One approved order with three priced items, as orderview stores it: the
 * order row's columns and the priced_items text (the order service's
 * json_pack order: sku, name, quantity, unit_price_cents, line_total_cents).
 */
static const char view_order_id[] = "0193c5a0-7d2e-7b4c-9a51-3f0e2d1c4b6a";
static const char view_customer_id[] = "0193c59f-11aa-7c3d-8e2f-5a6b7c8d9e0f";
static const char view_customer_name[] = "Ada Lovelace";
static const char view_status[] = "APPROVED";
static const char view_created_at[] = "2026-11-26T07:06:12.345Z";
static const char view_updated_at[] = "2026-11-26T07:06:12.912Z";
static const int64_t view_total_cents = 8999 + 2 * 2450 + 3 * 1299;
static const int64_t view_version = 3;
static const char view_priced_items[] =
    "[{\"sku\":\"KB-MECH-0042\",\"name\":\"Mechanical keyboard, brown switches\",\"quantity\":1,"
    "\"unit_price_cents\":8999,\"line_total_cents\":8999},"
    "{\"sku\":\"MS-WL-0107\",\"name\":\"Wireless mouse\",\"quantity\":2,"
    "\"unit_price_cents\":2450,\"line_total_cents\":4900},"
    "{\"sku\":\"PAD-XL-0311\",\"name\":\"Desk pad XL\",\"quantity\":3,"
    "\"unit_price_cents\":1299,\"line_total_cents\":3897}]";

/* POST /api/v1/orders body (CreateOrder). */
static const char order_body[] =
    "{\"customer_id\":\"0193c59f-11aa-7c3d-8e2f-5a6b7c8d9e0f\",\"items\":["
    "{\"sku\":\"KB-MECH-0042\",\"quantity\":1},{\"sku\":\"MS-WL-0107\",\"quantity\":2},"
    "{\"sku\":\"PAD-XL-0311\",\"quantity\":3}]}";
#define BODY_ITEMS 3

/* OrderApproved event data, as the order service emits it and orderview's projection reads it. */
static const char event_data[] =
    "{\"order_id\":\"0193c5a0-7d2e-7b4c-9a51-3f0e2d1c4b6a\","
    "\"customer_id\":\"0193c59f-11aa-7c3d-8e2f-5a6b7c8d9e0f\",\"status\":\"APPROVED\","
    "\"ordered_items\":[{\"sku\":\"KB-MECH-0042\",\"quantity\":1},{\"sku\":\"MS-WL-0107\","
    "\"quantity\":2},{\"sku\":\"PAD-XL-0311\",\"quantity\":3}],"
    "\"created_at\":\"2026-11-26T07:06:12.345Z\",\"updated_at\":\"2026-11-26T07:06:12.912Z\","
    "\"version\":3,\"total_cents\":17796,\"items\":["
    "{\"sku\":\"KB-MECH-0042\",\"name\":\"Mechanical keyboard, brown switches\",\"quantity\":1,"
    "\"unit_price_cents\":8999,\"line_total_cents\":8999},"
    "{\"sku\":\"MS-WL-0107\",\"name\":\"Wireless mouse\",\"quantity\":2,"
    "\"unit_price_cents\":2450,\"line_total_cents\":4900},"
    "{\"sku\":\"PAD-XL-0311\",\"name\":\"Desk pad XL\",\"quantity\":3,"
    "\"unit_price_cents\":1299,\"line_total_cents\":3897}]}";

/* Everything a side produces, compared before timing and summed into a sink while timing. */
typedef struct result {
    char *json; /* encode cases: the bytes, owned (sk_free) */
    size_t json_len;
    /* decode cases: the values read */
    char customer_id[64];
    char skus[BODY_ITEMS][32];
    int64_t quantities[BODY_ITEMS];
    char order_id[64];
    char status[16];
    char created_at[32];
    char updated_at[32];
    int64_t version;
    int64_t total_cents;
    size_t n_items;
    size_t n_ordered_items;
    bool has_reject_reason;
} result;

static volatile size_t sink;

static void result_fini(result *r)
{
    sk_free(r->json);
    memset(r, 0, sizeof(*r));
}

static void copy_str(char *dst, size_t cap, const char *s)
{
    snprintf(dst, cap, "%s", s != NULL ? s : "");
}

/* ---------------------------------------------------------------- encode: order view */

/* json_pack of orderview's view_from_row, with the row's values; takes @p items. */
static json_t *view_pack(json_t *items)
{
    return json_pack("{s:s, s:s, s:o, s:s, s:o, s:o, s:I, s:s, s:s, s:I}", "order_id",
                     view_order_id, "customer_id", view_customer_id, "customer_name",
                     json_string(view_customer_name), "status", view_status, "reject_reason",
                     json_null(), "items", items, "total_cents", (json_int_t)view_total_cents,
                     "created_at", view_created_at, "updated_at", view_updated_at, "version",
                     (json_int_t)view_version);
}

/* Skald: sk_json_parse + json_pack + sk_json_dump into a bounded sk_buf (as the service answers). */
static bool view_skald(result *r)
{
    json_t *items = NULL;
    json_t *v;
    sk_buf b;
    bool ok = false;

    if (sk_json_parse(sk_slice_from_str(view_priced_items), &items) != SK_OK) {
        return false;
    }
    v = view_pack(items); /* takes items, even on failure */
    if (v == NULL) {
        return false;
    }
    sk_buf_init(&b, SK_MAX_HTTP_BODY * 16u);
    if (sk_json_dump(v, &b) == SK_OK) {
        r->json = sk_buf_take(&b, &r->json_len);
        ok = r->json != NULL;
    }
    sk_buf_fini(&b);
    json_decref(v);
    return ok;
}

/* Raw jansson: json_loadb + json_pack + json_dumps. */
static bool view_raw(result *r)
{
    json_error_t jerr;
    json_t *items = json_loadb(view_priced_items, sizeof(view_priced_items) - 1, 0, &jerr);
    json_t *v;

    if (items == NULL) {
        return false;
    }
    v = view_pack(items);
    if (v == NULL) {
        return false;
    }
    r->json = json_dumps(v, JSON_COMPACT);
    r->json_len = r->json != NULL ? strlen(r->json) : 0;
    json_decref(v);
    return r->json != NULL;
}

/* ---------------------------------------------------------------- encode: dump only */

static json_t *prebuilt_view; /* built once; both sides serialise it */

static bool dump_skald(result *r)
{
    sk_buf b;
    bool ok = false;

    sk_buf_init(&b, SK_MAX_HTTP_BODY * 16u);
    if (sk_json_dump(prebuilt_view, &b) == SK_OK) {
        r->json = sk_buf_take(&b, &r->json_len);
        ok = r->json != NULL;
    }
    sk_buf_fini(&b);
    return ok;
}

static bool dump_raw(result *r)
{
    r->json = json_dumps(prebuilt_view, JSON_COMPACT);
    r->json_len = r->json != NULL ? strlen(r->json) : 0;
    return r->json != NULL;
}

/* ---------------------------------------------------------------- decode: POST /orders body */

/* Read the CreateOrder fields (both sides, after their own parsing). */
static bool body_read(const json_t *payload, result *r)
{
    const json_t *items = json_object_get(payload, "items");
    const json_t *item;
    size_t i;

    copy_str(r->customer_id, sizeof(r->customer_id),
             json_string_value(json_object_get(payload, "customer_id")));
    r->n_items = json_array_size(items);
    if (r->n_items != BODY_ITEMS) {
        return false;
    }
    json_array_foreach(items, i, item)
    {
        copy_str(r->skus[i], sizeof(r->skus[i]), json_string_value(json_object_get(item, "sku")));
        r->quantities[i] = json_integer_value(json_object_get(item, "quantity"));
    }
    return true;
}

/*
 * Skald: what the edge and the command bus do with the body before the
 * handler: sk_json_parse_object (svc_edge.c), then the order service's
 * validator (strings and ranges checked, duplicates refused).
 */
static bool body_skald(result *r)
{
    json_t *payload = NULL;
    bool ok;

    if (sk_json_parse_object(sk_slice_from_str(order_body), &payload) != SK_OK) {
        return false;
    }
    ok = order_validate_create(payload, NULL) == SK_OK && body_read(payload, r);
    json_decref(payload);
    return ok;
}

/* The same plus the deep copy sk_cqrs_bus_dispatch makes of every payload. */
static bool body_copy_skald(result *r)
{
    json_t *payload = NULL;
    json_t *copy;
    bool ok;

    if (sk_json_parse_object(sk_slice_from_str(order_body), &payload) != SK_OK) {
        return false;
    }
    copy = json_deep_copy(payload);
    json_decref(payload);
    if (copy == NULL) {
        return false;
    }
    ok = order_validate_create(copy, NULL) == SK_OK && body_read(copy, r);
    json_decref(copy);
    return ok;
}

static bool body_raw(result *r)
{
    json_error_t jerr;
    json_t *payload = json_loadb(order_body, sizeof(order_body) - 1, 0, &jerr);
    bool ok;

    if (payload == NULL) {
        return false;
    }
    ok = body_read(payload, r);
    json_decref(payload);
    return ok;
}

/* ---------------------------------------------------------------- decode: OrderApproved data */

/* The reads of orderview's order_changed (both sides). */
static bool event_read(const json_t *d, result *r)
{
    copy_str(r->order_id, sizeof(r->order_id), json_string_value(json_object_get(d, "order_id")));
    copy_str(r->customer_id, sizeof(r->customer_id),
             json_string_value(json_object_get(d, "customer_id")));
    copy_str(r->status, sizeof(r->status), json_string_value(json_object_get(d, "status")));
    copy_str(r->created_at, sizeof(r->created_at),
             json_string_value(json_object_get(d, "created_at")));
    copy_str(r->updated_at, sizeof(r->updated_at),
             json_string_value(json_object_get(d, "updated_at")));
    r->version = json_integer_value(json_object_get(d, "version"));
    r->total_cents = json_integer_value(json_object_get(d, "total_cents"));
    r->n_items = json_array_size(json_object_get(d, "items"));
    r->n_ordered_items = json_array_size(json_object_get(d, "ordered_items"));
    r->has_reject_reason = json_is_string(json_object_get(d, "reject_reason"));
    return r->n_items == BODY_ITEMS;
}

/* Skald: the consumer's sk_json_parse_object of the message data, then the projection's reads. */
static bool event_skald(result *r)
{
    json_t *d = NULL;
    bool ok;

    if (sk_json_parse_object(sk_slice_from_str(event_data), &d) != SK_OK) {
        return false;
    }
    ok = event_read(d, r);
    json_decref(d);
    return ok;
}

static bool event_raw(result *r)
{
    json_error_t jerr;
    json_t *d = json_loadb(event_data, sizeof(event_data) - 1, 0, &jerr);
    bool ok;

    if (d == NULL) {
        return false;
    }
    ok = event_read(d, r);
    json_decref(d);
    return ok;
}

/* ---------------------------------------------------------------- harness */

typedef bool (*side_fn)(result *r);

typedef struct bench_case {
    const char *name;
    const char *what;
    size_t input_len; /* bytes parsed or produced, for the heading */
    side_fn skald;
    side_fn raw;
} bench_case;

static int64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Run @p fn for about @p round_ms of wall time; CPU ns per op, or a negative value on failure. */
static double time_side(side_fn fn, int round_ms, double *wall_ns_per_op)
{
    int64_t end = sk_time_mono_ns() + (int64_t)round_ms * 1000000;
    int64_t w0 = sk_time_mono_ns();
    int64_t c0 = thread_cpu_ns();
    uint64_t n = 0;
    size_t acc = 0;

    do {
        for (int k = 0; k < 256; k++) {
            result r;
            memset(&r, 0, sizeof(r));
            if (!fn(&r)) {
                result_fini(&r);
                return -1;
            }
            acc += r.json_len + r.n_items + (size_t)r.version;
            result_fini(&r);
        }
        n += 256;
    } while (sk_time_mono_ns() < end);
    sink += acc;
    *wall_ns_per_op = (double)(sk_time_mono_ns() - w0) / (double)n;
    return (double)(thread_cpu_ns() - c0) / (double)n;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y ? 1 : 0;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_double);
    return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* Both sides must give the same bytes (encode) or the same values (decode). */
static bool same_output(const bench_case *bc)
{
    result a, b;
    bool ok;

    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    if (!bc->skald(&a)) {
        fprintf(stderr, "bench_json: %s: the Skald side failed: %s\n", bc->name,
                sk_error_message());
        result_fini(&a);
        return false;
    }
    if (!bc->raw(&b)) {
        fprintf(stderr, "bench_json: %s: the raw side failed\n", bc->name);
        result_fini(&a);
        result_fini(&b);
        return false;
    }
    if (a.json != NULL || b.json != NULL) {
        ok = a.json != NULL && b.json != NULL && a.json_len == b.json_len &&
             memcmp(a.json, b.json, a.json_len) == 0;
        if (!ok) {
            fprintf(stderr, "bench_json: %s: outputs differ:\n  skald %s\n  raw   %s\n", bc->name,
                    a.json != NULL ? a.json : "(null)", b.json != NULL ? b.json : "(null)");
        }
    } else {
        ok = memcmp(&a, &b, sizeof(a)) == 0; /* every field was zeroed, then filled alike */
        if (!ok) {
            fprintf(stderr, "bench_json: %s: the sides read different values\n", bc->name);
        }
    }
    result_fini(&a);
    result_fini(&b);
    return ok;
}

static bool run_case(const bench_case *bc, int rounds, int round_ms)
{
    double sk_ns[100], raw_ns[100], ratio[100];
    double wall_sum = 0, cpu_sum = 0, w = 0;

    if (!same_output(bc)) {
        return false;
    }
    printf("\n%s: %s (%zu bytes)\n", bc->name, bc->what, bc->input_len);
    /* Unmeasured warm-up of both sides (caches, allocator arenas, CPU frequency). */
    if (time_side(bc->skald, round_ms / 2, &w) <= 0 || time_side(bc->raw, round_ms / 2, &w) <= 0) {
        fprintf(stderr, "bench_json: %s: a side failed while warming up\n", bc->name);
        return false;
    }
    printf("  round  skald ns/op  raw ns/op  skald/raw\n");
    for (int i = 0; i < rounds; i++) {
        double w1 = 0, w2 = 0;
        /* Alternate the order so that a side never always runs on a warmer (or hotter) core. */
        if (i % 2 == 0) {
            sk_ns[i] = time_side(bc->skald, round_ms, &w1);
            raw_ns[i] = time_side(bc->raw, round_ms, &w2);
        } else {
            raw_ns[i] = time_side(bc->raw, round_ms, &w2);
            sk_ns[i] = time_side(bc->skald, round_ms, &w1);
        }
        if (sk_ns[i] <= 0 || raw_ns[i] <= 0) {
            fprintf(stderr, "bench_json: %s: a side failed while timing: %s\n", bc->name,
                    sk_error_message());
            return false;
        }
        ratio[i] = sk_ns[i] / raw_ns[i];
        wall_sum += w1 + w2;
        cpu_sum += sk_ns[i] + raw_ns[i];
        printf("  %5d  %11.0f  %9.0f  %9.2f\n", i + 1, sk_ns[i], raw_ns[i], ratio[i]);
    }
    /* median() sorts in place: afterwards ratio[0] and ratio[rounds - 1] are the extremes. */
    double sk_med = median(sk_ns, rounds);
    double raw_med = median(raw_ns, rounds);
    double r_med = median(ratio, rounds);
    printf("  median: skald %.0f ns/op (%.0f ops/s), raw %.0f ns/op (%.0f ops/s); "
           "ratio skald/raw %.2f (rounds %.2f..%.2f); wall/CPU time %.2f\n",
           sk_med, 1e9 / sk_med, raw_med, 1e9 / raw_med, r_med, ratio[0], ratio[rounds - 1],
           wall_sum / cpu_sum);
    return true;
}

int main(int argc, char **argv)
{
    int rounds = 5;
    int round_ms = 200;
    int rc = 1;
    char *view_text = NULL;

    if (argc > 3 ||
        (argc >= 2 && (sscanf(argv[1], "%d", &rounds) != 1 || rounds < 1 || rounds > 100)) ||
        (argc == 3 && (sscanf(argv[2], "%d", &round_ms) != 1 || round_ms < 10 || round_ms > 10000))) {
        fprintf(stderr, "usage: bench_json [ROUNDS 1..100 [ROUND_MS 10..10000]]\n");
        return 2;
    }
    if (sk_init("bench_json") != SK_OK) {
        fprintf(stderr, "bench_json: %s\n", sk_error_message());
        return 1;
    }
    json_t *items = json_loads(view_priced_items, 0, NULL);
    prebuilt_view = items != NULL ? view_pack(items) : NULL;
    view_text = prebuilt_view != NULL ? sk_json_dumps(prebuilt_view) : NULL;
    if (view_text == NULL) {
        fprintf(stderr, "bench_json: building the sample order view failed\n");
        goto out;
    }
    const bench_case cases[] = {
        { "encode.view", "order view answer: parse stored priced items + json_pack + dump",
          strlen(view_text), view_skald, view_raw },
        { "encode.dump", "order view answer: dump of a built document only", strlen(view_text),
          dump_skald, dump_raw },
        { "decode.body", "POST /orders body: parse + validate (order_validate_create) + read",
          sizeof(order_body) - 1, body_skald, body_raw },
        { "decode.body+copy", "as decode.body plus the command bus's json_deep_copy",
          sizeof(order_body) - 1, body_copy_skald, body_raw },
        { "decode.event", "OrderApproved data: parse (consumer) + the projection's reads",
          sizeof(event_data) - 1, event_skald, event_raw },
    };
    printf("bench_json: %d rounds x %d ms per side; ns/op = thread CPU time per operation;\n"
           "skald = Skald's path (src/core/json.c helpers), raw = jansson calls on the same bytes\n",
           rounds, round_ms);
    printf("order view sample: %s\n", view_text);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (!run_case(&cases[i], rounds, round_ms)) {
            goto out;
        }
    }
    rc = 0;
out:
    sk_free(view_text);
    json_decref(prebuilt_view);
    sk_shutdown();
    return rc;
}
