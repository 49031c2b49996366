/* SPDX-License-Identifier: MIT */
/*
 * The outbox relay: a thread that publishes committed outbox rows in seq
 * order and deletes them once JetStream acknowledged them. Invariant: a row
 * is deleted only after JetStream acknowledged it and every row before it;
 * rows past the first unacknowledged one are published again (Nats-Msg-Id
 * lets JetStream drop the copies it already stored).
 *
 * Publishes are plain NATS publishes whose reply subject JetStream answers
 * with the acknowledgement: row i of round k replies to
 * "<inbox>.<token>.<k>.<i>", and the relay thread reads the answers from a
 * synchronous subscription of its own. nats.c's asynchronous JetStream
 * publish did the same through a hash of pending messages, a delivery
 * thread of its own and its JSON parser, and freed each acknowledgement on
 * its collector thread: a thread hop and a collector wake-up per event.
 *
 * Instances sharing one database file each start a relay, but only the
 * holder of the file's relay lock publishes (relay_owner.c): the others
 * pass their commit wake-ups on to it. Two publishers would each send every
 * row (JetStream drops the copies, after paying for them).
 */
#include <errno.h>
#include <string.h>
#include <time.h>

#include "msg/msg_int.h"

/*
 * Rows read and published per round, and the most data one round holds:
 * each round ends waiting for its acknowledgements, so bigger rounds drain
 * a backlog faster (bench_relay: 512 -> 4096 rows moved 0.49 -> 0.57 of raw
 * async publishing), and the byte bound keeps big rows from piling up.
 */
#define RELAY_BATCH 4096
#define RELAY_BATCH_BYTES (8u * 1024u * 1024u)
/* Publishes in flight (sent, not acknowledged) at most. */
#define RELAY_MAX_PENDING 256
/* Longest inbox prefix: the reply subjects add a token, a round and an index. */
#define RELAY_INBOX_PREFIX_MAX 160
/* Idle poll interval: catches commits made by other processes or hooks we missed. */
#define RELAY_TICK_MS 200
/* How long one publish may wait for its acknowledgement. */
#define RELAY_ACK_WAIT_MS 5000
/* Step of the acknowledgement wait: how soon a reconnect is noticed. */
#define RELAY_ACK_POLL_MS 100
/* Retry backoff after a failed round. */
#define RELAY_BACKOFF_MIN_MS 100
#define RELAY_BACKOFF_MAX_MS 2000
/*
 * Published rows are deleted once they have waited this long or this many
 * have piled up, so one commit deletes many: deleting after every round cost
 * a commit (an fsync) per event at low load, and those fsyncs queued on the
 * disk beside the commits events wait for. A row published but not deleted
 * yet (a crash in between) is published again; JetStream's duplicate window
 * drops it by its message id.
 */
#define RELAY_DELETE_DELAY_MS 100
#define RELAY_DELETE_ROWS 4096

typedef enum row_state { ROW_PENDING = 0, ROW_OK = 1, ROW_FAILED = 2 } row_state;

typedef struct relay_row {
    int64_t seq;
    natsMsg *msg; /* owned; its reply subject names the row */
    row_state state;
} relay_row;

/* Lock order: mu only. The relay thread takes it to sleep and to publish n_rows. */
struct sk_relay {
    sk_store *store;
    sk_bus *bus;
    sk__bus_link *link;        /* relay thread (and start/stop): the connection ack_sub lives on */
    natsSubscription *ack_sub; /* acknowledgements on link; NULL when subscribing failed */
    /* "<inbox>.<token>.": replies are "<round>.<row>" after it. */
    char ack_prefix[RELAY_INBOX_PREFIX_MAX + 64];
    sk__relay_owner *owner; /* whether this relay publishes the database's outbox */
    pthread_t thread;
    bool has_thread;

    pthread_mutex_t mu;
    pthread_cond_t cond;
    /* Protected by mu. */
    bool is_stopping;
    bool is_woken;
    relay_row rows[RELAY_BATCH];
    size_t n_rows;
    size_t n_units;       /* delete units in flight */

