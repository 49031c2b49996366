/* SPDX-License-Identifier: MIT */
/*
 * Business-rule checker of the reference shop for system tests that break
 * things (test_crash, test_chaos): seeds products and customers, builds and
 * submits orders through the gateway (Idempotency-Key, retried with the same
 * key on transport errors, 429 and 5xx), and checks the rules of CONTRACT.md
 * through the public API and, once the system has stopped, in the services'
 * SQLite files (opened read-only). Every broken rule is printed as one line
 * "[LABEL] INVARIANT BROKEN: ..." naming the id; the checks never abort the
 * test, they count, and the test fails on a non-zero count.
 */
#ifndef SK_TEST_SHOP_H
#define SK_TEST_SHOP_H

#include <stdatomic.h>
#include <stdbool.h>

#include <skald/core.h>

#include "sk_test_system.h"

#define SK_TEST_SHOP_MAX_SKUS      4
#define SK_TEST_SHOP_MAX_CUSTOMERS 8

/** One order of the load: built by sk_test_shop_order_next, filled in by submit and the checks. */
typedef struct sk_test_shop_order {
    int customer;                   /* index into sk_test_shop.customers */
    int qty[SK_TEST_SHOP_MAX_SKUS]; /* 0: sku not in the order */
    int64_t total;                  /* at the seeded prices */
    char key[96];                   /* Idempotency-Key */
    char body[1024];                /* the POST body, the same on every retry */
    char order_id[64];              /* set once a 201/202 arrived */
    int n_attempts;                 /* POSTs sent */
    char last_error[256];           /* why no 201/202 arrived (when order_id stays empty) */
    json_t *view;                   /* terminal order view (owned), set by check_terminal */
} sk_test_shop_order;

/**
 * A set of products, customers and orders. Fill the configuration fields
 * (label, n_skus, prices, stock, n_customers, limits) after
 * sk_test_shop_init, then call sk_test_shop_seed. Thread-safety:
 * sk_test_shop_order_next, sk_test_shop_submit and sk_test_shop_violation may
 * be called from any thread; everything else from one thread while no client
 * runs.
 */
typedef struct sk_test_shop {
    const sk_test_system *sys; /* borrowed */
    char label[64];            /* prefix of every line printed */
    int n_skus;
    char skus[SK_TEST_SHOP_MAX_SKUS][64]; /* set by seed */
    int64_t prices[SK_TEST_SHOP_MAX_SKUS];
    int64_t stock[SK_TEST_SHOP_MAX_SKUS];
    int n_customers;
    char customers[SK_TEST_SHOP_MAX_CUSTOMERS][64]; /* set by seed */
    int64_t limits[SK_TEST_SHOP_MAX_CUSTOMERS];
    sk_test_shop_order *orders; /* cap_orders slots, owned */
    int cap_orders;
    atomic_int n_orders;      /* slots handed out by order_next (may exceed cap_orders) */
    atomic_int n_accepted;    /* orders that got a 201/202 */
    atomic_int last_accepted; /* slot of the order accepted last (-1: none yet) */
    atomic_int n_violations;
} sk_test_shop;

/** Per-outcome counts of the terminal orders (sk_test_shop_summary). */
typedef struct sk_test_shop_counts {
    int n_orders;
    int n_accepted;
    int n_approved;
    int n_rejected;
    int n_insufficient_credit;
    int n_timeout;
    int n_payment_unavailable;
    int n_retried; /* orders that needed more than one POST */
} sk_test_shop_counts;

/**
 * Zero @p shop, bind it to @p sys and allocate @p cap_orders order slots.
 * @return SK_OK, SK_EINVAL (bad arguments), SK_ENOMEM.
 */
SK_NODISCARD sk_status sk_test_shop_init(sk_test_shop *shop,
                                         const sk_test_system *sys,
                                         const char *label,
                                         int cap_orders);
/** Free the order slots and the views; NULL-safe, idempotent. */
void sk_test_shop_fini(sk_test_shop *shop);

