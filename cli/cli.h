/* SPDX-License-Identifier: MIT */
/*
 * Internal interface of the `skald` command-line program: the subcommands
 * (cmd_<verb>.c), argument and path helpers (cli_util.c), the nats-server
 * configuration (nats_conf.c), the PKI bootstrap (pki_setup.c), readiness
 * probes (probe.c) and the child-process supervisor (supervisor.c).
 * Everything here runs on the main thread of the CLI process.
 */
#ifndef SK_CLI_H
#define SK_CLI_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include <curl/curl.h>
#include <nats/nats.h>

#include <skald/skald.h>

/* ---------------------------------------------------------------- commands */

/** A subcommand: argv[0] is the command's name; returns the process exit code (0, 1 or 2). */
typedef int (*cli_cmd_fn)(int argc, char **argv);

int cli_cmd_up(int argc, char **argv);
int cli_cmd_status(int argc, char **argv);
int cli_cmd_fault(int argc, char **argv);
int cli_cmd_dlq(int argc, char **argv);

/**
 * `skald dlq list`: print the dead letters of @p l on @p out, as a table or
 * (@p is_json) one JSON array; only the open ones unless @p is_all.
 * @return CLI_EXIT_OK, or CLI_EXIT_FAILURE (out of memory, printed).
 */
int cli_dlq_print(const sk_dlq_list *l, bool is_all, bool is_json, FILE *out);
/**
 * `skald dlq redrive ID`: read the dead letters on @p bus and send @p id back
 * (sk_dlq_redrive); says so on @p out, errors on stderr.
 * @return CLI_EXIT_OK, CLI_EXIT_USAGE (no such dead letter, or already
 *         resolved or superseded), CLI_EXIT_FAILURE.
 */
int cli_dlq_redrive(sk_bus *bus, const char *id, FILE *out);
int cli_cmd_replay(int argc, char **argv);
int cli_cmd_bench(int argc, char **argv);

/** Exit codes of every command (STYLE.md: 0 success, 1 runtime failure, 2 usage or config). */
#define CLI_EXIT_OK      0
#define CLI_EXIT_FAILURE 1
#define CLI_EXIT_USAGE   2

/* ---------------------------------------------------------------- helpers (cli_util.c) */

/** Default data directory, gateway port source and system file. */
#define CLI_DEFAULT_DATA   "./var"
#define CLI_DEFAULT_CONFIG "skald.yaml"

/**
 * Match argv[*i] against "--name VALUE" or "--name=VALUE".
 * @param[out] value the value (borrowed from argv) when matched.
 * @return 1 matched (and *i advanced past a separate value), 0 another
 *         argument, -1 this flag with a missing or empty value.
 */
int cli_flag(int argc, char **argv, int *i, const char *name, const char **value);

/** True when argv[i] is "--help", "-h" or "help". */
bool cli_is_help(const char *arg);

/** Print "skald: <context>: <message>" on stderr. */
void cli_errorf(const char *context, const char *fmt, ...) SK_PRINTF(2, 3);

/**
 * Parse a TCP port "1".."65535" (decimal, nothing else).
 * @return SK_OK or SK_EINVAL ("expected 1..65535, got \"x\"").
 */
SK_NODISCARD sk_status cli_port_parse(const char *text, int *out);

/**
 * The data dir to use: @p flag when not NULL, else $SKALD_DATA when set and
 * not empty, else CLI_DEFAULT_DATA. Borrowed (from argv, environ or static).
 */
const char *cli_data_dir_choose(const char *flag);

/**
 * The gateway port: @p flag (already parsed, > 0) when set, else
 * $SKALD_GATEWAY_PORT, else @p system_port.
 * @return SK_OK or SK_EINVAL when the environment value is not a port.
 */
SK_NODISCARD sk_status cli_gateway_port_choose(int flag, int system_port, int *out);

/** mkdir with @p mode unless it exists as a directory. @return SK_OK or SK_EIO. */
SK_NODISCARD sk_status cli_mkdir(const char *path, mode_t mode);