    /* Relay thread only (read_rows runs on it too). */
    bool is_batch_full; /* the last read stopped at a limit: more rows are probably waiting */
    int64_t acked_seq;    /* highest seq acknowledged with every row before it */
    int64_t undeleted_since_ms; /* when rows acknowledged but not deleted appeared; 0: none */
    int64_t lag;
    int64_t last_log_ms;
    uint64_t round;        /* rounds read so far: a reply from another round is stale */
    size_t n_sent;         /* rows of this round published */
    int64_t read_seq;      /* highest seq this round has read */
    size_t read_bytes;     /* data and headers this round has read */
    bool is_read_done;     /* this round read all it will: the outbox's end, or a limit */
    bool is_send_stopped;  /* this round publishes no more (a failure or a reconnect) */
    bool is_send_settled;  /* no wait for acknowledgements gave up this round */
    natsStatus send_status;   /* of the publish that failed, or NATS_OK */
    uint64_t send_reconnects; /* link->n_reconnects when this round began */
    size_t n_settled;      /* rows of this round acknowledged or refused */
    size_t n_unanswerable; /* rows of this round no stream answers ("no responders") */
    natsStatus last_err;   /* of the last refused publish */
    jsErrCode last_jerr;

    _Atomic int64_t deleted_seq; /* highest seq whose delete committed */
    _Atomic uint64_t published;

    sk_counter *m_published;
    sk_counter *m_errors;
    sk_gauge *m_lag;
    sk__reaper reaper; /* destroys published messages and acknowledgements, a batch at a time */
};

typedef struct delete_unit {
    sk_relay *relay;
    int64_t seq;
} delete_unit;

/* Wait on cond until woken, stopping, or @p ms passed. Called with mu held. */
static void wait_ms(sk_relay *r, int64_t ms)
{
    struct timespec ts;
    sk_time_mono_deadline(ms, &ts);
    while (!r->is_woken && !r->is_stopping) {
        int rc = pthread_cond_timedwait(&r->cond, &r->mu, &ts);
        if (rc == ETIMEDOUT) {
            break;
        }
        if (rc != 0) {
            sk_assert_fail("pthread_cond_timedwait", __FILE__, __LINE__);
        }
    }
    r->is_woken = false;
}

static void wake(sk_relay *r)
{
    sk__msg_lock(&r->mu);
    r->is_woken = true;
    pthread_cond_broadcast(&r->cond);
    sk__msg_unlock(&r->mu);
}

static void on_wake(void *ctx)
{
    wake(ctx);
}

/* Writer thread, after a commit that added outbox rows: publish, or tell the instance that does. */
static void on_commit(void *ctx)
{
    sk_relay *r = ctx;

    if (sk__relay_owner_is_holder(r->owner)) {
        wake(r);
    } else {
        sk__relay_owner_notify(r->owner);
    }
}

/* ---------------------------------------------------------------- acknowledgements */

bool sk__relay_reply_parse(const char *subject, const char *prefix, uint64_t *round, size_t *row)
{
    size_t prefix_len = prefix != NULL ? strlen(prefix) : 0;
    uint64_t r = 0, i = 0;
    const char *p;

    if (subject == NULL || prefix == NULL || strncmp(subject, prefix, prefix_len) != 0) {
        return false;
    }
    p = sk__digits_parse(subject + prefix_len, UINT64_MAX, &r);
    if (p == NULL || *p != '.') {
        return false;
    }
    p = sk__digits_parse(p + 1, SIZE_MAX, &i);
    if (p == NULL || *p != '\0') {
        return false;
    }
    *round = r;
    *row = (size_t)i;
    return true;
}

/*
 * Relay thread: record what one answer on the acknowledgement subscription
 * says of its row. A success: {"stream":..,"seq":..}; a refusal:
 * {"error":{"code":..,"err_code":..,"description":..}}. Answers of other
 * rounds (late, after a timeout) are stale. A late failure of an earlier
 * copy never undoes a success. Takes @p m.
 */
static void ack_record(sk_relay *r, natsMsg *m)
{
    uint64_t round = 0;
    size_t index = 0;
    json_t *doc = NULL;

    if (!sk__relay_reply_parse(natsMsg_GetSubject(m), r->ack_prefix, &round, &index) ||
        round != r->round || index >= r->n_sent || r->rows[index].state == ROW_OK) {
        sk__reaper_add(&r->reaper, m);
        return;
    }
    relay_row *row = &r->rows[index];
    natsStatus err = NATS_OK;
    jsErrCode jerr = 0;
    const char *data = natsMsg_GetData(m);
    int len = natsMsg_GetDataLength(m);
    json_t *e = NULL;
    if (data == NULL || len <= 0 ||
        sk_json_parse((sk_slice){ (const uint8_t *)data, (size_t)len }, &doc) != SK_OK ||
        !json_is_object(doc)) {
        err = NATS_ERR; /* not an acknowledgement */
    } else if ((e = json_object_get(doc, "error")) != NULL) {
        err = NATS_ERR;
        jerr = (jsErrCode)json_integer_value(json_object_get(e, "err_code"));
    } else if (!json_is_string(json_object_get(doc, "stream")) ||
               !json_is_integer(json_object_get(doc, "seq"))) {
        err = NATS_ERR;
    }
    sk_error_clear();
    if (row->state == ROW_PENDING) {
        r->n_settled++;
    }
    if (err == NATS_OK) {
        row->state = ROW_OK;
    } else {
        row->state = ROW_FAILED;
        r->last_err = err;
        r->last_jerr = jerr;
    }
    json_decref(doc);
    sk__reaper_add(&r->reaper, m);
}

