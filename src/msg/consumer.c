/* SPDX-License-Identifier: MIT */
/*
 * Durable pull consumer with exactly-once effects: a fetch thread hands each
 * message to the store as a unit of work that records (consumer, ce-id) in
 * sk_inbox and runs the handler in the same transaction; the message is
 * acknowledged only from the unit's done callback, i.e. once that is
 * durable. A redelivered message finds its inbox row and is acknowledged
 * with no effect.
 *
 * Failures and ordering: a message whose handler fails is parked in
 * sk_msg_parked (in the same database, then acknowledged) and its aggregate
 * (ce-subject; the message id with SK_CONSUMER_ORDER_NONE) is blocked in
 * sk_msg_blocked; later messages of a blocked aggregate are parked behind
 * it, in stream order (position = JetStream stream sequence). The fetch
 * thread retries the head of each blocked aggregate with backoff ("release"
 * units, one message per unit); after max_deliver attempts, or at once for
 * SK_EPROTO, the head becomes a dead letter (sk_dead_letters, and a record
 * on dlq.<durable> through the outbox) and the aggregate stays blocked
 * behind it until it is redriven (header SK_DLQ_HDR_REDRIVE) and handled.
 * Between a failed unit and the durable park of its message, an in-memory
 * pending set (writer thread only) keeps later messages of the aggregate
 * from overtaking it; a block row remembers the head's position, so a head
 * that is still in JetStream (its park unit failed, or the process died) is
 * waited for rather than skipped.
 *
 * Every unit and done callback of a consumer runs on the store's writer
 * thread, one at a time, so the pending set needs no lock.
 *
 * Instances of a service share its database file; of the consumers with one
 * durable name on one file, only the one whose process holds the store lock
 * "consumer-<stream>-<durable>" fetches, so one writer commits their messages in
 * large batches instead of two writers contending for the file's write
 * lock. The others retry every CONSUMER_STANDBY_RETRY_MS and take over once
 * the holder's process has ended (what it had fetched comes back after
 * AckWait), or once a holder whose fetches keep failing lets go.
 */
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "msg/msg_int.h"

/* Longest error text kept with a dead letter. */
#define MAX_ERROR_TEXT 1024
/* Delay before redelivering a message whose unit could not be queued or committed. */
#define REQUEUE_DELAY_MS 1000
/* Fetch wait; also bounds how long sk_consumer_stop waits for the fetch thread. */
#define FETCH_WAIT_MS 1000
/*
 * How long a pull request stands. An idle consumer renews it this often; one
 * the server dropped without an end status is replaced within a FETCH_WAIT_MS
 * of being counted lost, a second after it expired (see pull.c).
 */
#define PULL_EXPIRES_MS 2000
/* Fetch wait while some aggregate is blocked, so its retries are not late. */
#define FETCH_WAIT_BLOCKED_MS 200
/* How often the fetch thread looks for blocked aggregates due for a retry. */
#define RELEASE_POLL_MS 100
/* Most aggregates released per poll. */
#define RELEASE_POLL_BATCH 64
/* Re-check of a block whose head is still in JetStream. */
#define HEAD_WAIT_MS 1000
/* Redelivery backoff: BASE * 2^(n-1), at most MAX. */
#define BACKOFF_BASE_MS 250
#define BACKOFF_MAX_MS  30000
/* How often the fetch thread looks for a stale batch in its reaper (sk__reaper_flush_stale). */
#define FETCH_REAP_CHECK_MS 100
/* How often a consumer standing by tries its database's lock. */
#define CONSUMER_STANDBY_RETRY_MS 500
/* How long a holder's fetches may fail before it lets another instance try. */
#define CONSUMER_YIELD_AFTER_MS 30000
/*
 * How long an inbox row is kept: a copy of a message can come back while its
 * delivery is retried (minutes), or when a relay that died between
 * publishing and deleting a row publishes it again after JetStream's 2 min
 * duplicate window; a week covers a producer down that long.
 */
#define INBOX_RETENTION_MS (7LL * 24 * 3600 * 1000)
/* How often the fetch thread deletes inbox rows older than that, and the most rows one unit
 * deletes. */
#define INBOX_PRUNE_INTERVAL_MS 60000
#define INBOX_PRUNE_BATCH 10000
/* The consumer's own MaxDeliver is this much above ours, so we always get to dead-letter. */
#define MAX_DELIVER_SLACK 2

typedef enum result {
    RES_OK,
    RES_DUP,
    RES_RETRY,
    RES_DEAD,
    RES_PARKED,
    RES_COUNT_,
    RES_NONE /* a release unit that found nothing due */
} result;

static const char *const result_names[RES_COUNT_] = { "ok", "duplicate", "retry", "dead",
                                                      "parked" };

/* An aggregate whose failing head is not durably parked yet. */
typedef struct pending {
    char *key;
    int64_t position;
} pending;

/* Failures the fetch thread logs, each paced on its own (sk__log_is_due). */
typedef enum log_source {
    LOG_RELEASE_POLL, /* looking for parked messages */
    LOG_SUBSCRIBE,    /* subscribing to the durable */
    LOG_LOCK,         /* taking the database's consumer lock */
    LOG_PULL,         /* asking for and reading deliveries */
    N_LOG_SOURCES
} log_source;

/* Lock order: mu only; it is never held while calling nats or the store. */
struct sk_consumer {
    sk_bus *bus;
    sk_store *store;
    /*
     * Instances sharing the database take turns: only the holder of the
     * store lock "consumer-<stream>-<durable>" fetches (fetch thread only).
     */
    char *lock_purpose;
    int lock_fd;       /* held lock, or -1 (also when the store is in memory) */
    bool is_consuming; /* this process holds the lock, or nobody can share the store */
    bool is_standby_logged;
    int64_t failing_since_ms;   /* fetches have failed since (monotonic), or 0 */
    bool is_resubscribe_needed; /* a fetch failed: check the durable, subscribe again */
    char *stream;
    char *durable;
    char *filter;
    char *dlq_subject;
    int max_deliver;
    int64_t ack_wait_ms;
    size_t batch;
    size_t max_outstanding;
    sk__reaper reaper; /* destroys settled messages a batch at a time */
    sk_msg_handler_fn handler;
    void *ctx;
    const sk_upcasters *upcasters;
    sk_consumer_order order;

    sk__bus_link *link;       /* fetch thread (and start/stop): the connection pull lives on */
    sk__pull pull;            /* fetch thread; pull.sub NULL until subscribed on the current link */
    uint64_t pull_reconnects; /* link->n_reconnects when pull was opened */
    pthread_t thread;
    bool has_thread;

    pthread_mutex_t mu;
    pthread_cond_t cond;
    /* Protected by mu. */
    bool is_stopping;
    size_t n_outstanding; /* jobs not finished (fetched messages and release units) */
    char **releasing;     /* aggregates with a release unit in flight */
    size_t n_releasing;
    size_t cap_releasing;
    bool is_pruning;    /* an inbox prune unit is in flight */
    bool is_prune_full; /* the last one deleted INBOX_PRUNE_BATCH rows: more are due */

    /* Writer thread only (units and done callbacks). */
    pending *pend;
    size_t n_pend;
    size_t cap_pend;
    /* The open transaction has found no block of this consumer: its messages skip the
     * per-aggregate block lookup. Only a transaction writes blocks (every instance's writer
     * holds SQLite's write lock for its whole batch), so this holds until the batch ends or a
     * unit of it blocks an aggregate. */
    bool has_no_blocks;

    /* Fetch thread only. */
    int64_t last_log_ms[N_LOG_SOURCES]; /* sk__log_is_due, one clock per source */
    int64_t next_poll_ms; /* monotonic */
    int64_t next_prune_ms; /* monotonic */
    bool has_blocked;     /* the last poll saw blocked aggregates that are not dead */

    sk_counter *m_results[RES_COUNT_];
};

/* One message on its way through the store: fetched from JetStream (msg set) or parked. */
typedef struct job {
    sk_consumer *c;
    natsMsg *msg;       /* owned; NULL for a parked message */
    natsConnection *nc; /* msg's: it is settled through it (the link outlives the job) */
    sk_message m;
    sk__envelope_buf envbuf;
    json_t *json;   /* the data as received (original version) */
    json_t *upcast; /* the data upcast to the current version, or NULL */
    json_t *hdrs;   /* the headers as a JSON object (built when needed) */
    char *subject;  /* parked: the NATS subject */
    char *data;     /* parked: the data */
    bool has_env;
    bool is_parked;
    bool work_failed;     /* the unit's own work failed (not its commit) */
    bool is_redrive_head; /* a redrive of this consumer's open dead letter */
    bool is_block_head;   /* handled as the head of its aggregate's block */
    bool is_chain;        /* release: more parked messages to go */
    bool is_kick;         /* the aggregate's parked messages are due now */
    result res;
    sk_status fail_st;
    int orig_version;                   /* schema version as received */
    int64_t position;                   /* stream order within the consumer */
    int64_t attempts;                   /* failed attempts before this one */
    char key[SK_ENVELOPE_MAX_ATTR + 1]; /* aggregate ("" when the envelope is invalid) */
    char redrive_of[SK_UUID_LEN];       /* "" or the dead letter this message redrives */
    char dl_id[SK_UUID_LEN];            /* the dead letter written for it */
    char error[MAX_ERROR_TEXT];
} job;

int64_t sk__consumer_backoff_ms(uint64_t n_delivered)
{
    int64_t d = BACKOFF_BASE_MS;

    for (uint64_t i = 1; i < n_delivered && d < BACKOFF_MAX_MS; i++) {
        d *= 2;
    }
    return d > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : d;
}

static void count(sk_consumer *c, result r)
{
    if (r < RES_COUNT_ && c->m_results[r] != NULL) {
        sk_counter_add(c->m_results[r], 1);
    }
}

static void set_error(job *j, const char *text)
{
    snprintf(j->error, sizeof(j->error), "%s", text != NULL ? text : "");
}

/* Release a job: its message is settled (acked, naked or terminated) by now. */
static void job_finish(job *j)
{
    sk_consumer *c = j->c;

    sk__reaper_add(&c->reaper, j->msg);
    json_decref(j->json);
    json_decref(j->upcast);
    json_decref(j->hdrs);
    sk_free(j->subject);
    sk_free(j->data);
    sk_free(j);
    sk__msg_lock(&c->mu);
    c->n_outstanding--;
    pthread_cond_broadcast(&c->cond);
    sk__msg_unlock(&c->mu);
}