/**
 * Read the first line of a small text file (at most @p max_bytes) without
 * its line end. @param[out] out owned (sk_free).
 * @return SK_OK, SK_ENOTFOUND (no file), SK_EIO, SK_ELIMIT, SK_ENOMEM.
 */
SK_NODISCARD sk_status cli_file_read_line(const char *path, size_t max_bytes, char **out);

/**
 * Write @p text to @p path atomically (temporary file + rename) with @p mode.
 * @return SK_OK or SK_EIO.
 */
SK_NODISCARD sk_status cli_file_write(const char *path, const char *text, mode_t mode);

/** True when a TCP connection to 127.0.0.1:@p port succeeds now. */
bool cli_port_accepts(int port);

/**
 * Whether 127.0.0.1:@p port can be bound now (SO_REUSEADDR, like servers do).
 * @p port 0 asks the kernel for any free port.
 * @param[out] bound the port that was bound (the same, or the kernel's pick).
 */
bool cli_port_is_free(int port, int *bound);

/** Sleep at most @p ms milliseconds (used only by polls with a deadline). */
void cli_sleep_ms(int64_t ms);

/**
 * The directory of the running executable (dirname of /proc/self/exe),
 * where the service binaries skald-<service> are built next to skald.
 * @param[out] out owned (sk_free). @return SK_OK, SK_EIO, SK_ENOMEM.
 */
SK_NODISCARD sk_status cli_self_dir(char **out);

/**
 * Find an executable: @p name on $PATH, then in /usr/sbin, /usr/local/sbin,
 * /usr/local/bin, /sbin (nats-server is in /usr/sbin on Debian, which is
 * not on a normal user's PATH). @param[out] out owned (sk_free).
 * @return SK_OK, SK_ENOTFOUND, SK_ENOMEM.
 */
SK_NODISCARD sk_status cli_program_find(const char *name, char **out);

/* ---------------------------------------------------------------- pid file (pidfile.c) */

/** A held DATA/run/skald.pid. */
typedef struct cli_pidfile {
    int fd;     /* locked (F_SETLK) while held; -1 when not */
    char *path; /* owned */
} cli_pidfile;

/**
 * Create and lock @p path and write this process's PID in it.
 * @param[out] other when another live skald holds it: its PID (0 if unknown).
 * @return SK_OK, SK_EEXIST (held by a running skald), SK_EIO, SK_ENOMEM.
 */
SK_NODISCARD sk_status cli_pidfile_acquire(cli_pidfile *pf, const char *path, pid_t *other);
/** Remove the file and drop the lock. Safe on a released or failed pid file. */
void cli_pidfile_release(cli_pidfile *pf);

/* ---------------------------------------------------------------- nats-server config (nats_conf.c)
 */

/** Everything needed to render nats.conf. Strings borrowed. */
typedef struct cli_nats_conf {
    int port; /* 1..65535, on 127.0.0.1 */
    const char *server_name;
    const char *store_dir; /* JetStream storage (DATA/nats) */
    const char *cert_file; /* nats-server's certificate (IP SAN 127.0.0.1) */
    const char *key_file;
    const char *ca_file;  /* trust anchor for client certificates */
    const sk_system *sys; /* the users and their permissions are derived from it */
    /* Monitoring listener (/jsz, /healthz) on 127.0.0.1; 0 = none. */
    int http_port;
    /*
     * Cluster node: cluster_port > 0 makes this server one node of cluster
     * cluster_name, listening for routes on 127.0.0.1:cluster_port, with
     * routes to every port of route_ports (its own is skipped). Routes use
     * TLS both ways with cert_file/key_file, and accept only the
     * nats-server certificate (CLI_NATS_ROUTE_USER).
     */
    int cluster_port;
    const char *cluster_name;
    const int *route_ports;
    size_t n_route_ports;
} cli_nats_conf;

/** The subject of the nats-server certificate: the only identity allowed to open a route. */
#define CLI_NATS_ROUTE_USER "CN=" CLI_NATS_IDENTITY ",O=skald"

/**
 * Service-level key of the system file listing the services a service
 * sends saga commands to (`x-sends-commands-to: [inventory, payment]`);
 * without it the targets are derived (see docs/operations.md).
 */