/* ---------------------------------------------------------------- reading */

static void send_row(sk_relay *r, size_t i);

/* Unacknowledged rows the round may still send before it waits for answers. */
static size_t window_room(const sk_relay *r)
{
    size_t answered = r->n_settled + r->n_unanswerable;
    size_t in_flight = r->n_sent > answered ? r->n_sent - answered : 0;
    return in_flight < RELAY_MAX_PENDING ? RELAY_MAX_PENDING - in_flight : 0;
}

/*
 * Read the round's next rows, as many as the window of unacknowledged
 * publishes has room for, and publish each as soon as it is built, so the
 * server works on the first while the rest are read (reading a whole batch
 * first, then publishing it, left the relay thread idle half of a round in
 * bench_relay). The wait for room happens between reads (relay_round), so
 * a read transaction lasts as long as building a few hundred messages.
 */
static sk_status read_rows(sk_tx *tx, void *ctx)
{
    sk_relay *r = ctx;
    size_t n = r->n_rows; /* rows the round read before: only this thread writes n_rows */
    size_t limit = window_room(r);
    sk_rows *rows = NULL;
    sk_status st;
    bool is_full = false;

    if (limit > RELAY_BATCH - n) {
        limit = RELAY_BATCH - n;
    }
    if (limit == 0) {
        r->is_read_done = true; /* not reached: the window was waited for, the batch not full */
        return SK_OK;
    }
    sk_db_value params[2] = { SK_DB_INT_V(r->read_seq), SK_DB_INT_V((int64_t)limit) };
    st = sk_tx_query(tx,
                     "SELECT seq, subject, headers, data FROM sk_outbox "
                     "WHERE seq > ? ORDER BY seq LIMIT ?",
                     params, 2, &rows);
    if (st != SK_OK) {
        return SK_WRAP(st, "relay: reading the outbox");
    }
    size_t n_first = n;
    while ((st = sk_rows_next(rows)) == SK_OK) {
        relay_row *row = &r->rows[n];
        size_t len = 0, hlen = 0;
        const char *subject = sk_rows_text(rows, 1, NULL);
        const char *headers = sk_rows_text(rows, 2, &hlen);
        const char *data = sk_rows_text(rows, 3, &len);
        natsStatus s;

        char reply[sizeof(r->ack_prefix) + 48];
        row->seq = sk_rows_int(rows, 0);
        row->state = ROW_PENDING;
        row->msg = NULL;
        r->read_seq = row->seq;
        snprintf(reply, sizeof(reply), "%s%llu.%zu", r->ack_prefix, (unsigned long long)r->round,
                 n);
        if (len > SK_MAX_MSG_PAYLOAD) {
            st = SK_FAIL(SK_ELIMIT, "relay: outbox row %lld has %zu bytes of data",
                         (long long)row->seq, len);
            break;
        }
        s = natsMsg_Create(&row->msg, subject, reply, data, (int)len);
        if (s != NATS_OK) {
            st = sk__nats_fail(s, 0, "relay: creating a message");
            break;
        }
        n++;
        st = sk__headers_json_apply((sk_slice){ (const uint8_t *)headers, hlen }, row->msg);
        if (st != SK_OK) {
            st = SK_WRAP(st, "relay: outbox row %lld", (long long)row->seq);
            break;
        }
        send_row(r, n - 1);
        if (r->is_send_stopped) {
            break; /* the next round starts again from the first unacknowledged row */
        }
        r->read_bytes += len + hlen;
        if (n == RELAY_BATCH || r->read_bytes >= RELAY_BATCH_BYTES) {
            is_full = true;
            break;
        }
    }
    sk_rows_close(rows);
    bool is_end = st == SK_ENOTFOUND && n - n_first < limit; /* fewer than asked: no more */
    if (st == SK_ENOTFOUND) {
        st = SK_OK;
    }
    if (st == SK_OK && is_full) {
        /*
         * Rows past the acknowledged one, from the highest seq (one index
         * lookup): a COUNT(*) would scan the backlog on every batch and
         * make draining it quadratic. Gaps in seq make this an upper bound.
         */
        int64_t max_seq = 0;
        if (sk_tx_query_int(tx, "SELECT COALESCE(MAX(seq), 0) FROM sk_outbox", NULL, 0,
                            &max_seq) == SK_OK) {
            r->lag = max_seq > r->acked_seq ? max_seq - r->acked_seq : 0;
        }
    } else {
        r->lag = (int64_t)n;
    }
    r->is_batch_full = is_full;
    r->is_read_done = st != SK_OK || is_full || is_end || r->is_send_stopped;
    sk__msg_lock(&r->mu);
    r->n_rows = n;
    sk__msg_unlock(&r->mu);
    return st;
}