static void job_nak(job *j, int64_t delay_ms)
{
    if (j->msg == NULL) {
        return;
    }
    natsStatus s = sk__js_ack(j->nc, j->msg, SK__JS_NAK, delay_ms);
    if (s != NATS_OK) {
        /* Not fatal: the server redelivers after AckWait anyway. */
        SK_LOG_DEBUG("consumer %s: nak failed: %s", j->c->durable, natsStatus_GetText(s));
    }
}

static void job_ack(job *j, bool is_term)
{
    if (j->msg == NULL) {
        return;
    }
    /* Term: the server never redelivers it; the dead letter is the record. */
    natsStatus s = sk__js_ack(j->nc, j->msg, is_term ? SK__JS_TERM : SK__JS_ACK, 0);
    if (s != NATS_OK) {
        /* A redelivery finds the inbox row (or the parked row) and is acked then. */
        SK_LOG_DEBUG("consumer %s: ack failed: %s", j->c->durable, natsStatus_GetText(s));
    }
}

/* ---------------------------------------------------------------- pending set (writer thread) */

static pending *pending_find(sk_consumer *c, const char *key)
{
    for (size_t i = 0; i < c->n_pend; i++) {
        if (strcmp(c->pend[i].key, key) == 0) {
            return &c->pend[i];
        }
    }
    return NULL;
}

/*
 * Remember that @p key's head at @p position failed and is not parked yet.
 * Out of memory only weakens ordering within this window (the block row
 * written with the park still orders what comes later), so it is logged.
 */
static void pending_add(sk_consumer *c, const char *key, int64_t position)
{
    pending *p = pending_find(c, key);

    if (p != NULL) {
        p->position = position;
        return;
    }
    if (c->n_pend == c->cap_pend) {
        size_t cap = c->cap_pend == 0 ? 8 : c->cap_pend * 2;
        pending *grown = sk_realloc(c->pend, cap * sizeof(*grown));
        if (grown == NULL) {
            SK_LOG_WARN("consumer %s: out of memory remembering a failed message", c->durable);
            return;
        }
        c->pend = grown;
        c->cap_pend = cap;
    }
    c->pend[c->n_pend].key = sk_strdup(key);
    if (c->pend[c->n_pend].key == NULL) {
        SK_LOG_WARN("consumer %s: out of memory remembering a failed message", c->durable);
        return;
    }
    c->pend[c->n_pend].position = position;
    c->n_pend++;
}

static void pending_remove(sk_consumer *c, const char *key)
{
    pending *p = pending_find(c, key);

    if (p != NULL) {
        sk_free(p->key);
        *p = c->pend[--c->n_pend];
    }
}

/* ---------------------------------------------------------------- releasing set (mu) */

static bool releasing_take(sk_consumer *c, const char *key)
{
    bool is_taken = false;

    sk__msg_lock(&c->mu);
    for (size_t i = 0; i < c->n_releasing; i++) {
        if (strcmp(c->releasing[i], key) == 0) {
            is_taken = true;
        }
    }
    if (!is_taken && !c->is_stopping) {
        if (c->n_releasing == c->cap_releasing) {
            size_t cap = c->cap_releasing == 0 ? 8 : c->cap_releasing * 2;
            char **grown = sk_realloc(c->releasing, cap * sizeof(*grown));
            if (grown != NULL) {
                c->releasing = grown;
                c->cap_releasing = cap;
            }
        }
        if (c->n_releasing < c->cap_releasing &&
            (c->releasing[c->n_releasing] = sk_strdup(key)) != NULL) {
            c->n_releasing++;
            c->n_outstanding++; /* for the job about to be created */
            sk__msg_unlock(&c->mu);
            return true;
        }
    }
    sk__msg_unlock(&c->mu);
    return false;
}

static void releasing_drop(sk_consumer *c, const char *key)
{
    sk__msg_lock(&c->mu);
    for (size_t i = 0; i < c->n_releasing; i++) {
        if (strcmp(c->releasing[i], key) == 0) {
            sk_free(c->releasing[i]);
            c->releasing[i] = c->releasing[--c->n_releasing];
            break;
        }
    }
    sk__msg_unlock(&c->mu);
}

/* ---------------------------------------------------------------- tables */

static const char *const schema_sql[] = {
    /* One row per blocked aggregate of a consumer. head_position: stream
     * position of the message at the head (NULL: the first parked row);
     * dead_letter_id: set while the head is a dead letter; next_ms: when the
     * head is retried (epoch ms). */
    "CREATE TABLE IF NOT EXISTS sk_msg_blocked ("
    " consumer TEXT NOT NULL,"
    " aggregate TEXT NOT NULL,"
    " head_position INTEGER,"
    " dead_letter_id TEXT,"
    " next_ms INTEGER NOT NULL,"
    " since_ms INTEGER NOT NULL,"
    " PRIMARY KEY (consumer, aggregate))",
    "CREATE INDEX IF NOT EXISTS sk_msg_blocked_dead ON sk_msg_blocked (dead_letter_id)",
    /* Messages waiting behind the head of their aggregate (the head too
     * while it is retried), in position order. */
    "CREATE TABLE IF NOT EXISTS sk_msg_parked ("
    " consumer TEXT NOT NULL,"
    " msg_id TEXT NOT NULL,"
    " aggregate TEXT NOT NULL,"
    " position INTEGER NOT NULL,"
    " subject TEXT NOT NULL,"
    " headers TEXT NOT NULL,"
    " data BLOB NOT NULL,"
    " attempts INTEGER NOT NULL,"
    " last_error TEXT,"
    " parked_ms INTEGER NOT NULL,"
    " PRIMARY KEY (consumer, msg_id))",
    ("CREATE INDEX IF NOT EXISTS sk_msg_parked_order ON sk_msg_parked (consumer, aggregate, "
     "position)"),
};

static sk_status schema_work(sk_tx *tx, void *ctx)
{
    (void)ctx;
    for (size_t i = 0; i < sizeof(schema_sql) / sizeof(schema_sql[0]); i++) {
        sk_status st = sk_tx_exec(tx, schema_sql[i], NULL, 0, NULL);
        if (st != SK_OK) {
            return SK_WRAP(st, "creating the parking tables");
        }
    }
    return SK_OK;
}

static sk_status inbox_insert(sk_tx *tx, job *j, int64_t *changes)
{
    sk_db_value p[3] = { SK_DB_TEXT_V(j->c->durable), SK_DB_TEXT_V(j->m.env.id),
                         SK_DB_INT_V(sk_time_now_ms()) };
    sk_status st =
        sk_tx_exec(tx,
                   "INSERT INTO sk_inbox (consumer, msg_id, processed_ms) VALUES (?, ?, ?) "
                   "ON CONFLICT (consumer, msg_id) DO NOTHING",
                   p, 3, changes);
    if (st != SK_OK) {
        return SK_WRAP(st, "consumer %s: recording message %s in the inbox", j->c->durable,
                       j->m.env.id);
    }
    return SK_OK;
}

static sk_status inbox_has(sk_tx *tx, job *j, bool *has)
{
    sk_db_value p[2] = { SK_DB_TEXT_V(j->c->durable), SK_DB_TEXT_V(j->m.env.id) };
    int64_t n = 0;
    sk_status st = sk_tx_query_int(
        tx, "SELECT COUNT(*) FROM sk_inbox WHERE consumer = ? AND msg_id = ?", p, 2, &n);
    *has = st == SK_OK && n > 0;
    return st == SK_OK ? SK_OK : SK_WRAP(st, "consumer %s: reading the inbox", j->c->durable);
}

/* The block of @p key: *found false when none; head -1 when NULL; dl_id "" when not dead. */
typedef struct block {
    bool found;
    int64_t head;
    int64_t next_ms;
    char dl_id[SK_UUID_LEN];
} block;

static void blocks_forget(void *ctx)
{
    sk_consumer *c = ctx;
    c->has_no_blocks = false;
}

/* Whether this consumer has no block at all: asked once per transaction (batch). */
static sk_status blocks_none(sk_tx *tx, sk_consumer *c, bool *none)
{
    sk_db_value p[1] = { SK_DB_TEXT_V(c->durable) };
    int64_t any = 1;

    *none = c->has_no_blocks;
    if (*none) {
        return SK_OK;
    }
    sk_status st = sk_tx_query_int(
        tx, "SELECT EXISTS (SELECT 1 FROM sk_msg_blocked WHERE consumer = ?)", p, 1, &any);
    if (st != SK_OK) {
        return SK_WRAP(st, "consumer %s: looking for blocks", c->durable);
    }
    /* Remembered only with a hook that forgets it when the batch commits or fails. */
    *none = any == 0;
    c->has_no_blocks =
        *none && sk_tx_after_commit_or_discard(tx, blocks_forget, blocks_forget, c) == SK_OK;
    return SK_OK;
}

static sk_status block_get(sk_tx *tx, sk_consumer *c, const char *key, block *b)
{
    sk_db_value p[2] = { SK_DB_TEXT_V(c->durable), SK_DB_TEXT_V(key) };
    sk_rows *rows = NULL;
    sk_status st;

    *b = (block){ .head = -1 };
    st = sk_tx_query(tx,
                     "SELECT head_position, dead_letter_id, next_ms FROM sk_msg_blocked "
                     "WHERE consumer = ? AND aggregate = ?",
                     p, 2, &rows);
    if (st == SK_OK) {
        st = sk_rows_next(rows);
        if (st == SK_OK) {
            b->found = true;
            b->head = sk_rows_is_null(rows, 0) ? -1 : sk_rows_int(rows, 0);
            snprintf(b->dl_id, sizeof(b->dl_id), "%s", sk_rows_text(rows, 1, NULL));
            b->next_ms = sk_rows_int(rows, 2);
        } else if (st == SK_ENOTFOUND) {
            st = SK_OK;
        }
    }
    sk_rows_close(rows);
    return st == SK_OK ? SK_OK
                       : SK_WRAP(st, "consumer %s: reading the block of %.80s", c->durable, key);
}

/*
 * Create or replace the block of @p key. @p head -1 for NULL; @p dl_id NULL
 * when not dead. @p is_replace false keeps an existing block as it is.
 */