/**
 * Create n_skus products (unique skus with @p sku_prefix, prices[], stock[])
 * and n_customers customers (limits[]) through the gateway, then wait until
 * the read side shows each (customer with its full available credit: the
 * payment account is open; product with its stock).
 * @return SK_OK, SK_EIO (a create did not answer 201) or SK_ETIMEDOUT.
 */
SK_NODISCARD sk_status sk_test_shop_seed(sk_test_shop *shop,
                                         const char *sku_prefix,
                                         int64_t timeout_ms);

/**
 * Build the next order (customer i % n_customers, one or two units of two of
 * the skus, a fresh Idempotency-Key) and hand it out.
 * @return the order (borrowed from the shop), or NULL once cap_orders were handed out.
 * Thread-safe.
 */
sk_test_shop_order *sk_test_shop_order_next(sk_test_shop *shop);

/**
 * POST @p o until a 201/202 arrives, retrying with the same key on a
 * transport error (connection refused or reset), 429 or 5xx; a 4xx other
 * than 429 is final. Gives up after @p timeout_ms (o->last_error says why).
 * @return true when the order was accepted. Thread-safe (one order per thread).
 */
bool sk_test_shop_submit(sk_test_shop *shop, sk_test_shop_order *o, int64_t timeout_ms);

/** Print "[label] INVARIANT BROKEN: ..." and count it. Thread-safe. */
void sk_test_shop_violation(sk_test_shop *shop, const char *fmt, ...) SK_PRINTF(2, 3);

/** Every order handed out got a 201/202 (no acknowledged-or-not limbo). */
void sk_test_shop_check_accepted(sk_test_shop *shop);

/**
 * Every accepted order reaches APPROVED or REJECTED (with a known reason)
 * within @p timeout_ms, with the customer and total it was submitted with;
 * keeps each terminal view for the checks below.
 */
void sk_test_shop_check_terminal(sk_test_shop *shop, int64_t timeout_ms);

/**
 * Per product, through GET /products: stock + restocked == available +
 * reserved + sold, reserved == 0, sold == units of the APPROVED orders.
 * Polls until they hold or @p timeout_ms.
 */
void sk_test_shop_check_products(sk_test_shop *shop, int64_t timeout_ms);

/**
 * Per customer: credit_limit - available_credit == total of its APPROVED
 * orders, and GET /orders?customer_id lists exactly its accepted orders (an
 * extra one is an order created twice), each with the status of its own view.
 */
void sk_test_shop_check_customers(sk_test_shop *shop, int64_t timeout_ms);

/** Replaying each Idempotency-Key returns the order it first created. */
void sk_test_shop_check_idempotency(sk_test_shop *shop);

/**
 * While the system runs: wait until DATA/db/order.db holds no saga still
 * running or compensating (at most @p timeout_ms), and say how many are
 * left. An order's status is final at its saga's pivot; the step after it
 * (committing the reservation) finishes later, after AckWait's redelivery
 * when a kill cut it short, and sk_test_shop_check_databases wants every
 * saga finished.
 */
void sk_test_shop_await_sagas(sk_test_shop *shop, const char *data_dir, int64_t timeout_ms);

/**
 * After the system has stopped: open DATA/db/{order,inventory,payment}.db
 * and DATA/db/orderview.db read-only and check, per order of the
 * shop, that it exists once with its view's status and its saga finished;
 * that inventory holds exactly its reservation lines once (COMMITTED when
 * APPROVED, never RESERVED/COMMITTED otherwise) and payment exactly one
 * charge of its total when APPROVED (none left CHARGED or pending otherwise);
 * that each Idempotency-Key has one record naming its order; that the write
 * models' products and accounts keep the stock and credit invariants; and
 * that every orderview instance's read model agrees with the write models.
 */
void sk_test_shop_check_databases(sk_test_shop *shop, const char *data_dir);

/** Count outcomes and print one summary line. */
void sk_test_shop_summary(const sk_test_shop *shop, sk_test_shop_counts *out);

#endif /* SK_TEST_SHOP_H */