/*
 * The rows are the relay thread's; only n_rows is published under mu. The
 * messages go to the reaper outside mu, so a full batch's destroys never
 * hold up a commit's wake-up (which takes mu).
 */
static void rows_release(sk_relay *r)
{
    for (size_t i = 0; i < r->n_rows; i++) {
        sk__reaper_add(&r->reaper, r->rows[i].msg);
        r->rows[i].msg = NULL;
    }
    sk__msg_lock(&r->mu);
    r->n_rows = 0;
    sk__msg_unlock(&r->mu);
}

/* ---------------------------------------------------------------- deleting */

static sk_status delete_work(sk_tx *tx, void *ctx)
{
    delete_unit *u = ctx;
    sk_db_value p[1] = { SK_DB_INT_V(u->seq) };

    return sk_tx_exec(tx, "DELETE FROM sk_outbox WHERE seq <= ?", p, 1, NULL);
}

static void delete_done(sk_status st, const char *message, void *ctx)
{
    delete_unit *u = ctx;
    sk_relay *r = u->relay;

    if (st == SK_OK) {
        int64_t cur = atomic_load(&r->deleted_seq);
        while (cur < u->seq && !atomic_compare_exchange_weak(&r->deleted_seq, &cur, u->seq)) {
        }
    } else {
        SK_LOG_WARN("relay: deleting published outbox rows up to seq=%lld failed: %s",
                    (long long)u->seq, message);
    }
    sk_free(u);
    sk__msg_lock(&r->mu);
    r->n_units--;
    pthread_cond_broadcast(&r->cond);
    sk__msg_unlock(&r->mu);
}

/*
 * Delete acknowledged rows when they are due (RELAY_DELETE_DELAY_MS,
 * RELAY_DELETE_ROWS) or @p is_now, unless a delete is already in flight.
 */
static void delete_acked(sk_relay *r, bool is_now)
{
    int64_t deleted = atomic_load(&r->deleted_seq);
    int64_t now = sk_time_mono_ms();
    delete_unit *u;
    sk_status st;

    if (deleted >= r->acked_seq) {
        r->undeleted_since_ms = 0;
        return;
    }
    if (r->undeleted_since_ms == 0) {
        r->undeleted_since_ms = now;
    }
    if (!is_now && r->acked_seq - deleted < RELAY_DELETE_ROWS &&
        now - r->undeleted_since_ms < RELAY_DELETE_DELAY_MS) {
        return;
    }
    sk__msg_lock(&r->mu);
    bool busy = r->n_units > 0;
    sk__msg_unlock(&r->mu);
    if (busy) {
        return; /* retried once the delete in flight is done */
    }
    u = sk_calloc(1, sizeof(*u));
    if (u == NULL) {
        return; /* retried on the next tick */
    }
    u->relay = r;
    u->seq = r->acked_seq;
    r->undeleted_since_ms = now; /* rows acknowledged from now on, or a retry, wait their turn */
    sk__msg_lock(&r->mu);
    r->n_units++;
    sk__msg_unlock(&r->mu);
    st = sk_store_submit(r->store, delete_work, delete_done, u);
    if (st != SK_OK) {
        sk_free(u);
        sk__msg_lock(&r->mu);
        r->n_units--;
        sk__msg_unlock(&r->mu);
    }
}

/* ---------------------------------------------------------------- acknowledgement inbox */