#define CLI_NATS_COMMANDS_KEY "x-sends-commands-to"
/** The inbox prefix of the CLI's NATS connections (its user may subscribe only there). */
#define CLI_NATS_INBOX "_INBOX.skald-cli"

/**
 * Render a nats-server configuration: loopback listener, JetStream limits,
 * mTLS with client certificates required and mapped to users
 * (verify_and_map: the URI SAN is the user), one user per service of
 * conf->sys and one for the CLI, each allowed to publish and subscribe only
 * to what it needs (docs/operations.md, "NATS permissions"); no monitoring
 * port. Paths are quoted; a path with a quote, backslash or control
 * character is refused.
 * @param out appended to; left as it was on failure.
 * @return SK_OK, SK_EINVAL (naming the field), SK_EPROTO (a bad
 *         x-sends-commands-to list, naming the service and index),
 *         SK_ELIMIT/SK_ENOMEM (buffer).
 */
SK_NODISCARD sk_status cli_nats_conf_render(const cli_nats_conf *conf, sk_buf *out);

/**
 * Create (or bring up to date) every stream the services of @p sys use, the
 * DEAD_LETTERS stream and the discovery bucket, with the configuration the
 * services expect: `skald up` does it as the CLI identity before starting
 * them, since their NATS users may look streams up but not create them.
 * Needs a connected @p bus.
 * @return SK_OK, SK_EINVAL (NULL argument), SK_EBUS, SK_ETIMEDOUT,
 *         SK_EUNAVAILABLE (JetStream not ready yet; retry), SK_ENOMEM.
 */
SK_NODISCARD sk_status cli_nats_streams_ensure(sk_bus *bus, const sk_system *sys);

/**
 * Parse the port of a URL "tls://127.0.0.1:<port>" as written in nats.url.
 * @return SK_OK or SK_EPROTO.
 */
SK_NODISCARD sk_status cli_nats_url_port(const char *url, int *out);

/**
 * Parse every port of a comma-separated list of URLs "tls://127.0.0.1:<port>"
 * as written in nats.url (one per nats-server node).
 * @param[out] ports at most @p max ports; @param[out] n how many.
 * @return SK_OK, SK_EPROTO (not such a list), SK_ELIMIT (more than @p max).
 */
SK_NODISCARD sk_status cli_nats_url_ports(const char *urls, int *ports, size_t max, size_t *n);

/* ---------------------------------------------------------------- PKI (pki_setup.c) */

/** The identity the CLI uses to talk to NATS and the services. */
#define CLI_IDENTITY "skald-cli"

/* ---------------------------------------------------------------- running system (connect.c) */

/** How long a command waits for NATS before saying the system is not running. */
#define CLI_CONNECT_DEADLINE_MS 2000

/** A connection to a running system with the CLI's identity. */
typedef struct cli_conn {
    char *url;        /* owned: DATA/run/nats.url */
    sk_tls_files tls; /* DATA/pki/skald-cli.{pem,key} and ca.pem */
    sk_bus *bus;
} cli_conn;

/**
 * Connect to the system whose data dir is @p data; errors are printed with
 * @p context. @return CLI_EXIT_OK, or CLI_EXIT_FAILURE (not running, no
 * identity, cannot connect).
 */
int cli_conn_open(cli_conn *c, const char *data, const char *context);
void cli_conn_close(cli_conn *c);
/** The certificate name of nats-server in DATA/pki. */
#define CLI_NATS_IDENTITY "nats-server"

/**
 * Make sure DATA/pki holds the CA and a certificate for every service of
 * @p sys, for the CLI and for nats-server (kept when still valid).
 */
SK_NODISCARD sk_status cli_pki_setup(const char *pki_dir, const sk_system *sys);

/* ---------------------------------------------------------------- probes (probe.c) */

/**
 * GET http://127.0.0.1:@p port@p path over plain HTTP/1.1 with a deadline.
 * @param[out] status the HTTP status code (0 when no answer).
 * @return SK_OK (an answer arrived), SK_EUNAVAILABLE (connect failed),
 *         SK_ETIMEDOUT, SK_EPROTO (not HTTP), SK_EIO.
 */