static sk_status block_put(sk_tx *tx,
                           sk_consumer *c,
                           const char *key,
                           int64_t head,
                           const char *dl_id,
                           int64_t next_ms,
                           bool is_replace)
{
    c->has_no_blocks = false;
    sk_db_value p[6] = {
        SK_DB_TEXT_V(c->durable),
        SK_DB_TEXT_V(key),
        head >= 0 ? SK_DB_INT_V(head) : SK_DB_NULL_V,
        dl_id != NULL ? SK_DB_TEXT_V(dl_id) : SK_DB_NULL_V,
        SK_DB_INT_V(next_ms),
        SK_DB_INT_V(sk_time_now_ms()),
    };
    sk_status st =
        sk_tx_exec(tx,
                   is_replace ? "INSERT INTO sk_msg_blocked (consumer, aggregate, head_position, "
                                "dead_letter_id, next_ms, since_ms) VALUES (?, ?, ?, ?, ?, ?) "
                                "ON CONFLICT (consumer, aggregate) DO UPDATE SET head_position = "
                                "excluded.head_position, dead_letter_id = excluded.dead_letter_id, "
                                "next_ms = excluded.next_ms"
                              : "INSERT INTO sk_msg_blocked (consumer, aggregate, head_position, "
                                "dead_letter_id, next_ms, since_ms) VALUES (?, ?, ?, ?, ?, ?) "
                                "ON CONFLICT (consumer, aggregate) DO NOTHING",
                   p, 6, NULL);
    return st == SK_OK ? SK_OK : SK_WRAP(st, "consumer %s: blocking %.80s", c->durable, key);
}

static sk_status block_delete(sk_tx *tx, sk_consumer *c, const char *key)
{
    sk_db_value p[2] = { SK_DB_TEXT_V(c->durable), SK_DB_TEXT_V(key) };
    sk_status st = sk_tx_exec(tx, "DELETE FROM sk_msg_blocked WHERE consumer = ? AND aggregate = ?",
                              p, 2, NULL);
    return st == SK_OK ? SK_OK : SK_WRAP(st, "consumer %s: unblocking %.80s", c->durable, key);
}

static sk_status parked_count(sk_tx *tx, sk_consumer *c, const char *key, int64_t *n)
{
    sk_db_value p[2] = { SK_DB_TEXT_V(c->durable), SK_DB_TEXT_V(key) };
    sk_status st = sk_tx_query_int(
        tx, "SELECT COUNT(*) FROM sk_msg_parked WHERE consumer = ? AND aggregate = ?", p, 2, n);
    return st == SK_OK ? SK_OK : SK_WRAP(st, "consumer %s: counting parked messages", c->durable);
}

static sk_status parked_delete(sk_tx *tx, job *j)
{
    sk_db_value p[2] = { SK_DB_TEXT_V(j->c->durable), SK_DB_TEXT_V(j->m.env.id) };
    sk_status st =
        sk_tx_exec(tx, "DELETE FROM sk_msg_parked WHERE consumer = ? AND msg_id = ?", p, 2, NULL);
    return st == SK_OK ? SK_OK
                       : SK_WRAP(st, "consumer %s: unparking %s", j->c->durable, j->m.env.id);
}

/* The received headers as a JSON object of strings (first value of each). */
static json_t *headers_json(natsMsg *msg)
{
    const char **keys = NULL;
    json_t *obj = json_object();
    int n = 0;

    if (obj == NULL) {
        return NULL;
    }
    if (natsMsgHeader_Keys(msg, &keys, &n) != NATS_OK) {
        return obj;
    }
    for (int i = 0; i < n; i++) {
        const char *v = NULL;
        if (natsMsgHeader_Get(msg, keys[i], &v) == NATS_OK && v != NULL) {
            json_t *s = json_string(v);
            /* Header bytes that are not UTF-8 cannot go into JSON as they are. */
            if (s == NULL) {
                s = json_string("<not UTF-8>");
            }
            if (s != NULL && json_object_set_new(obj, keys[i], s) != 0) {
                /* out of memory: keep what we have */
            }
        }
    }
    sk__nats_free(keys);
    return obj;
}

/* The job's headers as a JSON object (borrowed from the job), NULL on out of memory. */
static json_t *job_hdrs(job *j)
{
    if (j->hdrs == NULL && j->msg != NULL) {
        j->hdrs = headers_json(j->msg);
    }
    return j->hdrs;
}

/*
 * Park @p j behind its aggregate's head. @p is_head: it is the head that
 * failed (its attempts and error are updated when it is parked already);
 * otherwise a message already parked is a duplicate (*is_dup).
 */
static sk_status park(sk_tx *tx, job *j, bool is_head, int64_t attempts, bool *is_dup)
{
    sk_consumer *c = j->c;
    json_t *hdrs = job_hdrs(j);
    char *hdrs_text = hdrs != NULL ? sk_json_dumps(hdrs) : NULL;
    int64_t changes = 0;
    sk_status st;

    *is_dup = false;
    if (hdrs_text == NULL) {
        return SK_FAIL(SK_ENOMEM, "consumer %s: serialising the headers of %s", c->durable,
                       j->m.env.id);
    }
    sk_db_value p[10] = {
        SK_DB_TEXT_V(c->durable),
        SK_DB_TEXT_V(j->m.env.id),
        SK_DB_TEXT_V(j->key),
        SK_DB_INT_V(j->position),
        SK_DB_TEXT_V(j->m.nats_subject != NULL ? j->m.nats_subject : ""),
        SK_DB_TEXT_V(hdrs_text),
        SK_DB_BLOB_V(j->m.data.len > 0 ? (const char *)j->m.data.ptr : "", j->m.data.len),
        SK_DB_INT_V(attempts),
        SK_DB_TEXT_V(j->error),
        SK_DB_INT_V(sk_time_now_ms()),
    };
    st = sk_tx_exec(tx,
                    is_head ? "INSERT INTO sk_msg_parked (consumer, msg_id, aggregate, position, "
                              "subject, headers, data, attempts, last_error, parked_ms) VALUES "
                              "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (consumer, msg_id) DO "
                              "UPDATE SET attempts = excluded.attempts, last_error = "
                              "excluded.last_error, position = excluded.position"
                            : "INSERT INTO sk_msg_parked (consumer, msg_id, aggregate, position, "
                              "subject, headers, data, attempts, last_error, parked_ms) VALUES "
                              "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (consumer, msg_id) DO "
                              "NOTHING",
                    p, 10, &changes);
    sk_free(hdrs_text);
    if (st != SK_OK) {
        return SK_WRAP(st, "consumer %s: parking %s", c->durable, j->m.env.id);
    }
    *is_dup = !is_head && changes == 0;
    return SK_OK;
}

/* ---------------------------------------------------------------- dead letters */

/* A record on dlq.<durable> through the outbox; @p subject is the dead letter id. */
static sk_status dlq_publish(sk_tx *tx, job *j, const char *type, const char *subject, json_t *body)
{
    sk_envelope env;
    sk_status st;

    sk_envelope_init(&env, type, j->c->durable, subject, j->has_env ? j->m.env.traceparent : NULL);
    st = sk_outbox_add(tx, j->c->dlq_subject, &env, body);
    if (st == SK_ELIMIT) {
        /* The original payload makes it too large: publish the record without it. */
        json_object_del(body, "data");
        json_object_del(body, "data_base64url");
        SK_IGNORE(json_object_set_new(body, "data_omitted", json_true())); /* best effort */
        st = sk_outbox_add(tx, j->c->dlq_subject, &env, body);
    }
    return st;
}

/*
 * Write @p j as a dead letter: sk_dead_letters, a record on dlq.<durable>,
 * the inbox row (so a redelivery is a duplicate), and its aggregate blocked
 * behind it. Sets j->dl_id.
 */