/*
 * Subscribe to r->link for the acknowledgements, under the bus's inbox
 * prefix (which the NATS permissions allow) and a random token of our own.
 */
static sk_status relay_acks_open(sk_relay *r)
{
    const char *inbox = r->bus->inbox_prefix != NULL ? r->bus->inbox_prefix : "_INBOX";
    char token[SK_UUID_LEN];
    char subject[sizeof(r->ack_prefix) + 2];
    natsStatus s;

    r->ack_sub = NULL;
    if (strlen(inbox) > RELAY_INBOX_PREFIX_MAX) {
        return SK_FAIL(SK_EINVAL, "relay: the inbox prefix is longer than %d bytes",
                       RELAY_INBOX_PREFIX_MAX);
    }
    sk_uuid7(token);
    snprintf(r->ack_prefix, sizeof(r->ack_prefix), "%s.%s.", inbox, token);
    snprintf(subject, sizeof(subject), "%s>", r->ack_prefix);
    s = natsConnection_SubscribeSync(&r->ack_sub, r->link->nc, subject);
    if (s != NATS_OK) {
        r->ack_sub = NULL;
        return sk__nats_fail(s, 0, "relay: subscribing to its acknowledgements");
    }
    return SK_OK;
}

/* Drop the subscription: acknowledgements still on their way are lost (their rows go again). */
static void relay_acks_close(sk_relay *r)
{
    if (r->ack_sub == NULL) {
        return;
    }
    SK_IGNORE(natsSubscription_Unsubscribe(r->ack_sub));
    natsSubscription_Destroy(r->ack_sub);
    r->ack_sub = NULL;
}

/* Move to the bus's current connection after a certificate reload (between rounds). */
static sk_status relay_move(sk_relay *r)
{
    relay_acks_close(r);
    if (!sk__bus_link_is_current(r->bus, r->link)) {
        sk__bus_link_release(r->link);
        r->link = sk__bus_link_acquire(r->bus);
    }
    return relay_acks_open(r);
}

/* ---------------------------------------------------------------- publishing */

/* Log a failed round at most once per SK__LOG_INTERVAL_MS. */
static void log_failure(sk_relay *r, const char *detail)
{
    if (sk__log_is_due(&r->last_log_ms, sk_time_mono_ms())) {
        SK_LOG_WARN("relay: %s (retrying from the first unacknowledged row)", detail);
    }
}

/*
 * Read acknowledgements until @p n_wanted rows of the round are settled, in
 * short steps: when the connection was re-established meanwhile
 * (@p reconnects is the count before publishing), acknowledgements of
 * publishes sent before the break will never come, so give up at once
 * rather than at @p deadline_ms. @return true when they are settled.
 */
static bool acks_take(sk_relay *r, size_t n_wanted, uint64_t reconnects, int64_t deadline_ms)
{
    while (r->n_settled + r->n_unanswerable < n_wanted) {
        natsMsg *m = NULL;
        int64_t left = deadline_ms - sk_time_mono_ms();
        natsStatus s = natsSubscription_NextMsg(
            &m, r->ack_sub, left < RELAY_ACK_POLL_MS ? (left < 1 ? 1 : left) : RELAY_ACK_POLL_MS);
        if (s == NATS_OK) {
            ack_record(r, m);
            continue;
        }
        if (s == NATS_NO_RESPONDERS) {
            /*
             * No stream takes one row's subject: the server's answer says so,
             * and nats.c frees it, with the subject that named the row. That
             * row stays pending, and with it every row after it.
             */
            r->n_unanswerable++;
            r->last_err = s;
            r->last_jerr = 0;
            continue;
        }
        if (s != NATS_TIMEOUT || sk_time_mono_ms() >= deadline_ms ||
            atomic_load(&r->link->n_reconnects) != reconnects ||
            !sk__bus_link_is_current(r->bus, r->link)) {
            return false;
        }
    }
    return true;
}

/*
 * Before a round: drop the answers of earlier rounds already queued (late,
 * after their round gave up). A "no responders" among them names no row
 * and would otherwise count against this round.
 */
static void acks_drop_stale(sk_relay *r)
{
    int n_queued = 0, n_bytes = 0;

    if (natsSubscription_GetPending(r->ack_sub, &n_queued, &n_bytes) != NATS_OK) {
        return;
    }
    for (int i = 0; i < n_queued; i++) {
        natsMsg *m = NULL;
        natsStatus s = natsSubscription_NextMsg(&m, r->ack_sub, 1);
        if (s == NATS_OK) {
            sk__reaper_add(&r->reaper, m);
        } else if (s != NATS_NO_RESPONDERS) {
            break;
        }
    }
}