SK_NODISCARD sk_status cli_http_get_status(int port,
                                           const char *path,
                                           int64_t timeout_ms,
                                           int *status);

/* ---------------------------------------------------------------- supervisor (supervisor.c) */

/** Restart delays: the first, the cap, and how long a child must run to reset them. */
#define CLI_BACKOFF_MIN_MS   250
#define CLI_BACKOFF_MAX_MS   10000
#define CLI_BACKOFF_RESET_MS 30000
/** How long each shutdown phase waits after SIGTERM before SIGKILL. */
#define CLI_STOP_DEADLINE_MS 10000
/**
 * The watchdog: every child but nats-server gets the write end of a pipe as
 * this descriptor, named in its environment (SKALD_WATCHDOG_FD=3); a service
 * writes a byte to it every second while it is sound (services/common/
 * svc_watchdog.c). Once a child has written, a silence of
 * CLI_WATCHDOG_TIMEOUT_MS (stopped, hung, or its store writer stuck) gets it
 * SIGKILL, and it is restarted like a child that died; unless a debugger
 * or strace is attached to it. 30 s, like a Kubernetes liveness probe's
 * defaults (3 failures, 10 s apart): a pause that short is left alone.
 */
#define CLI_WATCHDOG_FD         3
#define CLI_WATCHDOG_ENV        "SKALD_WATCHDOG_FD"
#define CLI_WATCHDOG_TIMEOUT_MS     30000
#define CLI_WATCHDOG_TIMEOUT_MAX_MS (INT64_C(24) * 3600 * 1000)

/**
 * The delay before restarting a child that exited after running @p ran_ms,
 * given the delay used for its previous restart (0 when none): 250 ms,
 * doubling up to 10 s, back to 250 ms once the child had run 30 s.
 */
int64_t cli_backoff_next(int64_t prev_delay_ms, int64_t ran_ms);

/** The order in which children are stopped: lower phases first. */
typedef enum cli_stop_phase {
    CLI_PHASE_GATEWAY = 0, /* stops first: no new requests come in */
    CLI_PHASE_SERVICE = 1,
    CLI_PHASE_BROKER = 2, /* nats-server, stops last */
} cli_stop_phase;
#define CLI_PHASE_COUNT 3

/**
 * Supervises child processes: starts them, restarts them with backoff when
 * they exit, and stops them in phase order. Signals SIGCHLD, SIGTERM and
 * SIGINT are blocked in the calling process and read through a signalfd;
 * children get the original mask back. Owner-thread-only; the process
 * should have no other threads (signal masks are per thread).
 */
typedef struct cli_supervisor cli_supervisor;

/**
 * Block the signals and open the signalfd.
 * @param[out] out owned, cli_supervisor_destroy.
 * @return SK_OK, SK_EIO (signalfd), SK_ENOMEM.
 */
SK_NODISCARD sk_status cli_supervisor_create(cli_supervisor **out);
/**
 * Stop every running child (cli_supervisor_stop_all), close the signalfd
 * and restore the signal mask. NULL-safe.
 */
void cli_supervisor_destroy(cli_supervisor *s);

/**
 * Start a child now: vfork, reset signals, stdin from /dev/null, stdout and
 * stderr appended to @p log_path, execvpe(@p argv[0], argv). Children of
 * every phase but CLI_PHASE_BROKER get the watchdog pipe (CLI_WATCHDOG_FD and
 * CLI_WATCHDOG_ENV); no child inherits CLI_WATCHDOG_ENV from skald's own
 * environment.
 * @param name unique display name ("order-1"); copied.
 * @param argv NULL-terminated; argv[0] is the path of the program (a name
 *        without '/' is searched on PATH); copied.
 * @param log_path file the child writes to (created 0600); copied.
 * @return SK_OK, SK_EINVAL, SK_EEXIST (name taken), SK_EIO (fork, log file), SK_ENOMEM.
 */
SK_NODISCARD sk_status cli_supervisor_spawn(cli_supervisor *s,
                                            const char *name,
                                            cli_stop_phase phase,
                                            const char *const *argv,
                                            const char *log_path);