static sk_status dl_write(sk_tx *tx, job *j)
{
    sk_consumer *c = j->c;
    const char *data = (const char *)j->m.data.ptr;
    size_t data_len = j->m.data.len;
    sk_status st = SK_OK;
    json_t *hdrs = job_hdrs(j), *body = NULL;
    char *hdrs_text = NULL;
    int64_t now = sk_time_now_ms();

    sk_uuid7(j->dl_id);
    if (hdrs == NULL || (hdrs_text = sk_json_dumps(hdrs)) == NULL) {
        st = SK_FAIL(SK_ENOMEM, "consumer %s: serialising dead letter headers", c->durable);
        goto out;
    }
    {
        sk_db_value p[9] = {
            SK_DB_TEXT_V(j->dl_id),
            SK_DB_TEXT_V(c->durable),
            SK_DB_TEXT_V(j->m.nats_subject != NULL ? j->m.nats_subject : ""),
            j->has_env ? SK_DB_TEXT_V(j->m.env.id) : SK_DB_NULL_V,
            SK_DB_TEXT_V(hdrs_text),
            SK_DB_BLOB_V(data != NULL ? data : "", data_len),
            SK_DB_TEXT_V(j->error),
            SK_DB_INT_V(j->m.n_delivered),
            SK_DB_INT_V(now),
        };
        st =
            sk_tx_exec(tx,
                       "INSERT INTO sk_dead_letters (id, consumer, subject, msg_id, headers, data, "
                       "error, deliveries, created_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       p, 9, NULL);
        if (st != SK_OK) {
            st = SK_WRAP(st, "consumer %s: inserting dead letter", c->durable);
            goto out;
        }
    }
    body = json_pack(
        "{s:s, s:s, s:s, s:o, s:s, s:I, s:I, s:I, s:I, s:O}", "id", j->dl_id, "consumer",
        c->durable, "nats_subject", j->m.nats_subject != NULL ? j->m.nats_subject : "", "msg_id",
        j->has_env ? json_string(j->m.env.id) : json_null(), "error", j->error, "deliveries",
        (json_int_t)j->m.n_delivered, "stream_seq", (json_int_t)j->m.stream_seq, "position",
        (json_int_t)j->position, "time_ms", (json_int_t)now, "headers", hdrs);
    if (body == NULL) {
        st = SK_FAIL(SK_ENOMEM, "consumer %s: building the dead letter message", c->durable);
        goto out;
    }
    if (j->has_env) {
        SK_IGNORE(json_object_set_new(body, "type", json_string(j->m.env.type)));
        SK_IGNORE(json_object_set_new(body, "aggregate", json_string(j->m.env.subject)));
        SK_IGNORE(json_object_set_new(body, "schema_version", json_integer(j->orig_version)));
    }
    if (j->redrive_of[0] != '\0') {
        SK_IGNORE(json_object_set_new(body, "redrive_of", json_string(j->redrive_of)));
    }
    if (j->json != NULL) {
        SK_IGNORE(json_object_set(body, "data", j->json)); /* out of memory: sent without data */
    } else if (data_len > 0 && data_len <= SK_MAX_MSG_PAYLOAD) {
        char *b64 = sk_malloc(4 * ((data_len + 2) / 3) + 1);
        if (b64 != NULL) {
            sk_base64url_encode(data, data_len, b64);
            SK_IGNORE(json_object_set_new(body, "data_base64url", json_string(b64)));
            sk_free(b64);
        }
    }
    if ((st = dlq_publish(tx, j, "DeadLetter", j->dl_id, body)) != SK_OK) {
        goto out;
    }
    if (j->has_env) {
        if ((st = inbox_insert(tx, j, NULL)) != SK_OK) {
            goto out;
        }
        if (j->key[0] != '\0' &&
            (st = block_put(tx, c, j->key, j->position, j->dl_id, 0, true)) != SK_OK) {
            goto out;
        }
        if (j->is_parked) {
            st = parked_delete(tx, j);
        }
    }
out:
    json_decref(body);
    sk_free(hdrs_text);
    return st;
}

/* The redrive of dead letter j->redrive_of was handled: say so on dlq.<durable>. */
static sk_status dl_resolve(sk_tx *tx, job *j)
{
    sk_consumer *c = j->c;
    sk_db_value p[2] = { SK_DB_TEXT_V(j->redrive_of), SK_DB_TEXT_V(c->durable) };
    int64_t n = 0;
    json_t *body = NULL;
    sk_status st;

    st = sk_tx_query_int(tx, "SELECT COUNT(*) FROM sk_dead_letters WHERE id = ? AND consumer = ?",
                         p, 2, &n);
    if (st != SK_OK || n == 0) {
        /* Not ours (another consumer's dead letter, or none). */
        return st == SK_OK ? SK_OK : SK_WRAP(st, "consumer %s: reading dead letters", c->durable);
    }
    body = json_pack("{s:s, s:s, s:s, s:s, s:I}", "id", j->redrive_of, "consumer", c->durable,
                     "msg_id", j->m.env.id, "aggregate", j->m.env.subject, "time_ms",
                     (json_int_t)sk_time_now_ms());
    if (body == NULL) {
        return SK_FAIL(SK_ENOMEM, "consumer %s: building the resolution record", c->durable);
    }
    st = dlq_publish(tx, j, "DeadLetterResolved", j->redrive_of, body);
    json_decref(body);
    return st;
}

/* ---------------------------------------------------------------- handling */

/*
 * Check the data and bring it to the current version: SK_EPROTO/SK_ELIMIT
 * (with the reason) when the message can never be handled.
 */
static sk_status job_prepare(job *j)
{
    sk_status st;

    if (j->m.data.len > SK_MAX_MSG_PAYLOAD) {
        return SK_FAIL(SK_ELIMIT, "payload of %zu bytes is over the limit of %u bytes",
                       j->m.data.len, SK_MAX_MSG_PAYLOAD);
    }
    if (j->json == NULL) {
        st = sk_json_parse_object(j->m.data, &j->json);
        if (st != SK_OK) {
            return SK_WRAP(st, "invalid data");
        }
    }
    j->m.json = j->json;
    j->m.env.schema_version = j->orig_version;
    json_decref(j->upcast);
    j->upcast = NULL;
    st = sk_msg_upcast(j->c->upcasters, &j->m, &j->upcast);
    if (st != SK_OK) {
        return SK_WRAP(st, "invalid schema version");
    }
    return SK_OK;
}

/* Run the handler; on failure remember the aggregate as pending. */
static sk_status job_run(sk_tx *tx, job *j)
{
    sk_consumer *c = j->c;
    sk_status st = c->handler(tx, &j->m, c->ctx);

    if (st != SK_OK) {
        if (sk_error_status() != st) {
            /* A handler that returned a bare status: give it a message. */
            st = SK_FAIL(st, "handler returned %s", sk_status_name(st));
        }
        j->work_failed = true;
        j->fail_st = st;
        pending_add(c, j->key, j->position);
    }
    return st;
}

/* After the head of a block was handled: unblock, or let the parked ones follow. */
static sk_status head_done(sk_tx *tx, job *j)
{
    int64_t n = 0;
    sk_status st = parked_count(tx, j->c, j->key, &n);

    if (st == SK_OK) {
        if (n == 0) {
            st = block_delete(tx, j->c, j->key);
        } else {
            st = block_put(tx, j->c, j->key, -1, NULL, 0, true);
            j->is_kick = true;
        }
    }
    if (st == SK_OK && j->redrive_of[0] != '\0') {
        st = dl_resolve(tx, j);
    }
    return st;
}

/* A redrive of one of this consumer's open dead letters: handled as its aggregate's head. */
static sk_status redrive_check(sk_tx *tx, job *j)
{
    sk_consumer *c = j->c;
    sk_db_value p[3] = { SK_DB_TEXT_V(c->durable), SK_DB_TEXT_V(j->key),
                         SK_DB_TEXT_V(j->redrive_of) };
    sk_rows *rows = NULL;
    sk_status st;

    st =
        sk_tx_query(tx,
                    "SELECT head_position FROM sk_msg_blocked WHERE consumer = ? AND aggregate = ? "
                    "AND dead_letter_id = ?",
                    p, 3, &rows);
    if (st == SK_OK) {
        st = sk_rows_next(rows);
        if (st == SK_OK) {
            j->is_redrive_head = true;
            if (!sk_rows_is_null(rows, 0)) {
                j->position = sk_rows_int(rows, 0); /* its place is the original one */
            }
        } else if (st == SK_ENOTFOUND) {
            st = SK_OK;
        }
    }
    sk_rows_close(rows);
    if (st != SK_OK) {
        return SK_WRAP(st, "consumer %s: looking up dead letter %s", c->durable, j->redrive_of);
    }
    if (j->is_redrive_head) {
        /* Dead-lettering recorded it in the inbox; it is to be handled again now. */
        sk_db_value q[2] = { SK_DB_TEXT_V(c->durable), SK_DB_TEXT_V(j->m.env.id) };
        st = sk_tx_exec(tx, "DELETE FROM sk_inbox WHERE consumer = ? AND msg_id = ?", q, 2, NULL);
        if (st != SK_OK) {
            return SK_WRAP(st, "consumer %s: clearing the inbox for a redrive", c->durable);
        }
    }
    return SK_OK;
}

/* Validation failed for good (or the handler said so): dead-letter within this unit. */
static sk_status dead_now(sk_tx *tx, job *j, const char *why)
{
    set_error(j, why);
    sk_status st = dl_write(tx, j);
    if (st == SK_OK) {
        j->res = RES_DEAD;
    }
    return st;
}

/* Unit for a message fetched from JetStream. */
static sk_status handle_work(sk_tx *tx, void *ctx)
{
    job *j = ctx;
    sk_consumer *c = j->c;
    int64_t changes = 0;
    sk_status st;

    j->res = RES_OK;
    j->work_failed = false;
    j->is_redrive_head = false;
    j->is_block_head = false;
    j->is_kick = false;
    if (!j->has_env) {
        st = dl_write(tx, j);
        if (st == SK_OK) {
            j->res = RES_DEAD;
        }
        return st;
    }
    if (j->redrive_of[0] != '\0' && (st = redrive_check(tx, j)) != SK_OK) {
        return st;
    }
    if (!j->is_redrive_head) {
        pending *p = pending_find(c, j->key);
        block b = { .head = -1 };
        bool is_none = false;
        if ((st = blocks_none(tx, c, &is_none)) != SK_OK ||
            (!is_none && (st = block_get(tx, c, j->key, &b)) != SK_OK)) {
            return st;
        }
        int64_t head = b.found ? b.head : p != NULL ? p->position : -1;
        if (b.found || p != NULL) {
            if (head == j->position && b.dl_id[0] == '\0') {
                /* The head itself, back from JetStream (its park did not happen). */
                j->is_block_head = true;
            } else {
                bool has = false, is_dup = false;
                if ((st = inbox_has(tx, j, &has)) != SK_OK) {
                    return st;
                }
                if (has) {
                    j->res = RES_DUP;
                    return SK_OK;
                }
                if ((st = park(tx, j, false, 0, &is_dup)) != SK_OK) {
                    return st;
                }
                if (!b.found &&
                    (st = block_put(tx, c, j->key, head, NULL, sk_time_now_ms() + BACKOFF_BASE_MS,
                                    false)) != SK_OK) {
                    return st;
                }
                j->res = is_dup ? RES_DUP : RES_PARKED;
                return SK_OK;
            }
        }
    }
    if ((st = inbox_insert(tx, j, &changes)) != SK_OK) {
        return st;
    }
    if (changes == 0) {
        j->res = RES_DUP;
        return SK_OK;
    }
    st = job_prepare(j);
    if (st == SK_EPROTO || st == SK_ELIMIT) {
        return dead_now(tx, j, sk_error_message());
    }
    if (st != SK_OK) {
        j->work_failed = true;
        j->fail_st = st;
        pending_add(c, j->key, j->position);
        return st;
    }
    if ((st = job_run(tx, j)) != SK_OK) {
        return st;
    }
    if (j->is_redrive_head || j->is_block_head) {
        st = head_done(tx, j);
    }
    return st;
}

static void release_submit(sk_consumer *c, const char *key);

/*
 * Unit after a failed handler (its own unit rolled back): park the message
 * as its aggregate's head to be retried with backoff, or dead-letter it
 * when the failure is permanent (SK_EPROTO) or the attempts are used up.
 */
static sk_status fail_work(sk_tx *tx, void *ctx)
{
    job *j = ctx;
    sk_consumer *c = j->c;
    int64_t attempts = j->is_parked ? j->attempts + 1 : (int64_t)j->m.n_delivered;
    bool is_dup = false;
    sk_status st;

    j->res = RES_RETRY;
    if (j->is_redrive_head) {
        /* The failed unit's rollback brought back the inbox row of the dead letter. */
        sk_db_value q[2] = { SK_DB_TEXT_V(c->durable), SK_DB_TEXT_V(j->m.env.id) };
        st = sk_tx_exec(tx, "DELETE FROM sk_inbox WHERE consumer = ? AND msg_id = ?", q, 2, NULL);
        if (st != SK_OK) {
            return SK_WRAP(st, "consumer %s: clearing the inbox for a redrive", c->durable);
        }
    } else if (!j->is_parked) {
        bool has = false;
        /* Another instance may have handled it meanwhile. */
        if ((st = inbox_has(tx, j, &has)) != SK_OK) {
            return st;
        }
        if (has) {
            j->res = RES_DUP;
            return SK_OK;
        }
    }
    j->m.n_delivered = (uint64_t)attempts;
    if (j->fail_st == SK_EPROTO || attempts >= c->max_deliver) {
        st = dl_write(tx, j);
        if (st == SK_OK) {
            j->res = RES_DEAD;
        }
        return st;
    }
    if ((st = park(tx, j, true, attempts, &is_dup)) != SK_OK) {
        return st;
    }
    return block_put(tx, c, j->key, j->position, NULL,
                     sk_time_now_ms() + sk__consumer_backoff_ms((uint64_t)attempts), true);
}

static void log_dead(job *j)
{
    SK_LOG_WARN("consumer %s: dead letter %s subject=%s msg_id=%s aggregate=%s deliveries=%llu: %s",
                j->c->durable, j->dl_id, j->m.nats_subject ? j->m.nats_subject : "",
                j->has_env ? j->m.env.id : "-", j->key[0] != '\0' ? j->key : "-",
                (unsigned long long)j->m.n_delivered, j->error);
}

static void fail_done(sk_status st, const char *message, void *ctx)
{
    job *j = ctx;
    sk_consumer *c = j->c;

    if (st == SK_OK) {
        pending_remove(c, j->key);
        if (j->res == RES_DEAD) {
            log_dead(j);
        } else if (j->res == RES_RETRY) {
            SK_LOG_INFO("consumer %s: message %s failed (attempt %llu of %d), retrying: %s",
                        c->durable, j->m.env.id, (unsigned long long)j->m.n_delivered,
                        c->max_deliver, j->error);
        }
        job_ack(j, j->res == RES_DEAD);
        count(c, j->res);
    } else {
        SK_LOG_WARN("consumer %s: parking failed message %s failed: %s", c->durable, j->m.env.id,
                    message);
        job_nak(j, REQUEUE_DELAY_MS);
        count(c, RES_RETRY);
    }
    if (j->is_parked) {
        releasing_drop(c, j->key);
    }
    job_finish(j);
}

/* A unit failed: its own work (park or dead-letter it in a new unit) or its commit (redeliver). */
static void job_failed(job *j, const char *message)
{
    sk_consumer *c = j->c;

    if (j->work_failed) {
        set_error(j, message);
        if (sk_store_submit(c->store, fail_work, fail_done, j) == SK_OK) {
            return;
        }
    }
    SK_LOG_INFO("consumer %s: message %s not handled, redelivering: %s", c->durable,
                j->has_env ? j->m.env.id : "-", message);
    job_nak(j, REQUEUE_DELAY_MS);
    count(c, RES_RETRY);
    if (j->is_parked) {
        releasing_drop(c, j->key);
    }
    job_finish(j);
}

static void handle_done(sk_status st, const char *message, void *ctx)
{
    job *j = ctx;
    sk_consumer *c = j->c;

    if (st != SK_OK) {
        job_failed(j, message);
        return;
    }
    if (j->res == RES_OK && (j->is_block_head || j->is_redrive_head)) {
        pending_remove(c, j->key);
    }
    if (j->res == RES_DEAD) {
        log_dead(j);
    }
    job_ack(j, j->res == RES_DEAD);
    count(c, j->res);
    if (j->is_kick) {
        release_submit(c, j->key);
    }
    job_finish(j);
}

/* ---------------------------------------------------------------- releasing parked messages */

/* Load the first parked message of j->key into @p j. *found false when there is none. */
static sk_status parked_load(sk_tx *tx, job *j, bool *found)
{
    sk_consumer *c = j->c;
    sk_db_value p[2] = { SK_DB_TEXT_V(c->durable), SK_DB_TEXT_V(j->key) };
    sk_rows *rows = NULL;
    sk_status st;
    size_t len = 0;
    const char *text;

    *found = false;
    st = sk_tx_query(tx,
                     "SELECT position, subject, headers, data, attempts FROM sk_msg_parked "
                     "WHERE consumer = ? AND aggregate = ? ORDER BY position LIMIT 1",
                     p, 2, &rows);
    if (st == SK_OK) {
        st = sk_rows_next(rows);
    }
    if (st == SK_ENOTFOUND) {
        sk_rows_close(rows);
        return SK_OK;
    }
    if (st != SK_OK) {
        sk_rows_close(rows);
        return SK_WRAP(st, "consumer %s: reading parked messages", c->durable);
    }
    *found = true;
    j->position = sk_rows_int(rows, 0);
    j->attempts = sk_rows_int(rows, 4);
    j->subject = sk_strdup(sk_rows_text(rows, 1, NULL));
    text = sk_rows_text(rows, 3, &len);
    j->data = sk_malloc(len + 1);
    if (j->data != NULL) {
        memcpy(j->data, text, len);
        j->data[len] = '\0';
    }
    text = sk_rows_text(rows, 2, NULL);
    st = j->subject == NULL || j->data == NULL
             ? SK_FAIL(SK_ENOMEM, "consumer %s: copying a parked message", c->durable)
             : sk_json_parse_object(sk_slice_from_str(text), &j->hdrs);
    if (st == SK_OK) {
        st = sk__envelope_from_json(sk_slice_from_str(text), &j->m.env, &j->envbuf);
        j->has_env = st == SK_OK;
    }
    sk_rows_close(rows);
    if (st != SK_OK) {
        return SK_WRAP(st, "consumer %s: parked message of %.80s", c->durable, j->key);
    }
    j->m.nats_subject = j->subject;
    j->m.data = (sk_slice){ (const uint8_t *)j->data, len };
    j->m.stream_seq = (uint64_t)j->position;
    j->m.n_delivered = (uint64_t)j->attempts + 1;
    j->orig_version = j->m.env.schema_version;
    {
        json_t *r = json_object_get(j->hdrs, SK_DLQ_HDR_REDRIVE);
        if (json_is_string(r) && json_string_length(r) == SK_UUID_LEN - 1) {
            snprintf(j->redrive_of, sizeof(j->redrive_of), "%s", json_string_value(r));
        }
    }
    return SK_OK;
}

/* Unit: handle the first parked message of j->key when it is due. */
static sk_status release_work(sk_tx *tx, void *ctx)
{
    job *j = ctx;
    sk_consumer *c = j->c;
    int64_t now = sk_time_now_ms(), changes = 0, n_left = 0;
    bool found = false;
    block b;
    sk_status st;

    j->res = RES_NONE;
    if (pending_find(c, j->key) != NULL) {
        return SK_OK; /* its head failed a moment ago and is being parked */
    }
    if ((st = block_get(tx, c, j->key, &b)) != SK_OK) {
        return st;
    }
    if (!b.found || b.dl_id[0] != '\0' || b.next_ms > now) {
        return SK_OK;
    }
    if ((st = parked_load(tx, j, &found)) != SK_OK) {
        return st;
    }
    if (!found) {
        return block_delete(tx, c, j->key);
    }
    if (b.head >= 0 && j->position > b.head) {
        /* The head is not parked: it is still in JetStream and comes back from there. */
        return block_put(tx, c, j->key, b.head, NULL, now + HEAD_WAIT_MS, true);
    }
    j->res = RES_OK;
    if ((st = parked_delete(tx, j)) != SK_OK ||
        (st = parked_count(tx, c, j->key, &n_left)) != SK_OK) {
        return st;
    }
    j->is_chain = n_left > 0;
    st = n_left == 0 ? block_delete(tx, c, j->key) : block_put(tx, c, j->key, -1, NULL, 0, true);
    if (st != SK_OK) {
        return st;
    }
    if ((st = inbox_insert(tx, j, &changes)) != SK_OK) {
        return st;
    }
    if (changes == 0) {
        j->res = RES_DUP;
        return SK_OK;
    }
    st = job_prepare(j);
    if (st == SK_EPROTO || st == SK_ELIMIT) {
        j->is_chain = false;
        return dead_now(tx, j, sk_error_message());
    }
    if (st != SK_OK) {
        j->work_failed = true;
        j->fail_st = st;
        pending_add(c, j->key, j->position);
        return st;
    }
    if ((st = job_run(tx, j)) != SK_OK) {
        return st;
    }
    if (j->redrive_of[0] != '\0') {
        st = dl_resolve(tx, j);
    }
    return st;
}

static void release_done(sk_status st, const char *message, void *ctx)
{
    job *j = ctx;
    sk_consumer *c = j->c;

    if (st != SK_OK) {
        job_failed(j, message);
        return;
    }
    if (j->res == RES_DEAD) {
        log_dead(j);
    }
    if (j->res != RES_NONE) {
        count(c, j->res);
    }
    releasing_drop(c, j->key);
    if (j->is_chain) {
        release_submit(c, j->key);
    }
    job_finish(j);
}

/* Queue a release unit for @p key unless one is in flight (or the consumer is stopping). */
static void release_submit(sk_consumer *c, const char *key)
{
    job *j;

    if (!releasing_take(c, key)) {
        return;
    }
    j = sk_calloc(1, sizeof(*j));
    if (j == NULL) {
        releasing_drop(c, key);
        sk__msg_lock(&c->mu);
        c->n_outstanding--;
        pthread_cond_broadcast(&c->cond);
        sk__msg_unlock(&c->mu);
        return; /* the next poll tries again */
    }
    j->c = c;
    j->is_parked = true;
    snprintf(j->key, sizeof(j->key), "%s", key);
    if (sk_store_submit(c->store, release_work, release_done, j) != SK_OK) {
        releasing_drop(c, key);
        job_finish(j);
    }
}

typedef struct poll_ctx {
    sk_consumer *c;
    char (*keys)[SK_ENVELOPE_MAX_ATTR + 1];
    size_t n_due;
    size_t n_rows;
} poll_ctx;

static sk_status poll_read(sk_tx *tx, void *ctx)
{
    poll_ctx *pc = ctx;
    sk_db_value p[1] = { SK_DB_TEXT_V(pc->c->durable) };
    sk_rows *rows = NULL;
    int64_t now = sk_time_now_ms();
    sk_status st;

    pc->n_due = pc->n_rows = 0;
    st = sk_tx_query(tx,
                     "SELECT aggregate, next_ms FROM sk_msg_blocked WHERE consumer = ? AND "
                     "dead_letter_id IS NULL ORDER BY next_ms LIMIT 64",
                     p, 1, &rows);
    while (st == SK_OK && (st = sk_rows_next(rows)) == SK_OK) {
        pc->n_rows++;
        if (sk_rows_int(rows, 1) <= now && pc->n_due < RELEASE_POLL_BATCH) {
            snprintf(pc->keys[pc->n_due++], sizeof(pc->keys[0]), "%s", sk_rows_text(rows, 0, NULL));
        }
    }
    sk_rows_close(rows);
    return st == SK_ENOTFOUND ? SK_OK : st;
}

/* Fetch thread: queue release units for the blocked aggregates whose retry is due. */
static void release_poll(sk_consumer *c)
{
    int64_t now = sk_time_mono_ms();
    poll_ctx pc = { .c = c };

    if (now < c->next_poll_ms) {
        return;
    }
    c->next_poll_ms = now + RELEASE_POLL_MS;
    pc.keys = sk_malloc(RELEASE_POLL_BATCH * sizeof(*pc.keys));
    if (pc.keys == NULL) {
        return;
    }
    if (sk_store_read(c->store, poll_read, &pc) == SK_OK) {
        c->has_blocked = pc.n_rows > 0;
        for (size_t i = 0; i < pc.n_due; i++) {
            release_submit(c, pc.keys[i]);
        }
    } else if (sk__log_is_due(&c->last_log_ms[LOG_RELEASE_POLL], now)) {
        SK_LOG_WARN("consumer %s: looking for parked messages: %s", c->durable, sk_error_message());
    }
    sk_free(pc.keys);
}

/* ---------------------------------------------------------------- pruning the inbox */

/*
 * The lower-case text a UUIDv7 made at @p ms starts with ("tttttttt-tttt"):
 * every such id made earlier sorts below it.
 */
void sk__inbox_cutoff(int64_t ms, char out[14])
{
    unsigned long long t = ms > 0 ? (unsigned long long)ms : 0;
    snprintf(out, 14, "%08llx-%04llx", (t >> 16) & 0xffffffffULL, t & 0xffffULL);
}

typedef struct prune_unit {
    sk_consumer *c;
    char cutoff[14];
    int64_t n_deleted;
} prune_unit;

/*
 * Delete this consumer's inbox rows of messages made before the cutoff, at
 * most INBOX_PRUNE_BATCH per unit so one never holds the writer long. The
 * primary key (consumer, msg_id) orders a consumer's UUIDv7 ids by time, so
 * this is a range of the key, no scan. Ids that are not lower-case UUIDv7
 * (another producer's) carry no time and are kept.
 */
static sk_status prune_work(sk_tx *tx, void *ctx)
{
    prune_unit *u = ctx;
    sk_db_value p[4] = { SK_DB_TEXT_V(u->c->durable), SK_DB_TEXT_V(u->c->durable),
                         SK_DB_TEXT_V(u->cutoff), SK_DB_INT_V(INBOX_PRUNE_BATCH) };

    return sk_tx_exec(tx,
                      "DELETE FROM sk_inbox WHERE consumer = ? AND msg_id IN ("
                      "SELECT msg_id FROM sk_inbox WHERE consumer = ? AND msg_id < ? "
                      "AND substr(msg_id, 15, 1) = '7' AND msg_id = lower(msg_id) "
                      "ORDER BY msg_id LIMIT ?)",
                      p, 4, &u->n_deleted);
}

static void prune_finish(prune_unit *u, bool is_full)
{
    sk_consumer *c = u->c;

    sk_free(u);
    sk__msg_lock(&c->mu);
    c->is_pruning = false;
    c->is_prune_full = is_full;
    c->n_outstanding--;
    pthread_cond_broadcast(&c->cond);
    sk__msg_unlock(&c->mu);
}

static void prune_done(sk_status st, const char *message, void *ctx)
{
    prune_unit *u = ctx;

    if (st != SK_OK) {
        SK_LOG_WARN("consumer %s: deleting old inbox rows: %s (retried later)", u->c->durable,
                    message);
    }
    prune_finish(u, st == SK_OK && u->n_deleted >= INBOX_PRUNE_BATCH);
}

/* Fetch thread: every INBOX_PRUNE_INTERVAL_MS, queue a unit deleting expired inbox rows. */
static void inbox_prune_poll(sk_consumer *c)
{
    int64_t now = sk_time_mono_ms();
    prune_unit *u;

    sk__msg_lock(&c->mu);
    bool is_due = (now >= c->next_prune_ms || c->is_prune_full) && !c->is_pruning &&
                  !c->is_stopping;
    if (is_due) {
        c->is_pruning = true;
        c->is_prune_full = false;
        c->n_outstanding++;
    }
    sk__msg_unlock(&c->mu);
    if (!is_due) {
        return;
    }
    c->next_prune_ms = now + INBOX_PRUNE_INTERVAL_MS;
    u = sk_calloc(1, sizeof(*u));
    if (u == NULL) {
        sk__msg_lock(&c->mu);
        c->is_pruning = false;
        c->n_outstanding--;
        pthread_cond_broadcast(&c->cond);
        sk__msg_unlock(&c->mu);
        return; /* the next interval tries again */
    }
    u->c = c;
    sk__inbox_cutoff(sk_time_now_ms() - INBOX_RETENTION_MS, u->cutoff);
    if (sk_store_submit(c->store, prune_work, prune_done, u) != SK_OK) {
        prune_finish(u, false); /* the store is closing or full: the next interval tries again */
    }
}

/* Fetch thread: turn one message into a job and queue it. Takes @p msg. */
static void process(sk_consumer *c, natsMsg *msg)
{
    sk_status st;
    uint64_t n_delivered = 1, stream_seq = 0;
    const char *data;
    const char *redrive = NULL;
    int data_len;
    job *j = sk_calloc(1, sizeof(*j));

    if (j == NULL) {
        /* Let the server redeliver it after a while. */
        SK_IGNORE(sk__js_ack(c->pull.nc, msg, SK__JS_NAK, REQUEUE_DELAY_MS)); /* best effort */
        natsMsg_Destroy(msg);
        return;
    }
    sk__msg_lock(&c->mu);
    c->n_outstanding++;
    sk__msg_unlock(&c->mu);
    j->c = c;
    j->msg = msg;
    j->nc = c->pull.nc;
    j->m.nats_subject = natsMsg_GetSubject(msg);
    if (!sk__js_ack_parse(natsMsg_GetReply(msg), &n_delivered, &stream_seq)) {
        n_delivered = 1; /* not from JetStream (sk__pull_next hands out only those) */
        stream_seq = 0;
    }
    j->m.n_delivered = n_delivered;
    j->m.stream_seq = stream_seq;
    /* -1 means "no head" in a block: a forged sequence past INT64_MAX must not become it. */
    j->position = j->m.stream_seq > INT64_MAX ? INT64_MAX : (int64_t)j->m.stream_seq;
    data = natsMsg_GetData(msg);
    data_len = natsMsg_GetDataLength(msg);
    j->m.data = (sk_slice){ (const uint8_t *)(data != NULL ? data : ""),
                            data_len > 0 ? (size_t)data_len : 0 };
    if (natsMsgHeader_Get(msg, SK_DLQ_HDR_REDRIVE, &redrive) == NATS_OK && redrive != NULL &&
        strlen(redrive) == SK_UUID_LEN - 1) {
        snprintf(j->redrive_of, sizeof(j->redrive_of), "%s", redrive);
    }
    st = sk__envelope_from_msg(msg, &j->m.env, &j->envbuf);
    if (st != SK_OK) {
        SK_WRAP(st, "invalid envelope");
        set_error(j, sk_error_message());
    } else {
        j->has_env = true;
        j->orig_version = j->m.env.schema_version;
        snprintf(j->key, sizeof(j->key), "%s",
                 c->order == SK_CONSUMER_ORDER_NONE ? j->m.env.id : j->m.env.subject);
    }
    st = sk_store_submit(c->store, handle_work, handle_done, j);
    if (st != SK_OK) {
        job_nak(j, REQUEUE_DELAY_MS);
        count(c, RES_RETRY);
        job_finish(j);
    }
}

/* Sleep up to @p ms unless stopping. Called with mu held. */
static void wait_ms(sk_consumer *c, int64_t ms)
{
    struct timespec ts;
    sk_time_mono_deadline(ms, &ts);
    if (!c->is_stopping) {
        SK_IGNORE(pthread_cond_timedwait(&c->cond, &c->mu, &ts)); /* timeout or wake-up */
    }
}

static sk_status consumer_subscribe(sk_consumer *c);

/*
 * Drop the subscription, giving back what arrived and was not taken; the
 * durable and its position stay on the server.
 */
static void consumer_unsubscribe(sk_consumer *c)
{
    sk__pull_close(&c->pull); /* harmless when not subscribed */
}

/* Subscribe for the durable's deliveries on c->link, under a new reply token. */
static sk_status pull_open(sk_consumer *c)
{
    c->pull_reconnects = c->link->n_reconnects;
    return sk__pull_open(&c->pull, c->link->nc,
                         c->bus->inbox_prefix != NULL ? c->bus->inbox_prefix : "_INBOX", c->stream,
                         c->durable);
}

/*
 * Move to the bus's current connection (after a certificate reload), or
 * subscribe again after a failed attempt or a failed fetch (which creates
 * the durable consumer again should it have been deleted). Messages taken
 * on the old connection are acknowledged through it, so this first waits
 * for them.
 * @return true when subscribed; false when stopping or subscribing failed.
 */
static bool consumer_move(sk_consumer *c)
{
    sk__msg_lock(&c->mu);
    while (!c->is_stopping && c->n_outstanding > 0) {
        wait_ms(c, 100);
    }
    bool stop = c->is_stopping;
    sk__msg_unlock(&c->mu);
    if (stop) {
        return false;
    }
    if (!sk__bus_link_is_current(c->bus, c->link)) {
        consumer_unsubscribe(c);
        sk__bus_link_release(c->link);
        c->link = sk__bus_link_acquire(c->bus);
    }
    if (c->is_resubscribe_needed) {
        consumer_unsubscribe(c);
        c->is_resubscribe_needed = false;
    }
    if (c->pull.sub == NULL) {
        if (consumer_subscribe(c) != SK_OK) {
            if (sk__log_is_due(&c->last_log_ms[LOG_SUBSCRIBE], sk_time_mono_ms())) {
                SK_LOG_WARN("consumer %s: %s (retrying)", c->durable, sk_error_message());
            }
            return false;
        }
        SK_LOG_INFO("consumer %s: subscribed on connection generation %llu", c->durable,
                    (unsigned long long)c->link->generation);
    }
    return true;
}

/*
 * Take the database's lock for this consumer (fetch thread). Another
 * instance sharing the database holds it while it consumes; the kernel frees
 * it when that process ends. @return true once this process consumes.
 */
static bool consumer_lock_take(sk_consumer *c)
{
    sk_status st = sk_store_lock_try(c->store, c->lock_purpose, &c->lock_fd);
    int64_t now = sk_time_mono_ms();

    if (st == SK_OK) {
        if (c->is_standby_logged) {
            SK_LOG_INFO("consumer %s: the instance that consumed is gone; this one consumes now",
                        c->durable);
        }
        c->is_consuming = true;
        return true;
    }
    if (st == SK_ECONFLICT) {
        if (!c->is_standby_logged) {
            SK_LOG_INFO("consumer %s: another instance sharing the database consumes; standing by",
                        c->durable);
            c->is_standby_logged = true;
        }
    } else if (sk__log_is_due(&c->last_log_ms[LOG_LOCK], now)) {
        SK_LOG_WARN("consumer %s: %s (retrying)", c->durable, sk_error_message());
    }
    sk_error_clear();
    return false;
}

/* JetStream error code: consumer not found. */
#define JS_ERR_CONSUMER_NOT_FOUND 10014

/* True when the server says our durable consumer does not exist (fetch thread). */
static bool consumer_is_gone(sk_consumer *c)
{
    jsConsumerInfo *ci = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetConsumerInfo(&ci, c->link->js, c->stream, c->durable, NULL, &jerr);

    jsConsumerInfo_Destroy(ci);
    return s == NATS_NOT_FOUND || jerr == JS_ERR_CONSUMER_NOT_FOUND;
}

/* A fetch (or moving to the current connection) failed: note since when (fetch thread). */
static void fetch_failed(sk_consumer *c)
{
    if (c->failing_since_ms == 0) {
        c->failing_since_ms = sk_time_mono_ms();
    }
}

/*
 * A holder whose fetches have failed for CONSUMER_YIELD_AFTER_MS lets
 * another instance sharing the database try (its own link may be what is
 * broken): once its units are settled it releases the lock and waits a few
 * standby rounds before trying it again. @return true when it let go.
 */
static bool consumer_lock_yield_if_failing(sk_consumer *c)
{
    if (c->lock_fd < 0 || c->failing_since_ms == 0 ||
        sk_time_mono_ms() - c->failing_since_ms < CONSUMER_YIELD_AFTER_MS) {
        return false;
    }
    sk__msg_lock(&c->mu);
    bool is_settled = c->n_outstanding == 0;
    sk__msg_unlock(&c->mu);
    if (!is_settled) {
        return false;
    }
    SK_LOG_WARN("consumer %s: no fetch has worked for %d s; letting another instance sharing the "
                "database consume",
                c->durable, CONSUMER_YIELD_AFTER_MS / 1000);
    consumer_unsubscribe(c); /* settled: nothing is acknowledged through it any more */
    close(c->lock_fd);
    c->lock_fd = -1;
    c->is_consuming = false;
    c->is_standby_logged = false;
    c->failing_since_ms = 0;
    sk__msg_lock(&c->mu);
    wait_ms(c, 4 * CONSUMER_STANDBY_RETRY_MS);
    sk__msg_unlock(&c->mu);
    return true;
}

/* Called with mu held: less than a batch fits under the bound on work in flight. */
static bool is_store_behind(const sk_consumer *c)
{
    return c->n_outstanding + c->batch > c->max_outstanding;
}

/*
 * Keep a pull request open for as many messages as the bound on work in
 * flight leaves room for (the consumer's MaxAckPending is the same bound),
 * so the server streams while this thread hands messages to the store.
 * Nothing is asked for while less than a batch fits: the store catches up
 * first. @return SK_OK or the request's failure.
 */
static sk_status pull_top_up(sk_consumer *c)
{
    sk__pull *p = &c->pull;

    if (c->link->n_reconnects != c->pull_reconnects) {
        /*
         * The open request may be gone with the lost connection, or still
         * there: nats.c subscribed again to the same subject. A new reply
         * token ends it either way (the server drops a request nobody
         * listens to), so its deliveries cannot count against the next one.
         */
        sk__pull_close(p);
        sk_status st = pull_open(c);
        if (st != SK_OK) {
            return st; /* pull.sub is NULL: the next round subscribes again */
        }
    }
    if (sk__pull_is_open(p)) {
        return SK_OK;
    }
    sk__msg_lock(&c->mu);
    bool is_behind = is_store_behind(c);
    size_t room = is_behind ? 0 : c->max_outstanding - c->n_outstanding;
    sk__msg_unlock(&c->mu);
    return is_behind ? SK_OK : sk__pull_ask(p, (int)room, PULL_EXPIRES_MS);
}

/* Fetch thread: a read from the consumer failed; decide whether to subscribe anew. */
static void pull_failed(sk_consumer *c, sk_status st)
{
    int64_t now = sk_time_mono_ms();

    fetch_failed(c);
    /*
     * The durable deleted on the server ("Consumer Deleted", or requests
     * going unanswered and the server saying it does not exist): bind
     * again, which creates it anew (its inbox rows keep what comes back from
     * the stream's start from acting twice). Failures that clear up by
     * themselves (an outage, a leader election) are not that. A request
     * refused for a limit set on the durable (SK_ELIMIT) subscribes again
     * too, which puts the consumer's own configuration back.
     */
    c->is_resubscribe_needed =
        st == SK_ENOTFOUND || st == SK_ELIMIT ||
        ((st == SK_ETIMEDOUT || st == SK_EUNAVAILABLE) && consumer_is_gone(c));
    if (sk__log_is_due(&c->last_log_ms[LOG_PULL], now)) {
        SK_LOG_WARN("consumer %s: %s", c->durable, sk_error_message());
    }
}

static void *fetch_main(void *arg)
{
    sk_consumer *c = arg;
    int64_t backoff = 100;

    int64_t next_reap_check_ms = 0;

    sk_thread_name("sk-fetch");
    for (;;) {
        natsMsg *msg = NULL;
        sk_status st;

        /* Whatever state this turn is in (consuming, standing by, retrying): a batch that has
         * been filling for a second is freed, so a quiet consumer keeps none. Looked at a few
         * times a second, not on every message: the reaper's lock is the writer's too. */
        int64_t now = sk_time_mono_ms();
        if (now >= next_reap_check_ms) {
            sk__reaper_flush_stale(&c->reaper);
            next_reap_check_ms = now + FETCH_REAP_CHECK_MS;
        }
        sk__msg_lock(&c->mu);
        bool stop = c->is_stopping;
        sk__msg_unlock(&c->mu);
        if (stop) {
            break;
        }
        if (!c->is_consuming && !consumer_lock_take(c)) {
            /* Standing by (asking for nothing): still follow reloads, so the old connection can
             * close. */
            if (!sk__bus_link_is_current(c->bus, c->link)) {
                consumer_unsubscribe(c); /* the one sk_consumer_start made; nothing is in flight */
                sk__bus_link_release(c->link);
                c->link = sk__bus_link_acquire(c->bus);
            }
            sk__msg_lock(&c->mu);
            wait_ms(c, CONSUMER_STANDBY_RETRY_MS);
            sk__msg_unlock(&c->mu);
            continue;
        }
        if (consumer_lock_yield_if_failing(c)) {
            continue;
        }
        if ((c->pull.sub == NULL || c->is_resubscribe_needed ||
             !sk__bus_link_is_current(c->bus, c->link)) &&
            !consumer_move(c)) {
            fetch_failed(c);
            sk__msg_lock(&c->mu);
            wait_ms(c, backoff);
            sk__msg_unlock(&c->mu);
            backoff = backoff * 2 > 2000 ? 2000 : backoff * 2;
            continue;
        }
        release_poll(c);
        inbox_prune_poll(c);
        st = pull_top_up(c);
        if (st == SK_OK && !sk__pull_is_open(&c->pull)) {
            /* Bounded work in flight: wait for the store to catch up before asking for more. */
            sk__msg_lock(&c->mu);
            if (is_store_behind(c)) {
                wait_ms(c, c->has_blocked ? FETCH_WAIT_BLOCKED_MS : FETCH_WAIT_MS);
            }
            sk__msg_unlock(&c->mu);
            continue;
        }
        if (st == SK_OK) {
            st = sk__pull_next(&c->pull, &msg,
                               c->has_blocked ? FETCH_WAIT_BLOCKED_MS : FETCH_WAIT_MS);
        }
        if (st == SK_OK) {
            backoff = 100;
            if (msg != NULL || c->pull.n_lost_in_a_row == 0) {
                c->failing_since_ms = 0; /* the server answered */
            }
            if (msg != NULL) {
                process(c, msg);
            }
            continue;
        }
        pull_failed(c, st);
        sk__msg_lock(&c->mu);
        wait_ms(c, backoff);
        sk__msg_unlock(&c->mu);
        backoff = backoff * 2 > 2000 ? 2000 : backoff * 2;
    }
    return NULL;
}

/* ---------------------------------------------------------------- lifecycle */

/* Make sure dead letters have a stream to land in; failures are only logged. */
static void dlq_stream_ensure(sk_bus *bus)
{
    sk__bus_link *link = sk__bus_link_acquire(bus);
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetStreamInfo(&si, link->js, SK_DLQ_STREAM, NULL, &jerr);

    jsStreamInfo_Destroy(si);
    sk__bus_link_release(link);
    if (s == NATS_OK) {
        return;
    }
    if (s == NATS_NOT_FOUND || jerr == 10059) {
        const char *subjects[1] = { SK_DLQ_SUBJECT_PREFIX ">" };
        sk_stream_config sc = { .name = SK_DLQ_STREAM, .subjects = subjects, .n_subjects = 1 };
        if (sk_bus_stream_ensure(bus, &sc) == SK_OK) {
            return;
        }
    }
    /* Someone else may have created it at the same time, or an operator stream covers dlq.>. */
    SK_LOG_WARN("consumer: could not create stream %s: %s", SK_DLQ_STREAM, sk_error_message());
}

/* Create or update the durable consumer and subscribe for its deliveries on c->link. */
static sk_status consumer_subscribe(sk_consumer *c)
{
    jsConsumerInfo *ci = NULL;
    jsConsumerConfig cc;
    sk_status st = SK_OK;
    jsErrCode jerr = 0;
    jsCtx *js = c->link->js;
    natsStatus s;

    jsConsumerConfig_Init(&cc);
    cc.Durable = c->durable;
    cc.AckPolicy = js_AckExplicit;
    cc.DeliverPolicy = js_DeliverAll;
    cc.MaxDeliver = c->max_deliver + MAX_DELIVER_SLACK;
    cc.AckWait = c->ack_wait_ms * 1000000; /* nanoseconds */
    cc.MaxAckPending = (int64_t)c->max_outstanding;
    cc.FilterSubject = c->filter;
    s = js_GetConsumerInfo(&ci, js, c->stream, c->durable, NULL, &jerr);
    if (s == NATS_NOT_FOUND) {
        jerr = 0;
        s = js_AddConsumer(NULL, js, c->stream, &cc, NULL, &jerr);
        if (s != NATS_OK) {
            st = sk__nats_fail(s, jerr, "creating the durable consumer");
            goto out;
        }
    } else if (s == NATS_OK) {
        const jsConsumerConfig *have = ci->Config;
        /* Request limits an operator set would refuse our requests: ours has none. */
        bool same = have != NULL && have->MaxDeliver == cc.MaxDeliver &&
                    have->AckWait == cc.AckWait && have->MaxAckPending == cc.MaxAckPending &&
                    have->FilterSubject != NULL && strcmp(have->FilterSubject, c->filter) == 0 &&
                    have->MaxRequestBatch == 0 && have->MaxRequestExpires == 0 &&
                    have->MaxRequestMaxBytes == 0;
        if (!same) {
            jerr = 0;
            s = js_UpdateConsumer(NULL, js, c->stream, &cc, NULL, &jerr);
            if (s != NATS_OK) {
                st = sk__nats_fail(s, jerr, "updating the durable consumer");
                goto out;
            }
        }
    } else {
        st = sk__nats_fail(s, jerr, "looking up the durable consumer");
        goto out;
    }
    st = pull_open(c);
out:
    jsConsumerInfo_Destroy(ci);
    if (st != SK_OK) {
        st = SK_WRAP(st, "consumer %s on stream %s", c->durable, c->stream);
    }
    return st;
}

sk_status sk_consumer_start(sk_consumer **out,
                            sk_bus *bus,
                            sk_store *store,
                            sk_metrics *metrics,
                            const sk_consumer_config *cfg)
{
    pthread_condattr_t ca;
    sk_status st = SK_OK;
    sk_consumer *c = NULL;

    if (out == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_consumer_start: out must not be NULL");
    }
    *out = NULL;
    if (bus == NULL || store == NULL || cfg == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_consumer_start: bus, store and cfg must not be NULL");
    }
    if (!sk_name_is_valid(cfg->stream, SK__MSG_NAME_MAX)) {
        return SK_FAIL(SK_EINVAL,
                       "sk_consumer_start: cfg->stream: expected 1..64 of [A-Za-z0-9_-]");
    }
    if (!sk_name_is_valid(cfg->durable, SK__MSG_NAME_MAX)) {
        return SK_FAIL(SK_EINVAL,
                       "sk_consumer_start: cfg->durable: expected 1..64 of [A-Za-z0-9_-]");
    }
    if ((st = sk__subject_check(cfg->filter_subject, true,
                                "sk_consumer_start: cfg->filter_subject")) != SK_OK) {
        return st;
    }
    if (cfg->handler == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_consumer_start: cfg->handler must not be NULL");
    }
    if (cfg->max_deliver < 0 || cfg->max_deliver > 1000) {
        return SK_FAIL(SK_EINVAL, "sk_consumer_start: cfg->max_deliver: expected 0..1000, got %d",
                       cfg->max_deliver);
    }
    if (cfg->ack_wait_ms < 0 || cfg->ack_wait_ms > 24LL * 3600 * 1000) {
        return SK_FAIL(SK_EINVAL, "sk_consumer_start: cfg->ack_wait_ms: expected 0..86400000");
    }
    if (cfg->order != SK_CONSUMER_ORDER_AGGREGATE && cfg->order != SK_CONSUMER_ORDER_NONE) {
        return SK_FAIL(SK_EINVAL, "sk_consumer_start: cfg->order: expected 0..1, got %d",
                       (int)cfg->order);
    }
    if (cfg->batch > 4096) {
        return SK_FAIL(SK_EINVAL, "sk_consumer_start: cfg->batch: expected 0..4096, got %zu",
                       cfg->batch);
    }
    c = sk_calloc(1, sizeof(*c));
    if (c == NULL) {
        return SK_FAIL(SK_ENOMEM, "sk_consumer_start: allocating the consumer");
    }
    c->lock_fd = -1;
    if (pthread_mutex_init(&c->mu, NULL) != 0) {
        sk_free(c);
        return SK_FAIL(SK_ENOMEM, "sk_consumer_start: creating a mutex");
    }
    if (pthread_condattr_init(&ca) != 0) {
        pthread_mutex_destroy(&c->mu);
        sk_free(c);
        return SK_FAIL(SK_ENOMEM, "sk_consumer_start: creating a condition variable");
    }
    if (pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) != 0 ||
        pthread_cond_init(&c->cond, &ca) != 0) {
        pthread_condattr_destroy(&ca);
        pthread_mutex_destroy(&c->mu);
        sk_free(c);
        return SK_FAIL(SK_ENOMEM, "sk_consumer_start: creating a condition variable");
    }
    pthread_condattr_destroy(&ca);
    if ((st = sk__reaper_init(&c->reaper)) != SK_OK) {
        st = SK_WRAP(st, "sk_consumer_start");
        goto out;
    }
    c->bus = bus;
    c->store = store;
    c->handler = cfg->handler;
    c->ctx = cfg->ctx;
    c->upcasters = cfg->upcasters;
    c->order = cfg->order;
    c->max_deliver = cfg->max_deliver == 0 ? 5 : cfg->max_deliver;
    c->ack_wait_ms = cfg->ack_wait_ms == 0 ? SK_CONSUMER_DEFAULT_ACK_WAIT_MS : cfg->ack_wait_ms;
    c->batch = cfg->batch == 0 ? 128 : cfg->batch;
    c->max_outstanding = 4 * c->batch;
    c->stream = sk_strdup(cfg->stream);
    c->durable = sk_strdup(cfg->durable);
    c->filter = sk_strdup(cfg->filter_subject);
    c->dlq_subject = sk_asprintf("%s%s", SK_DLQ_SUBJECT_PREFIX, cfg->durable);
    /* A durable name is unique within its stream only. */
    c->lock_purpose = sk_asprintf("consumer-%s-%s", cfg->stream, cfg->durable);
    if (c->stream == NULL || c->durable == NULL || c->filter == NULL || c->dlq_subject == NULL ||
        c->lock_purpose == NULL) {
        st = SK_FAIL(SK_ENOMEM, "sk_consumer_start: copying the config");
        goto out;
    }
    if (metrics != NULL) {
        for (int r = 0; r < RES_COUNT_; r++) {
            char *labels =
                sk_asprintf("consumer=\"%s\",result=\"%s\"", c->durable, result_names[r]);
            if (labels == NULL) {
                st = SK_FAIL(SK_ENOMEM, "sk_consumer_start: metric labels");
                goto out;
            }
            c->m_results[r] =
                sk_metrics_counter(metrics, "sk_consumer_messages_total",
                                   "Messages handled by consumers, by result", labels);
            sk_free(labels);
        }
    }
    if ((st = sk_store_run(store, schema_work, NULL)) != SK_OK) {
        st = SK_WRAP(st, "sk_consumer_start: consumer %s", c->durable);
        goto out;
    }
    dlq_stream_ensure(bus);
    c->link = sk__bus_link_acquire(bus);
    if ((st = consumer_subscribe(c)) != SK_OK) {
        goto out;
    }
    if (pthread_create(&c->thread, NULL, fetch_main, c) != 0) {
        st = SK_FAIL(SK_EINTERNAL, "sk_consumer_start: creating the fetch thread");
        goto out;
    }
    c->has_thread = true;
    *out = c;
    c = NULL;
out:
    sk_consumer_stop(c);
    return st;
}