/*
 * nats.c's flusher thread waits up to 1 ms for more data before it writes
 * what was published, on the path of every event. A flush writes it now
 * from this thread, then waits for the server's PONG (which comes before
 * the acknowledgements anyway). A PONG that is late or never comes (a
 * reconnect) is acks_take's business, so wait only briefly.
 */
static void flush_now(sk_relay *r)
{
    SK_IGNORE(natsConnection_FlushTimeout(r->link->nc, RELAY_ACK_POLL_MS));
}

/* Before a round's reads: nothing sent, nothing settled, stale answers dropped. */
static void round_begin(sk_relay *r)
{
    acks_drop_stale(r);
    r->last_err = NATS_OK;
    r->last_jerr = 0;
    r->n_sent = 0;
    r->read_seq = r->acked_seq;
    r->read_bytes = 0;
    r->is_read_done = false;
    r->is_batch_full = false;
    r->n_settled = 0;
    r->n_unanswerable = 0;
    r->is_send_stopped = false;
    r->is_send_settled = true;
    r->send_status = NATS_OK;
    r->send_reconnects = atomic_load(&r->link->n_reconnects);
}

/*
 * Publish row @p i (read_rows, in row order; the read asked for no more rows
 * than the window has room for). After a reconnect, a row sent before it may
 * have been lost with the old socket: sending later rows now could store
 * them ahead of it, so the round stops sending. (While disconnected,
 * publishing fails by itself: no reconnect buffer.)
 */
static void send_row(sk_relay *r, size_t i)
{
    if (r->is_send_stopped) {
        return;
    }
    if (atomic_load(&r->link->n_reconnects) != r->send_reconnects) {
        r->is_send_stopped = true;
        return;
    }
    natsStatus s = natsConnection_PublishMsg(r->link->nc, r->rows[i].msg);
    if (s != NATS_OK) {
        r->send_status = s;
        r->is_send_stopped = true;
        return;
    }
    r->n_sent++;
}

/*
 * Between two reads of a round: wait until the window has room for half of
 * it (nats.c's flusher writes what is buffered meanwhile). @return false
 * when the answers did not come (the round stops sending).
 */
static bool window_wait(sk_relay *r)
{
    if (window_room(r) > 0) {
        return true;
    }
    if (!acks_take(r, r->n_sent - RELAY_MAX_PENDING / 2, r->send_reconnects,
                   sk_time_mono_ms() + RELAY_ACK_WAIT_MS)) {
        r->is_send_settled = false;
        r->is_send_stopped = true;
        return false;
    }
    return true;
}

/*
 * Wait for the acknowledgements of the rows the round sent.
 * @return how many rows from the first are acknowledged.
 */
static size_t publish_finish(sk_relay *r, bool *is_failed)
{
    size_t n_ok = 0;
    size_t n_rows;

    sk__msg_lock(&r->mu);
    n_rows = r->n_rows;
    sk__msg_unlock(&r->mu);
    if (r->n_sent > 0 && r->is_send_settled) {
        flush_now(r);
        SK_IGNORE(
            acks_take(r, r->n_sent, r->send_reconnects, sk_time_mono_ms() + RELAY_ACK_WAIT_MS * 2));
    }
    while (n_ok < r->n_sent && r->rows[n_ok].state == ROW_OK) {
        n_ok++;
    }
    *is_failed = n_ok < n_rows;
    if (r->send_status != NATS_OK) {
        sk_status st = sk__nats_fail(r->send_status, 0, "publishing");
        log_failure(r, sk_error_message());
        (void)st;
    } else if (n_ok < r->n_sent) {
        sk_status st = sk__nats_fail(r->last_err != NATS_OK ? r->last_err : NATS_TIMEOUT,
                                     r->last_jerr, "publish not acknowledged");
        log_failure(r, sk_error_message());
        (void)st;
    }
    return n_ok;
}

/*
 * One round: read a batch a window at a time, publishing as it is read,
 * then wait for the acknowledgements and forget what was acknowledged.
 */