/**
 * Handle what happened (children that exited, restarts that are due, stop
 * signals), waiting at most @p wait_ms for something to happen (0 = just
 * look, -1 = until an event).
 */
void cli_supervisor_poll(cli_supervisor *s, int64_t wait_ms);

/** True once SIGTERM or SIGINT arrived. */
bool cli_supervisor_is_stopping(const cli_supervisor *s);
/** True (once) when SIGHUP arrived since the last call: the certificates should be renewed. */
bool cli_supervisor_take_reload(cli_supervisor *s);
/** Send @p sig to every running child (e.g. SIGHUP: re-read certificates). */
void cli_supervisor_signal_all(cli_supervisor *s, int sig);
/** Ask for the stop as if a signal had arrived (tests, fatal errors). */
void cli_supervisor_request_stop(cli_supervisor *s);

/**
 * Stop every child, phase by phase: SIGTERM to the running children of the
 * phase (SIGINT to nats-server's phase: the same shutdown, exit status 0
 * instead of 1), wait until they exit (CLI_STOP_DEADLINE_MS, or @p deadline_ms when
 * > 0), then SIGKILL the rest and reap them. Pending restarts are cancelled.
 */
void cli_supervisor_stop_all(cli_supervisor *s, int64_t deadline_ms);

/** PID of child @p name, or 0 when it is not running (or unknown). */
pid_t cli_supervisor_pid(const cli_supervisor *s, const char *name);
/** How many times child @p name was restarted (0 when unknown). */
unsigned cli_supervisor_restarts(const cli_supervisor *s, const char *name);
/** Number of children currently running. */
size_t cli_supervisor_running(const cli_supervisor *s);
/** Let tests shorten the restart delays: every computed delay is multiplied by @p percent / 100. */
void cli_supervisor_set_backoff_scale(cli_supervisor *s, int percent);
/** Let tests shorten the watchdog's silence before SIGKILL: 1..CLI_WATCHDOG_TIMEOUT_MAX_MS, else
 * ignored. */
void cli_supervisor_set_watchdog_timeout(cli_supervisor *s, int64_t timeout_ms);
/** True once child @p name has written to its watchdog pipe since it was last started. */
bool cli_supervisor_is_watched(const cli_supervisor *s, const char *name);

/* ---------------------------------------------------------------- bench (bench_stats.c) */

/* Limits of `skald bench`'s arguments. */
#define CLI_BENCH_MAX_RATE        100000.0 /* orders/s */
#define CLI_BENCH_MAX_DURATION_S  3600.0
#define CLI_BENCH_MAX_WARMUP_S    600.0
#define CLI_BENCH_MAX_TIMEOUT_S   600.0
#define CLI_BENCH_MAX_CONCURRENCY 10000
#define CLI_BENCH_MAX_CONNECTIONS 1024
/* Defaults: open loop at 100 orders/s for 10 s after a 1 s warm-up. */
#define CLI_BENCH_DEFAULT_RATE       100.0
#define CLI_BENCH_DEFAULT_DURATION_S 10.0
#define CLI_BENCH_DEFAULT_WARMUP_S   1.0
#define CLI_BENCH_DEFAULT_TIMEOUT_S  30.0
#define CLI_BENCH_DEFAULT_CONNS      64
/* --find-max: first rate, growth per step, and what "sustained" means. */
#define CLI_BENCH_FIND_START_RATE 50.0
#define CLI_BENCH_FIND_FACTOR     1.5
#define CLI_BENCH_FIND_MAX_RATE   20000.0
/* Most climbing steps (the seed plan and the run share the bound). */
#define CLI_BENCH_FIND_MAX_STEPS 64
/* After the first step not sustained, this many steps between it and the last sustained one;
 * each halves the gap (as a ratio), so the ×1.5 bracket narrows to within 5 %. */
#define CLI_BENCH_FIND_REFINE      3
#define CLI_BENCH_SUSTAINED_SHARE 0.95
#define CLI_BENCH_SUSTAINED_P99_US 1000000

