/* SPDX-License-Identifier: MIT */
/*
 * bench_orders: end-to-end latency of orders through a running system.
 * Seeds a product and a customer, then places N orders sequentially and
 * N orders from C concurrent clients; each order is followed (polling
 * GET /api/v1/orders/{id} every millisecond) from the POST until it reaches
 * a terminal status. Prints POST latency and POST-to-terminal latency
 * percentiles. Not a test: run it against `skald up`.
 *
 *   bench_orders [--url http://127.0.0.1:8080] [--orders 1000] [--concurrency 16]
 */
#define _GNU_SOURCE
#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct client {
    CURL *h;
    char *buf;
    size_t len, cap;
} client;

static const char *g_url = "http://127.0.0.1:8080";
static char g_customer[64];
static char g_sku[64];

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static size_t on_body(char *p, size_t size, size_t n, void *ctx)
{
    client *c = ctx;
    size_t add = size * n;
    if (c->len + add + 1 > c->cap) {
        size_t cap = (c->len + add + 1) * 2;
        char *nb = realloc(c->buf, cap);
        if (nb == NULL) {
            return 0;
        }
        c->buf = nb;
        c->cap = cap;
    }
    memcpy(c->buf + c->len, p, add);
    c->len += add;
    c->buf[c->len] = '\0';
    return add;
}

/* One request; returns the HTTP status (0 on transport failure) and parses the body into *out. */
static int request(client *c, const char *method, const char *path, const char *body, json_t **out)
{
    char url[512];
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    snprintf(url, sizeof(url), "%s%s", g_url, path);
    c->len = 0;
    curl_easy_reset(c->h);
    curl_easy_setopt(c->h, CURLOPT_URL, url);
    curl_easy_setopt(c->h, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c->h, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c->h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c->h, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(c->h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c->h, CURLOPT_TIMEOUT_MS, 30000L);
    if (body != NULL) {
        curl_easy_setopt(c->h, CURLOPT_POSTFIELDS, body);
    }
    long status = 0;
    if (curl_easy_perform(c->h) == CURLE_OK) {
        curl_easy_getinfo(c->h, CURLINFO_RESPONSE_CODE, &status);
    }
    curl_slist_free_all(h);
    if (out != NULL) {
        *out = c->len > 0 ? json_loadb(c->buf, c->len, 0, NULL) : NULL;
    }
    return (int)status;
}

typedef struct sample {
    int64_t post_us;
    int64_t e2e_us;
    int approved;
} sample;

static int place_and_follow(client *c, sample *s)
{
    char body[256], path[128];
    json_t *resp = NULL;
    snprintf(body, sizeof(body), "{\"customer_id\":\"%s\",\"items\":[{\"sku\":\"%s\",\"quantity\":1}]}", g_customer,
             g_sku);
    int64_t t0 = now_us();
    int status = request(c, "POST", "/api/v1/orders", body, &resp);
    s->post_us = now_us() - t0;
    if (status != 202 || resp == NULL) {
        json_decref(resp);
        return -1;
    }
    snprintf(path, sizeof(path), "/api/v1/orders/%s", json_string_value(json_object_get(resp, "order_id")));
    json_decref(resp);
    for (;;) {
        json_t *view = NULL;
        status = request(c, "GET", path, NULL, &view);
        const char *st = json_string_value(json_object_get(view, "status"));
        if (status == 200 && st != NULL && strcmp(st, "PENDING") != 0) {
            s->e2e_us = now_us() - t0;
            s->approved = strcmp(st, "APPROVED") == 0;
            json_decref(view);
            return 0;
        }
        json_decref(view);
        if (now_us() - t0 > 30000000) {
            return -1;
        }
        struct timespec ts = { 0, 1000000 };
        nanosleep(&ts, NULL);
    }
}

typedef struct worker {
    sample *samples;
    int n;
    int failures;
} worker;

static void *run_worker(void *arg)
{
    worker *w = arg;
    client c = { .h = curl_easy_init() };
    for (int i = 0; i < w->n; i++) {
        if (place_and_follow(&c, &w->samples[i]) != 0) {
            w->failures++;
            w->samples[i].e2e_us = -1;
        }
    }
    curl_easy_cleanup(c.h);
    free(c.buf);
    return NULL;
}

static int cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : (x > y);
}