static bool relay_round(sk_relay *r, bool *is_failed)
{
    size_t n_ok, n_rows;
    sk_status st;

    *is_failed = false;
    if ((r->ack_sub == NULL || !sk__bus_link_is_current(r->bus, r->link)) &&
        (st = relay_move(r)) != SK_OK) {
        log_failure(r, sk_error_message());
        *is_failed = true;
        return false;
    }
    r->round++;
    round_begin(r);
    do {
        st = sk_store_read(r->store, read_rows, r);
    } while (st == SK_OK && !r->is_read_done && window_wait(r));
    sk__msg_lock(&r->mu);
    n_rows = r->n_rows;
    sk__msg_unlock(&r->mu);
    if (st != SK_OK) {
        log_failure(r, sk_error_message());
        if (r->n_sent == 0) {
            *is_failed = true;
            if (r->m_errors != NULL) {
                sk_counter_add(r->m_errors, 1);
            }
            rows_release(r);
            return false;
        }
        /* Rows before the one that failed went out: settle them below. */
    }
    if (n_rows == 0) {
        if (r->m_lag != NULL) {
            sk_gauge_set(r->m_lag, 0);
        }
        return false;
    }
    n_ok = publish_finish(r, is_failed);
    if (st != SK_OK) {
        *is_failed = true;
    }
    if (n_ok > 0) {
        r->acked_seq = r->rows[n_ok - 1].seq;
    }
    rows_release(r);
    if (n_ok > 0) {
        atomic_fetch_add(&r->published, n_ok);
        if (r->m_published != NULL) {
            sk_counter_add(r->m_published, n_ok);
        }
        delete_acked(r, false);
    }
    if (*is_failed && r->m_errors != NULL) {
        sk_counter_add(r->m_errors, 1);
    }
    r->lag -= (int64_t)n_ok;
    if (r->m_lag != NULL) {
        sk_gauge_set(r->m_lag, r->lag < 0 ? 0 : r->lag);
    }
    return !*is_failed && r->is_batch_full;
}

static void *relay_main(void *arg)
{
    sk_relay *r = arg;
    int64_t backoff = RELAY_BACKOFF_MIN_MS;
    bool more = true;

    sk_thread_name("sk-relay");
    for (;;) {
        bool is_failed = false;

        int64_t wait = RELAY_TICK_MS;
        if (atomic_load(&r->deleted_seq) >= r->acked_seq) {
            r->undeleted_since_ms = 0; /* the last delete covered everything */
        }
        sk__msg_lock(&r->mu);
        if (r->undeleted_since_ms != 0 && r->n_units == 0) {
            /* Wake up when the acknowledged rows are due for deleting. */
            int64_t left = r->undeleted_since_ms + RELAY_DELETE_DELAY_MS - sk_time_mono_ms();
            wait = left < 1 ? 1 : left < wait ? left : wait;
        }
        if (!more && !r->is_stopping) {
            wait_ms(r, wait);
        }
        bool stop = r->is_stopping;
        r->is_woken = false;
        sk__msg_unlock(&r->mu);
        if (stop) {
            break;
        }
        /* Holder or not: a batch that has been filling for a second is freed (ticks every
         * RELAY_TICK_MS at most), so a quiet relay keeps none. */
        sk__reaper_flush_stale(&r->reaper);
        if (!sk__relay_owner_is_holder(r->owner)) {
            more = false; /* standing by: woken when this instance becomes the holder */
            continue;
        }
        more = relay_round(r, &is_failed);
        delete_acked(r, false); /* rows now due, or a delete that failed earlier */
        if (is_failed) {
            sk__msg_lock(&r->mu);
            r->is_woken = false;
            wait_ms(r, backoff);
            sk__msg_unlock(&r->mu);
            backoff = backoff * 2 > RELAY_BACKOFF_MAX_MS ? RELAY_BACKOFF_MAX_MS : backoff * 2;
        } else {
            backoff = RELAY_BACKOFF_MIN_MS;
        }
    }
    return NULL;
}

/* ---------------------------------------------------------------- lifecycle */

static sk_status noop_work(sk_tx *tx, void *ctx)
{
    (void)tx;
    (void)ctx;
    return SK_OK;
}