/** The options of `skald bench` (strings borrowed from argv). */
typedef struct cli_bench_opts {
    const char *data;   /* --data DIR; NULL = $SKALD_DATA, else ./var */
    const char *url;    /* --url URL of the gateway; NULL = found in discovery */
    double rate;        /* --rate: orders/s offered (open loop); 0 in closed loop */
    int concurrency;    /* --concurrency: orders in flight (closed loop); 0 in open loop */
    double duration_s;  /* --duration: measured seconds (per step with --find-max) */
    double warmup_s;    /* --warmup: seconds before each measurement, excluded */
    double timeout_s;   /* --timeout: longest POST → terminal before an order counts as timed out */
    int connections;    /* --connections: most HTTP connections to the gateway */
    double max_rate;    /* --max-rate: --find-max stops below it */
    bool is_find_max;   /* --find-max: step the rate up from --rate */
    bool is_json;       /* --json: one JSON object on stdout */
    bool is_poll;       /* --follow poll: poll GET instead of watching events */
    bool is_help;       /* --help: nothing else was checked */
} cli_bench_opts;

/**
 * Parse `skald bench`'s arguments (argv[0] is "bench") into @p out, with
 * the defaults above for what is not given.
 * @return SK_OK, or SK_EINVAL with a message naming the option (unknown
 *         argument, missing value, value out of range, --rate together with
 *         --concurrency, --find-max with --concurrency).
 */
SK_NODISCARD sk_status cli_bench_args_parse(int argc, char **argv, cli_bench_opts *out);

/** Latency samples in microseconds, kept whole so percentiles are exact. Caller-serialized. */
typedef struct cli_lat {
    int64_t *us; /* owned */
    size_t n, cap;
    bool is_sorted;
} cli_lat;

/** Cannot fail: the array grows on the first add. */
void cli_lat_init(cli_lat *l);
/** Free the samples; idempotent. */
void cli_lat_fini(cli_lat *l);
/** Forget the samples, keep the memory. */
void cli_lat_reset(cli_lat *l);
/**
 * Add one sample (a negative one counts as 0).
 * @return SK_OK, SK_EINVAL (NULL), SK_ENOMEM.
 */
SK_NODISCARD sk_status cli_lat_add(cli_lat *l, int64_t us);
/**
 * The exact @p pct percentile (nearest rank: the smallest sample with at
 * least pct % of the samples at or below it); 0 is the minimum, 100 the
 * maximum. Sorts the samples. @return the sample, or 0 when there is none
 * (or @p pct is outside 0..100, or NaN).
 */
int64_t cli_lat_percentile(cli_lat *l, double pct);

/**
 * Open-loop schedule: send i is due at start + i / rate, whatever happened
 * to the sends before it, so latency is measured from the due time
 * (no coordinated omission). Caller-serialized.
 */
typedef struct cli_sched {
    int64_t start_us;
    double rate;      /* sends per second, > 0 */
    uint64_t n_total; /* sends in the schedule */
    uint64_t n_taken; /* sends handed out by cli_sched_next */
} cli_sched;

/** A schedule of @p n_total sends at @p rate per second from @p start_us (rate <= 0: no sends). */
void cli_sched_init(cli_sched *s, int64_t start_us, double rate, uint64_t n_total);
/** When send @p i is due (µs, the clock of start_us). */
int64_t cli_sched_time_us(const cli_sched *s, uint64_t i);
/**
 * Hand out the next send if it is due at @p now_us.
 * @param[out] index its number; @param[out] due_us its due time.
 * @return true when one was due (and is now taken).
 */
bool cli_sched_next(cli_sched *s, int64_t now_us, uint64_t *index, int64_t *due_us);
/** Microseconds until the next send is due (0 when overdue), or -1 when none is left. */
int64_t cli_sched_wait_us(const cli_sched *s, int64_t now_us);

/** --find-max: the offered rate of step @p k (0-based): @p start × @p factor^k. */
double cli_bench_step_rate(double start, double factor, int k);
/** The next --find-max rate between the highest sustained @p lo and the lowest not sustained
 * @p hi: their geometric mean (the steps grow by a factor, so the gap is a ratio). */