static void report(const char *label, sample *s, int n, double seconds)
{
    int64_t *post = calloc((size_t)n, sizeof(int64_t)), *e2e = calloc((size_t)n, sizeof(int64_t));
    int k = 0, approved = 0;
    for (int i = 0; i < n; i++) {
        if (s[i].e2e_us >= 0) {
            post[k] = s[i].post_us;
            e2e[k] = s[i].e2e_us;
            approved += s[i].approved;
            k++;
        }
    }
    qsort(post, (size_t)k, sizeof(int64_t), cmp64);
    qsort(e2e, (size_t)k, sizeof(int64_t), cmp64);
#define PCT(a, p) ((double)(a)[(size_t)((k - 1) * (p))] / 1000.0)
    if (k == 0) {
        printf("%s: no order completed\n", label);
    } else {
        printf("%-12s orders=%d completed=%d approved=%d  %.0f orders/s\n", label, n, k, approved, k / seconds);
        printf("%-12s POST ms       p50 %7.2f  p90 %7.2f  p99 %7.2f  max %7.2f\n", "", PCT(post, 0.5),
               PCT(post, 0.9), PCT(post, 0.99), PCT(post, 1.0));
        printf("%-12s end-to-end ms p50 %7.2f  p90 %7.2f  p99 %7.2f  max %7.2f\n", "", PCT(e2e, 0.5), PCT(e2e, 0.9),
               PCT(e2e, 0.99), PCT(e2e, 1.0));
    }
#undef PCT
    free(post);
    free(e2e);
}

static int run(const char *label, int n, int concurrency)
{
    sample *samples = calloc((size_t)n, sizeof(sample));
    worker *workers = calloc((size_t)concurrency, sizeof(worker));
    pthread_t *threads = calloc((size_t)concurrency, sizeof(pthread_t));
    int per = n / concurrency, failures = 0;
    int64_t t0 = now_us();
    for (int i = 0; i < concurrency; i++) {
        workers[i].samples = samples + i * per;
        workers[i].n = i == concurrency - 1 ? n - i * per : per;
        pthread_create(&threads[i], NULL, run_worker, &workers[i]);
    }
    for (int i = 0; i < concurrency; i++) {
        pthread_join(threads[i], NULL);
        failures += workers[i].failures;
    }
    report(label, samples, n, (double)(now_us() - t0) / 1e6);
    if (failures > 0) {
        printf("%-12s failures=%d\n", "", failures);
    }
    free(samples);
    free(workers);
    free(threads);
    return failures;
}

static int seed(void)
{
    client c = { .h = curl_easy_init() };
    json_t *resp = NULL;
    char body[256];
    snprintf(g_sku, sizeof(g_sku), "BENCH-%lld", (long long)now_us());
    snprintf(body, sizeof(body), "{\"sku\":\"%s\",\"name\":\"Bench\",\"price_cents\":1,\"stock\":1000000}", g_sku);
    int ok = request(&c, "POST", "/api/v1/products", body, NULL) == 201;
    ok = ok && request(&c, "POST", "/api/v1/customers",
                       "{\"name\":\"Bench\",\"credit_limit_cents\":1000000000000}", &resp) == 201;
    if (ok) {
        snprintf(g_customer, sizeof(g_customer), "%s", json_string_value(json_object_get(resp, "customer_id")));
        /* The account opens asynchronously; wait until the read side shows it. */
        char path[128];
        snprintf(path, sizeof(path), "/api/v1/customers/%s", g_customer);
        for (int i = 0; i < 5000 && request(&c, "GET", path, NULL, NULL) != 200; i++) {
            struct timespec ts = { 0, 1000000 };
            nanosleep(&ts, NULL);
        }
    }
    json_decref(resp);
    curl_easy_cleanup(c.h);
    free(c.buf);
    return ok ? 0 : -1;
}

int main(int argc, char **argv)
{
    int orders = 1000, concurrency = 16;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--url") == 0) {
            g_url = argv[i + 1];
        } else if (strcmp(argv[i], "--orders") == 0) {
            orders = atoi(argv[i + 1]);
        } else if (strcmp(argv[i], "--concurrency") == 0) {
            concurrency = atoi(argv[i + 1]);
        } else {
            fprintf(stderr, "usage: bench_orders [--url URL] [--orders N] [--concurrency C]\n");
            return 2;
        }
    }
    if (orders < 1 || concurrency < 1 || concurrency > orders) {
        fprintf(stderr, "bench_orders: need 1 <= concurrency <= orders\n");
        return 2;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (seed() != 0) {
        fprintf(stderr, "bench_orders: seeding %s failed (is `skald up` running?)\n", g_url);
        return 1;
    }
    int failures = run("sequential", orders, 1);
    failures += run("concurrent", orders, concurrency);
    curl_global_cleanup();
    return failures == 0 ? 0 : 1;
}