sk_status sk_relay_start(sk_relay **out, sk_store *store, sk_bus *bus, sk_metrics *metrics)
{
    pthread_condattr_t ca;
    sk_status st = SK_OK;
    sk_relay *r = NULL;

    if (out == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_relay_start: out must not be NULL");
    }
    *out = NULL;
    if (store == NULL || bus == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_relay_start: store and bus must not be NULL");
    }
    r = sk_calloc(1, sizeof(*r));
    if (r == NULL) {
        return SK_FAIL(SK_ENOMEM, "sk_relay_start: allocating the relay");
    }
    r->store = store;
    r->bus = bus;
    if (pthread_mutex_init(&r->mu, NULL) != 0 || pthread_condattr_init(&ca) != 0) {
        sk_free(r);
        return SK_FAIL(SK_ENOMEM, "sk_relay_start: creating a mutex");
    }
    /* Timed waits on the monotonic clock: wall clock jumps must not stall the relay. */
    if (pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) != 0 ||
        pthread_cond_init(&r->cond, &ca) != 0) {
        pthread_condattr_destroy(&ca);
        pthread_mutex_destroy(&r->mu);
        sk_free(r);
        return SK_FAIL(SK_ENOMEM, "sk_relay_start: creating a condition variable");
    }
    pthread_condattr_destroy(&ca);
    if (metrics != NULL) {
        r->m_published = sk_metrics_counter(metrics, "sk_outbox_published_total",
                                            "Outbox messages published and acknowledged", NULL);
        r->m_errors = sk_metrics_counter(metrics, "sk_outbox_publish_errors_total",
                                         "Outbox relay rounds that failed", NULL);
        r->m_lag = sk_metrics_gauge(metrics, "sk_outbox_lag", "Outbox rows not yet published",
                                    NULL);
    }
    r->link = sk__bus_link_acquire(bus);
    if ((st = sk__reaper_init(&r->reaper)) != SK_OK) {
        st = SK_WRAP(st, "sk_relay_start");
        goto out;
    }
    if ((st = sk__relay_owner_start(&r->owner, store, on_wake, r)) != SK_OK) {
        st = SK_WRAP(st, "sk_relay_start");
        goto out;
    }
    if ((st = relay_acks_open(r)) != SK_OK) {
        st = SK_WRAP(st, "sk_relay_start");
        goto out;
    }
    if (pthread_create(&r->thread, NULL, relay_main, r) != 0) {
        st = SK_FAIL(SK_EINTERNAL, "sk_relay_start: creating the relay thread");
        goto out;
    }
    r->has_thread = true;
    sk_store_set_commit_hook(store, on_commit, r);
    *out = r;
    r = NULL;
out:
    sk_relay_stop(r);
    return st;
}

/* Wait until no delete unit is in flight. */
static void wait_units(sk_relay *r)
{
    sk__msg_lock(&r->mu);
    while (r->n_units > 0) {
        if (pthread_cond_wait(&r->cond, &r->mu) != 0) {
            sk_assert_fail("pthread_cond_wait", __FILE__, __LINE__);
        }
    }
    sk__msg_unlock(&r->mu);
}

void sk_relay_stop(sk_relay *r)
{
    if (r == NULL) {
        return;
    }
    if (r->has_thread) {
        sk_store_set_commit_hook(r->store, NULL, NULL);
        /*
         * A hook call may be running on the writer thread right now; a unit
         * queued after clearing it completes only once that call returned.
         */
        SK_IGNORE(sk_store_run(r->store, noop_work, NULL)); /* store closing: no hook runs */
        sk__msg_lock(&r->mu);
        r->is_stopping = true;
        pthread_cond_broadcast(&r->cond);
        sk__msg_unlock(&r->mu);
        pthread_join(r->thread, NULL);
    }
    /*
     * Delete what was published, so the next relay need not publish it again
     * (a second try for a full queue or a busy database; what is left is
     * published again, and JetStream or the consumers' inboxes drop it).
     */
    for (int i = 0; i < 2 && atomic_load(&r->deleted_seq) < r->acked_seq; i++) {
        wait_units(r);
        delete_acked(r, true);
        wait_units(r);
    }
    if (atomic_load(&r->deleted_seq) < r->acked_seq) {
        SK_LOG_WARN("relay: published outbox rows up to seq=%lld are not deleted; the next relay "
                    "publishes them again",
                    (long long)r->acked_seq);
    }
    sk__relay_owner_stop(r->owner);
    relay_acks_close(r); /* no acknowledgement arrives after this */
    rows_release(r);
    sk__reaper_fini(&r->reaper);
    sk__bus_link_release(r->link);
    pthread_cond_destroy(&r->cond);
    pthread_mutex_destroy(&r->mu);
    sk_free(r);
}

uint64_t sk_relay_published(sk_relay *relay)
{
    return relay == NULL ? 0 : atomic_load(&relay->published);
}