double cli_bench_refine_rate(double lo, double hi);
/**
 * Whether a step held its rate: both the achieved request rate and the
 * completed orders/s are at least CLI_BENCH_SUSTAINED_SHARE of @p offered,
 * p99 end-to-end is at most CLI_BENCH_SUSTAINED_P99_US, and nothing failed
 * (@p n_failed counts errors, timeouts and rejected orders).
 */
bool cli_bench_is_sustained(double offered,
                            double achieved,
                            double completed,
                            int64_t e2e_p99_us,
                            uint64_t n_failed);

/** What `skald bench` seeds so that every order can be approved. */
typedef struct cli_bench_plan {
    uint64_t max_orders;   /* most orders the run can place */
    int n_products;        /* orders spread over them (no single hot row) */
    int n_customers;
    int64_t price_cents;   /* of every product; each order is one unit of one product */
    int64_t stock;         /* per product */
    int64_t credit_cents;  /* credit limit per customer */
} cli_bench_plan;

/**
 * Size the seed from the options: the most orders the run can place
 * (rate × (warm-up + duration), summed over the steps of --find-max up to
 * --max-rate; in closed loop concurrency × (warm-up + duration) × 1000, as if
 * each order took 1 ms), spread over the products and customers with a
 * margin of 2×.
 * @return SK_OK, SK_EINVAL (NULL), SK_ELIMIT (more stock or credit than the
 *         API accepts: shorten the run).
 */
SK_NODISCARD sk_status cli_bench_plan_make(const cli_bench_opts *o, cli_bench_plan *out);

/* ---------------------------------------------------------------- bench: the event loop (bench_loop.c) */

/** A libcurl multi handle driven by epoll (libcurl's multi_socket interface). */
typedef struct cli_curl_loop {
    CURLM *multi;         /* borrowed */
    int epfd;             /* the sockets libcurl asked for, and wakefd */
    int wakefd;           /* eventfd: cli_curl_loop_wake from another thread */
    int64_t timer_due_us; /* libcurl's next timeout (monotonic), -1: none */
} cli_curl_loop;

/** Take over @p multi's socket and timer callbacks. */
SK_NODISCARD sk_status cli_curl_loop_init(cli_curl_loop *l, CURLM *multi);
/** Give the callbacks back and close the descriptors (safe after a failed init). */
void cli_curl_loop_fini(cli_curl_loop *l);
/**
 * Wait up to @p wait_ms (less when libcurl's timer is due sooner) for ready
 * sockets or a wake-up, and let libcurl act on what is ready and on its
 * timer. Finished transfers are then in curl_multi_info_read.
 */
void cli_curl_loop_run(cli_curl_loop *l, int wait_ms);
/** End a cli_curl_loop_run that is waiting; any thread. */
void cli_curl_loop_wake(cli_curl_loop *l);

/* ---------------------------------------------------------------- bench: the system's own cost */

/** Most processes of a local `skald up` that `skald bench` follows. */
#define CLI_SYS_MAX_PROCS 64

/** One child of `skald up`: its CPU and its memory while the bench measures. */
typedef struct cli_sys_proc {
    int pid;
    char name[64];    /* the instance (--instance) or the command name */
    bool is_broker;   /* nats-server */
    bool is_gone;     /* it exited during the window: counted up to its last sample */
    uint64_t cpu0_us; /* utime + stime at the window's start */
    uint64_t cpu1_us; /* ... at its end */
    uint64_t peak_rss_kb, peak_pss_kb;
} cli_sys_proc;

/** The processes of the `skald up` that owns a data dir, followed over a window. */
typedef struct cli_sys {
    int root; /* skald up's pid; 0: no local system (figures not available) */
    size_t n;
    cli_sys_proc procs[CLI_SYS_MAX_PROCS];
    int64_t t0_us, t1_us;          /* monotonic, window start and end */
    uint64_t client0_us, client1_us; /* this process's own CPU (getrusage) */
    uint64_t peak_services_rss_kb;  /* every process but nats-server, summed at one sample */
    uint64_t peak_services_pss_kb;
} cli_sys;