void sk_consumer_stop(sk_consumer *c)
{
    if (c == NULL) {
        return;
    }
    sk__msg_lock(&c->mu);
    c->is_stopping = true;
    pthread_cond_broadcast(&c->cond);
    sk__msg_unlock(&c->mu);
    if (c->has_thread) {
        pthread_join(c->thread, NULL);
    }
    /* Every fetched message is settled by a done callback of the store. */
    sk__msg_lock(&c->mu);
    while (c->n_outstanding > 0) {
        if (pthread_cond_wait(&c->cond, &c->mu) != 0) {
            sk_assert_fail("pthread_cond_wait", __FILE__, __LINE__);
        }
    }
    sk__msg_unlock(&c->mu);
    sk__reaper_fini(&c->reaper);
    consumer_unsubscribe(c);
    sk__bus_link_release(c->link);
    if (c->lock_fd >= 0) {
        close(c->lock_fd); /* another instance sharing the database consumes from here on */
    }
    pthread_cond_destroy(&c->cond);
    pthread_mutex_destroy(&c->mu);
    sk_free(c->lock_purpose);
    sk_free(c->stream);
    sk_free(c->durable);
    sk_free(c->filter);
    sk_free(c->dlq_subject);
    for (size_t i = 0; i < c->n_pend; i++) {
        sk_free(c->pend[i].key);
    }
    sk_free(c->pend);
    for (size_t i = 0; i < c->n_releasing; i++) {
        sk_free(c->releasing[i]);
    }
    sk_free(c->releasing);
    sk_free(c);
}

sk_status sk_consumer_delete(sk_bus *bus, const char *stream, const char *durable)
{
    sk__bus_link *link;
    jsErrCode jerr = 0;
    natsStatus s;

    if (bus == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_consumer_delete: bus must not be NULL");
    }
    if (!sk_name_is_valid(stream, SK__MSG_NAME_MAX)) {
        return SK_FAIL(SK_EINVAL, "sk_consumer_delete: stream: expected 1..64 of [A-Za-z0-9_-]");
    }
    if (!sk_name_is_valid(durable, SK__MSG_NAME_MAX)) {
        return SK_FAIL(SK_EINVAL, "sk_consumer_delete: durable: expected 1..64 of [A-Za-z0-9_-]");
    }
    link = sk__bus_link_acquire(bus);
    s = js_DeleteConsumer(link->js, stream, durable, NULL, &jerr);
    sk__bus_link_release(link);
    if (s == NATS_OK || s == NATS_NOT_FOUND || jerr == JS_ERR_CONSUMER_NOT_FOUND) {
        return SK_OK;
    }
    sk_status st = sk__nats_fail(s, jerr, "deleting the durable consumer");
    return SK_WRAP(st, "consumer %s on stream %s", durable, stream);
}