/**
 * Find the `skald up` of @p data_dir (DATA/run/skald.pid, a live process on
 * this machine) and list its children. False (and s->root 0) when there is
 * none: the bench then reports no system figures.
 */
bool cli_sys_open(cli_sys *s, const char *data_dir);
/** Start the window: CPU counters now, a first memory sample. */
void cli_sys_start(cli_sys *s);
/** Sample memory (peaks) and CPU; about once a second inside the window, and at its end. */
void cli_sys_sample(cli_sys *s);

/** What the window says, per completed order. */
typedef struct cli_sys_report {
    bool is_available;
    int root;
    size_t n_procs;
    double cpu_ms_per_order;          /* every child of skald up */
    double services_cpu_ms_per_order; /* all but nats-server */
    double broker_cpu_ms_per_order;   /* nats-server */
    double client_cpu_ms_per_order;   /* skald bench itself */
    double cpu_share;                 /* of all cores during the window, 0..1 */
    char largest[64];                 /* the service with the highest peak RSS */
    uint64_t largest_rss_kb, largest_pss_kb;
    uint64_t services_rss_kb, services_pss_kb; /* peak of the sum over services */
    uint64_t broker_rss_kb;
} cli_sys_report;

/** Summarise a finished window over @p n_orders completed orders (0: no per-order figures). */
void cli_sys_report_make(const cli_sys *s, double n_orders, cli_sys_report *out);

/* ---------------------------------------------------------------- bench: JetStream per order */

/** Most streams `skald bench` counts (three per context). */
#define CLI_BROKER_MAX_STREAMS 96

/** One stream `skald bench` counts, with its state at the mark. */
typedef struct cli_broker_stream {
    char name[96];
    uint64_t last_seq0;
    int64_t consumers0;
} cli_broker_stream;

/** The system's streams, asked for their sequence numbers (cli/bench_broker.c). */
typedef struct cli_broker {
    jsCtx *js; /* NULL: not open (nothing is counted) */
    cli_broker_stream streams[CLI_BROKER_MAX_STREAMS];
    size_t n_streams;
    bool is_marked;
} cli_broker;

/**
 * List @p sys's streams (events, commands and replies of every context that
 * has them) and open a JetStream context on @p nc (borrowed; it must outlive
 * @p k). @return SK_OK, SK_EINVAL, SK_ELIMIT (too many streams), SK_EBUS.
 */
SK_NODISCARD sk_status cli_broker_open(cli_broker *k, natsConnection *nc, const sk_system *sys);
/**
 * Remember every stream's last sequence number and consumers.
 * @return SK_OK, SK_ESTATE (not open), SK_EBUS.
 */
SK_NODISCARD sk_status cli_broker_mark(cli_broker *k);
/**
 * Messages stored in the streams since the mark, and their deliveries (each
 * stream's growth times its consumers). Out-parameters are 0 on failure.
 * @return SK_OK, SK_ESTATE (not open, no mark), SK_EBUS, SK_ECONFLICT (a
 * stream's consumers changed or its sequence went back), SK_ELIMIT.
 */
SK_NODISCARD sk_status cli_broker_since(cli_broker *k, uint64_t *published, uint64_t *delivered);
/** Idempotent; safe on a zeroed or failed open. */
void cli_broker_close(cli_broker *k);

/**
 * utime + stime (clock ticks) from the text of /proc/PID/stat, whose command
 * name may hold spaces and parentheses. False when malformed.
 */
bool cli_proc_stat_ticks(const char *text, uint64_t *ticks);
/**
 * CPU time of process @p pid, every thread, in microseconds (clock-tick
 * resolution: measure windows of seconds). False when it is gone or unreadable.
 * `skald bench` and the benchmarks under bench/ read other processes with it.
 */
bool cli_proc_cpu_us(int pid, uint64_t *us);
/** This process's own CPU time (user + system, every thread) in microseconds (getrusage). */
uint64_t cli_self_cpu_us(void);
/** The value in kB of @p field ("Rss", "Pss") in /proc/PID/smaps_rollup text. False when absent. */
bool cli_smaps_kb(const char *text, const char *field, uint64_t *kb);

#endif /* SK_CLI_H */
