/* SPDX-License-Identifier: MIT */
/*
 * The process supervisor of `skald up`. SIGCHLD, SIGTERM and SIGINT are
 * blocked and read from a signalfd, so there are no signal handlers and no
 * races with the loop. A child is only ever signalled by the PID it got from
 * vfork while it has not been reaped yet, so a recycled PID is never hit.
 * Children run in their own process group (a ^C on the terminal reaches
 * skald only, which then stops them in order) and get SIGTERM should skald
 * die first (PR_SET_PDEATHSIG).
 *
 * The watchdog: a child that dies is restarted, but one that hangs (stopped
 * by SIGSTOP, deadlocked, its store writer stuck) would keep its locks and
 * its consumers' messages for ever. So every child but nats-server gets the
 * write end of a non-blocking pipe as CLI_WATCHDOG_FD; a service writes a
 * byte to it every second while it is sound. The first byte arms the watch;
 * then CLI_WATCHDOG_TIMEOUT_MS without one gets the child SIGKILL, and the
 * usual restart follows. A child that never writes is never watched, and
 * one that a debugger or strace holds (TracerPid) is left alone.
 */
#define _GNU_SOURCE /* vfork, pipe2, execvpe */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"

/* How long to wait for children that got SIGKILL before giving up on them. */
#define KILL_REAP_MS 5000
/* How often the watchdog pipes are read, and a gap between two reads that means skald was frozen.
 */
#define WATCHDOG_READ_MS   1000
#define WATCHDOG_FROZEN_MS 5000
/* "SKALD_WATCHDOG_FD=3", the environment entry of a watched child. */
#define STRINGIFY_(x)         #x
#define STRINGIFY(x)          STRINGIFY_(x)
#define WATCHDOG_ENV_ASSIGNED CLI_WATCHDOG_ENV "=" STRINGIFY(CLI_WATCHDOG_FD)

typedef struct child {
    char *name;
    cli_stop_phase phase;
    char **argv; /* NULL-terminated, owned */
    char *log_path;
    pid_t pid;             /* 0 when not running */
    int64_t started_ms;    /* monotonic */
    int64_t delay_ms;      /* delay of the last restart, unscaled (0 = none yet) */
    int64_t restart_at_ms; /* monotonic; 0 when no restart is pending */
    unsigned n_restarts;
    int beat_fd;          /* read end of the watchdog pipe, or -1 */
    bool is_watched;      /* it wrote to the pipe since it was started */
    int64_t last_beat_ms; /* monotonic: its last byte, or its start */
    int64_t watch_due_ms; /* monotonic: when its silence is next looked at */
    bool is_trace_logged; /* "left alone: traced" said since its last byte */
    bool is_hang_killed;  /* the watchdog killed it: its restart does not reset the backoff */
} child;

struct cli_supervisor {
    child *children;
    size_t n_children;
    size_t cap_children;
    int sfd;           /* signalfd for SIGCHLD, SIGTERM, SIGINT */
    sigset_t old_mask; /* restored by destroy */
    bool is_stopping;  /* a stop signal arrived (or was requested) */
    bool is_forced;    /* a second stop signal: skip the grace periods */
    bool is_reload;    /* SIGHUP arrived and cli_supervisor_take_reload has not seen it yet */
    int backoff_percent;
    int64_t watchdog_timeout_ms;
    int64_t last_drain_ms; /* monotonic: the pipes were last read (drain_beats); 0: never */
};

static const char *const phase_names[CLI_PHASE_COUNT] = { "gateway", "services", "nats-server" };

int64_t cli_backoff_next(int64_t prev_delay_ms, int64_t ran_ms)
{
    if (prev_delay_ms <= 0 || ran_ms >= CLI_BACKOFF_RESET_MS) {
        return CLI_BACKOFF_MIN_MS;
    }
    if (prev_delay_ms >= CLI_BACKOFF_MAX_MS / 2) {
        return CLI_BACKOFF_MAX_MS;
    }
    return prev_delay_ms * 2 < CLI_BACKOFF_MIN_MS ? CLI_BACKOFF_MIN_MS : prev_delay_ms * 2;
}

static void stop_signals(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGCHLD);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGHUP);
}

sk_status cli_supervisor_create(cli_supervisor **out)
{
    cli_supervisor *s = NULL;
    sigset_t set;

    if (out == NULL) {
        return SK_FAIL(SK_EINVAL, "cli_supervisor_create: out must not be NULL");
    }
    *out = NULL;
    s = sk_calloc(1, sizeof(*s));
    if (s == NULL) {
        return SK_FAIL(SK_ENOMEM, "cli_supervisor_create: allocating");
    }
    s->backoff_percent = 100;
    s->watchdog_timeout_ms = CLI_WATCHDOG_TIMEOUT_MS;
    stop_signals(&set);
    /* Blocked before any child exists, so no SIGCHLD is lost and none runs a default action. */
    if (pthread_sigmask(SIG_BLOCK, &set, &s->old_mask) != 0) {
        sk_free(s);
        return SK_FAIL(SK_EIO, "blocking signals");
    }
    s->sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (s->sfd < 0) {
        int e = errno;
        (void)pthread_sigmask(SIG_SETMASK, &s->old_mask, NULL);
        sk_free(s);
        return SK_FAIL(SK_EIO, "signalfd: %s", strerror(e));
    }
    *out = s;
    return SK_OK;
}

static child *find(const cli_supervisor *s, const char *name)
{
    for (size_t i = 0; i < s->n_children; i++) {
        if (strcmp(s->children[i].name, name) == 0) {
            return &s->children[i];
        }
    }
    return NULL;
}

static void child_fini(child *c)
{
    for (size_t i = 0; c->argv != NULL && c->argv[i] != NULL; i++) {
        sk_free(c->argv[i]);
    }
    sk_free(c->argv);
    sk_free(c->name);
    sk_free(c->log_path);
}

/* Write @p s to @p fd, in the child: a system call, nothing else. */
static void child_write(int fd, const char *s)
{
    (void)!write(fd, s, strlen(s));
}

/*
 * In the child, between vfork and exec. It shares the parent's memory until
 * it execs (and the parent's other threads keep running), so it only makes
 * system calls and touches nothing but its own stack: no stdio, no malloc.
 */
static void child_exec(const child *c, int log_fd, int beat_fd, char **envp, pid_t parent)
{
    sigset_t none;
    int null_fd;

    signal(SIGPIPE, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    signal(SIGCHLD, SIG_DFL);
    sigemptyset(&none);
    (void)pthread_sigmask(SIG_SETMASK, &none, NULL);
    (void)setpgid(0, 0);
    /* Die with skald even when it is SIGKILLed; check the parent did not go already. */
    (void)prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) {
        _exit(1);
    }
    null_fd = open("/dev/null", O_RDONLY);
    if (null_fd >= 0) {
        (void)dup2(null_fd, STDIN_FILENO);
        if (null_fd != STDIN_FILENO) {
            close(null_fd);
        }
    }
    (void)dup2(log_fd, STDOUT_FILENO);
    (void)dup2(log_fd, STDERR_FILENO);
    if (log_fd > STDERR_FILENO) {
        close(log_fd);
    }
    /* The pipe's own descriptor is close-on-exec; its copy at CLI_WATCHDOG_FD is not. */
    if (beat_fd == CLI_WATCHDOG_FD) {
        (void)fcntl(beat_fd, F_SETFD, 0);
    } else if (beat_fd >= 0) {
        (void)dup2(beat_fd, CLI_WATCHDOG_FD);
    }
    execvpe(c->argv[0], c->argv, envp);
    /* errno in digits: strerror may translate (locks, allocations). */
    char digits[16];
    size_t i = sizeof(digits) - 1;
    int e = errno;
    digits[i] = '\0';
    do {
        digits[--i] = (char)('0' + e % 10);
        e /= 10;
    } while (e > 0 && i > 0);
    child_write(STDERR_FILENO, "skald: starting ");
    child_write(STDERR_FILENO, c->name);
    child_write(STDERR_FILENO, ": ");
    child_write(STDERR_FILENO, c->argv[0]);
    child_write(STDERR_FILENO, ": cannot execute it (errno ");
    child_write(STDERR_FILENO, digits + i);
    child_write(STDERR_FILENO, ")\n");
    _exit(127);
}

/* vfork, and exec in the child: a function of its own, so no variable of the caller lives across
 * vfork. */
static pid_t
vfork_exec(const child *c, int log_fd, int beat_fd, char **envp, pid_t parent, int *err)
{
    pid_t pid = vfork();
    if (pid == 0) {
        child_exec(c, log_fd, beat_fd, envp, parent);
    }
    *err = errno;
    return pid;
}

/*
 * A child's environment: ours without any SKALD_WATCHDOG_FD skald itself was
 * given, plus WATCHDOG_ENV_ASSIGNED for a watched child. The array is owned
 * (sk_free); its strings are environ's and a literal.
 */
static char **child_environ(bool is_watched)
{
    extern char **environ;
    size_t n = 0;
    size_t prefix_len = strlen(CLI_WATCHDOG_ENV "=");

    while (environ != NULL && environ[n] != NULL) {
        n++;
    }
    char **envp = sk_calloc(n + 2, sizeof(*envp));
    if (envp == NULL) {
        return NULL;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (strncmp(environ[i], CLI_WATCHDOG_ENV "=", prefix_len) != 0) {
            envp[k++] = environ[i];
        }
    }
    if (is_watched) {
        envp[k] = (char *)WATCHDOG_ENV_ASSIGNED;
    }
    return envp;
}

static sk_status child_start(cli_supervisor *s, child *c)
{
    pid_t parent = getpid();
    int beat[2] = { -1, -1 };
    char **envp = NULL;
    sk_status st = SK_OK;
    bool is_watched = c->phase != CLI_PHASE_BROKER;
    int log_fd = open(c->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);

    if (log_fd < 0) {
        return SK_FAIL(SK_EIO, "opening log %s: %s", c->log_path, strerror(errno));
    }
    /* Non-blocking on both ends: a child never blocks on a full pipe, nor do we on an empty one. */
    if (is_watched && pipe2(beat, O_CLOEXEC | O_NONBLOCK) != 0) {
        st = SK_FAIL(SK_EIO, "starting %s: watchdog pipe: %s", c->name, strerror(errno));
        goto out;
    }
    envp = child_environ(is_watched);
    if (envp == NULL) {
        st = SK_FAIL(SK_ENOMEM, "starting %s: copying the environment", c->name);
        goto out;
    }
    fflush(NULL); /* so buffered output is not written twice */
    /*
     * vfork, not fork: copying the page tables of skald (threads, TLS and
     * JetStream state by now) and the copy-on-write faults and cross-CPU
     * TLB flushes that follow were most of skald's own CPU while starting
     * the shop's eleven processes.
     */
    int vfork_errno = 0;
    pid_t pid = vfork_exec(c, log_fd, beat[1], envp, parent, &vfork_errno);
    if (pid < 0) {
        st = SK_FAIL(SK_EIO, "starting %s: vfork: %s", c->name, strerror(vfork_errno));
        goto out;
    }
    (void)setpgid(pid, pid); /* also done by the child; whichever runs first wins */
    c->pid = pid;
    c->started_ms = sk_time_mono_ms();
    c->restart_at_ms = 0;
    c->beat_fd = beat[0];
    beat[0] = -1;
    c->is_watched = false;
    c->is_hang_killed = false;
    c->last_beat_ms = c->started_ms;
    c->watch_due_ms = c->started_ms + s->watchdog_timeout_ms;
out:
    /* The child has exec'd (or exited): what it was given can go. */
    sk_free(envp);
    close(log_fd);
    for (int i = 0; i < 2; i++) {
        if (beat[i] >= 0) {
            close(beat[i]);
        }
    }
    return st;
}

/* A child that is not running keeps no pipe. */
static void child_close_beat(child *c)
{
    if (c->beat_fd >= 0) {
        close(c->beat_fd);
        c->beat_fd = -1;
    }
    c->is_watched = false;
}

/*
 * Read what every child wrote to its watchdog pipe; a write end closed by all
 * reads as EOF. When skald itself did not run for a while (the whole system
 * frozen: a paused container, a suspended machine), every watch starts over:
 * the children had no chance to write since either.
 */
static void drain_beats(cli_supervisor *s)
{
    char buf[64];
    int64_t now = sk_time_mono_ms();

    if (s->last_drain_ms != 0 && now - s->last_drain_ms > WATCHDOG_FROZEN_MS) {
        for (size_t i = 0; i < s->n_children; i++) {
            child *c = &s->children[i];
            if (c->is_watched) {
                c->last_beat_ms = now;
                c->watch_due_ms = now + s->watchdog_timeout_ms;
            }
        }
    }
    s->last_drain_ms = now;

    for (size_t i = 0; i < s->n_children; i++) {
        child *c = &s->children[i];
        while (c->beat_fd >= 0) {
            ssize_t n = read(c->beat_fd, buf, sizeof(buf));
            if (n > 0) {
                c->is_watched = true;
                c->is_trace_logged = false;
                c->last_beat_ms = now;
                c->watch_due_ms = now + s->watchdog_timeout_ms;
            } else if (n == 0) {
                child_close_beat(c); /* it exited, or closed its end: nothing more to watch */
            } else {
                break; /* EAGAIN: nothing more for now */
            }
        }
    }
}

/* True when a debugger or strace is attached to @p pid (its TracerPid is not 0). */
static bool is_traced(pid_t pid)
{
    char path[64], line[128];
    bool traced = false;

    snprintf(path, sizeof(path), "/proc/%ld/status", (long)pid);
    FILE *f = fopen(path, "re");
    if (f == NULL) {
        return false;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, "TracerPid:", 10) == 0) {
            traced = strtol(line + 10, NULL, 10) != 0;
            break;
        }
    }
    fclose(f);
    return traced;
}

/* SIGKILL every watched child that has been silent too long; its exit then restarts it. */
static void check_watchdog(cli_supervisor *s)
{
    int64_t now = sk_time_mono_ms();

    if (s->is_stopping) {
        return;
    }
    for (size_t i = 0; i < s->n_children; i++) {
        child *c = &s->children[i];
        if (c->pid <= 0 || !c->is_watched || now < c->watch_due_ms) {
            continue;
        }
        if (is_traced(c->pid)) {
            c->watch_due_ms = now + 1000; /* look again in a second */
            if (!c->is_trace_logged) {
                fprintf(stderr,
                        "skald: %s (pid %ld) sent no watchdog heartbeat for %" PRId64
                        " ms, but a debugger or tracer holds it: left alone\n",
                        c->name, (long)c->pid, now - c->last_beat_ms);
                c->is_trace_logged = true;
            }
            continue;
        }
        fprintf(stderr,
                "skald: %s (pid %ld) sent no watchdog heartbeat for %" PRId64
                " ms (stopped or hung): "
                "SIGKILL, then a restart\n",
                c->name, (long)c->pid, now - c->last_beat_ms);
        (void)kill(c->pid, SIGKILL); /* our unreaped child: the PID cannot have been reused */
        c->is_watched = false;       /* one kill; the restart arms the watch again */
        c->is_hang_killed = true;
    }
}

sk_status cli_supervisor_spawn(cli_supervisor *s,
                               const char *name,
                               cli_stop_phase phase,
                               const char *const *argv,
                               const char *log_path)
{
    sk_status st = SK_OK;
    child c;
    size_t argc = 0;

    if (s == NULL || name == NULL || name[0] == '\0' || argv == NULL || argv[0] == NULL ||
        log_path == NULL || (int)phase < 0 || (int)phase >= CLI_PHASE_COUNT) {
        return SK_FAIL(SK_EINVAL, "cli_supervisor_spawn: s, name, argv, argv[0] and log_path "
                                  "must be set and phase valid");
    }
    if (find(s, name) != NULL) {
        return SK_FAIL(SK_EEXIST, "cli_supervisor_spawn: a child named %s exists", name);
    }
    if (s->n_children == s->cap_children) {
        size_t cap = s->cap_children == 0 ? 8 : s->cap_children * 2;
        child *grown = sk_realloc(s->children, cap * sizeof(*grown));
        if (grown == NULL) {
            return SK_FAIL(SK_ENOMEM, "cli_supervisor_spawn: growing the child table");
        }
        s->children = grown;
        s->cap_children = cap;
    }
    memset(&c, 0, sizeof(c));
    c.phase = phase;
    c.beat_fd = -1;
    while (argv[argc] != NULL) {
        argc++;
    }
    c.name = sk_strdup(name);
    c.log_path = sk_strdup(log_path);
    c.argv = sk_calloc(argc + 1, sizeof(*c.argv));
    if (c.name == NULL || c.log_path == NULL || c.argv == NULL) {
        st = SK_FAIL(SK_ENOMEM, "cli_supervisor_spawn: copying %s", name);
        goto out;
    }
    for (size_t i = 0; i < argc; i++) {
        c.argv[i] = sk_strdup(argv[i]);
        if (c.argv[i] == NULL) {
            st = SK_FAIL(SK_ENOMEM, "cli_supervisor_spawn: copying argv of %s", name);
            goto out;
        }
    }
    st = child_start(s, &c);
out:
    if (st != SK_OK) {
        child_fini(&c);
        return st;
    }
    s->children[s->n_children++] = c;
    return SK_OK;
}

/* "exited with status 1" or "killed by signal 9 (Killed)". */
static void describe_exit(int status, char *out, size_t out_len)
{
    if (WIFEXITED(status)) {
        snprintf(out, out_len, "exited with status %d", WEXITSTATUS(status));
    } else if (WIFSIGNALED(status)) {
        snprintf(out, out_len, "killed by signal %d (%s)", WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
    } else {
        snprintf(out, out_len, "stopped (status 0x%x)", (unsigned)status);
    }
}

static void on_exit_status(cli_supervisor *s, pid_t pid, int status)
{
    char how[96];
    child *c = NULL;
    int64_t now = sk_time_mono_ms();

    for (size_t i = 0; i < s->n_children && c == NULL; i++) {
        if (s->children[i].pid == pid) {
            c = &s->children[i];
        }
    }
    if (c == NULL) {
        return; /* not one of ours (cannot happen: we start every child) */
    }
    c->pid = 0;
    child_close_beat(c);
    describe_exit(status, how, sizeof(how));
    int64_t ran_ms = now - c->started_ms;
    if (s->is_stopping) {
        fprintf(stderr, "skald: %s (pid %ld) %s\n", c->name, (long)pid, how);
        return;
    }
    /* A process that hung ran 30 s without doing its work: that is no reason to reset the delay. */
    c->delay_ms = cli_backoff_next(c->delay_ms, c->is_hang_killed ? 0 : ran_ms);
    int64_t delay = c->delay_ms * s->backoff_percent / 100;
    c->restart_at_ms = now + (delay > 0 ? delay : 1);
    fprintf(stderr, "skald: %s (pid %ld) %s after %lld ms; restarting in %lld ms (log: %s)\n",
            c->name, (long)pid, how, (long long)ran_ms, (long long)delay, c->log_path);
}

/* Read every pending signal and reap every exited child. */
static void drain_events(cli_supervisor *s)
{
    struct signalfd_siginfo si;
    int status;
    pid_t pid;

    for (;;) {
        ssize_t n = read(s->sfd, &si, sizeof(si));
        if (n != (ssize_t)sizeof(si)) {
            break; /* EAGAIN: nothing more */
        }
        if (si.ssi_signo == SIGHUP) {
            s->is_reload = true;
            continue;
        }
        if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) {
            if (s->is_stopping) {
                s->is_forced = true;
                fprintf(stderr, "skald: %s again: killing what is left\n",
                        strsignal((int)si.ssi_signo));
            } else {
                s->is_stopping = true;
                fprintf(stderr, "skald: %s: stopping\n", strsignal((int)si.ssi_signo));
            }
        }
    }
    /* SIGCHLD is coalesced, so always reap everything that is ready. */
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        on_exit_status(s, pid, status);
    }
}

static void restart_due(cli_supervisor *s)
{
    int64_t now = sk_time_mono_ms();
    for (size_t i = 0; i < s->n_children; i++) {
        child *c = &s->children[i];
        if (c->pid != 0 || c->restart_at_ms == 0 || c->restart_at_ms > now) {
            continue;
        }
        c->n_restarts++;
        if (child_start(s, c) != SK_OK) {
            /* Try again later with a longer delay rather than give the child up. */
            c->delay_ms = cli_backoff_next(c->delay_ms, 0);
            c->restart_at_ms = now + c->delay_ms * s->backoff_percent / 100 + 1;
            fprintf(stderr, "skald: restarting %s failed: %s\n", c->name, sk_error_message());
            continue;
        }
        fprintf(stderr, "skald: restarted %s (pid %ld, restart #%u)\n", c->name, (long)c->pid,
                c->n_restarts);
    }
}

/* Wait for the signalfd at most @p wait_ms (-1 = no limit). */
static void wait_events(cli_supervisor *s, int64_t wait_ms)
{
    struct pollfd p = { .fd = s->sfd, .events = POLLIN };
    int timeout = wait_ms < 0 ? -1 : (wait_ms > 60000 ? 60000 : (int)wait_ms);
    (void)poll(&p, 1, timeout); /* EINTR or timeout: the caller looks anyway */
}

/*
 * How long to wait before reading the watchdog pipes again, or before a
 * watched child's silence runs out (-1: no pipe open).
 * They are read every WATCHDOG_READ_MS rather than polled: ten services
 * beating every second would otherwise wake skald ten times a second.
 */
static int64_t watchdog_wait_ms(const cli_supervisor *s)
{
    int64_t now = sk_time_mono_ms();
    int64_t wait = -1;

    for (size_t i = 0; i < s->n_children; i++) {
        const child *c = &s->children[i];
        if (c->pid > 0 && c->beat_fd >= 0) {
            int64_t left = WATCHDOG_READ_MS;
            if (c->is_watched && c->watch_due_ms - now < left) { /* its silence runs out first */
                left = c->watch_due_ms > now ? c->watch_due_ms - now : 0;
            }
            wait = wait < 0 || left < wait ? left : wait;
        }
    }
    return wait;
}

void cli_supervisor_poll(cli_supervisor *s, int64_t wait_ms)
{
    if (s == NULL) {
        return;
    }
    drain_events(s);
    drain_beats(s);
    if (!s->is_stopping) {
        check_watchdog(s);
        restart_due(s);
        int64_t now = sk_time_mono_ms();
        /* Wake up for the next pending restart, and to read the watchdog pipes. */
        for (size_t i = 0; i < s->n_children; i++) {
            int64_t at = s->children[i].restart_at_ms;
            if (at != 0 && (wait_ms < 0 || at - now < wait_ms)) {
                wait_ms = at > now ? at - now : 0;
            }
        }
        int64_t watch = watchdog_wait_ms(s);
        if (watch >= 0 && (wait_ms < 0 || watch < wait_ms)) {
            wait_ms = watch;
        }
    }
    if (wait_ms != 0 && !s->is_stopping) {
        wait_events(s, wait_ms);
        drain_events(s);
        drain_beats(s);
        if (!s->is_stopping) {
            check_watchdog(s);
            restart_due(s);
        }
    }
}

bool cli_supervisor_is_stopping(const cli_supervisor *s)
{
    return s != NULL && s->is_stopping;
}

void cli_supervisor_request_stop(cli_supervisor *s)
{
    if (s != NULL) {
        s->is_stopping = true;
    }
}

static size_t running_in_phase(const cli_supervisor *s, int phase)
{
    size_t n = 0;
    for (size_t i = 0; i < s->n_children; i++) {
        if (s->children[i].pid != 0 && (int)s->children[i].phase == phase) {
            n++;
        }
    }
    return n;
}

static void signal_phase(cli_supervisor *s, int phase, int sig)
{
    for (size_t i = 0; i < s->n_children; i++) {
        child *c = &s->children[i];
        if (c->pid > 0 && (int)c->phase == phase) {
            (void)kill(c->pid, sig); /* our unreaped child: the PID cannot have been reused */
        }
    }
}

/* Wait until no child of @p phase runs or the deadline passes (or a forced stop). */
static void wait_phase(cli_supervisor *s, int phase, int64_t deadline, bool stop_on_force)
{
    for (;;) {
        drain_events(s);
        if (running_in_phase(s, phase) == 0 || (stop_on_force && s->is_forced)) {
            return;
        }
        int64_t left = deadline - sk_time_mono_ms();
        if (left <= 0) {
            return;
        }
        wait_events(s, left > 100 ? 100 : left);
    }
}

void cli_supervisor_stop_all(cli_supervisor *s, int64_t deadline_ms)
{
    if (s == NULL) {
        return;
    }
    s->is_stopping = true;
    for (size_t i = 0; i < s->n_children; i++) {
        s->children[i].restart_at_ms = 0;
    }
    int64_t grace = deadline_ms > 0 ? deadline_ms : CLI_STOP_DEADLINE_MS;
    for (int phase = 0; phase < CLI_PHASE_COUNT; phase++) {
        drain_events(s);
        if (running_in_phase(s, phase) == 0) {
            continue;
        }
        if (!s->is_forced) {
            /* nats-server shuts down the same on either, but exits with status 1 on SIGTERM. */
            signal_phase(s, phase, phase == CLI_PHASE_BROKER ? SIGINT : SIGTERM);
            wait_phase(s, phase, sk_time_mono_ms() + grace, true);
        }
        if (running_in_phase(s, phase) > 0) {
            fprintf(stderr, "skald: %s did not stop in time: SIGKILL\n", phase_names[phase]);
            signal_phase(s, phase, SIGKILL);
            wait_phase(s, phase, sk_time_mono_ms() + KILL_REAP_MS, false);
        }
        if (running_in_phase(s, phase) > 0) {
            fprintf(stderr, "skald: %s still running after SIGKILL; giving up on them\n",
                    phase_names[phase]);
        }
    }
}

pid_t cli_supervisor_pid(const cli_supervisor *s, const char *name)
{
    const child *c = s != NULL && name != NULL ? find(s, name) : NULL;
    return c != NULL ? c->pid : 0;
}

unsigned cli_supervisor_restarts(const cli_supervisor *s, const char *name)
{
    const child *c = s != NULL && name != NULL ? find(s, name) : NULL;
    return c != NULL ? c->n_restarts : 0;
}

size_t cli_supervisor_running(const cli_supervisor *s)
{
    size_t n = 0;
    for (size_t i = 0; s != NULL && i < s->n_children; i++) {
        n += s->children[i].pid != 0 ? 1u : 0u;
    }
    return n;
}

void cli_supervisor_set_backoff_scale(cli_supervisor *s, int percent)
{
    if (s != NULL && percent >= 0) {
        s->backoff_percent = percent;
    }
}

void cli_supervisor_set_watchdog_timeout(cli_supervisor *s, int64_t timeout_ms)
{
    if (s != NULL && timeout_ms >= 1 && timeout_ms <= CLI_WATCHDOG_TIMEOUT_MAX_MS) {
        s->watchdog_timeout_ms = timeout_ms;
    }
}

bool cli_supervisor_is_watched(const cli_supervisor *s, const char *name)
{
    const child *c = s != NULL && name != NULL ? find(s, name) : NULL;
    return c != NULL && c->pid > 0 && c->is_watched;
}

void cli_supervisor_destroy(cli_supervisor *s)
{
    if (s == NULL) {
        return;
    }
    if (cli_supervisor_running(s) > 0) {
        cli_supervisor_stop_all(s, 0);
    }
    for (size_t i = 0; i < s->n_children; i++) {
        child_close_beat(&s->children[i]);
        child_fini(&s->children[i]);
    }
    sk_free(s->children);
    /* Consume what is still pending, so unblocking does not run a default action now. */
    drain_events(s);
    close(s->sfd);
    (void)pthread_sigmask(SIG_SETMASK, &s->old_mask, NULL);
    sk_free(s);
}

bool cli_supervisor_take_reload(cli_supervisor *s)
{
    bool is_reload = s->is_reload;
    s->is_reload = false;
    return is_reload;
}

void cli_supervisor_signal_all(cli_supervisor *s, int sig)
{
    for (size_t i = 0; i < s->n_children; i++) {
        if (s->children[i].pid > 0) {
            SK_IGNORE(kill(s->children[i].pid, sig)); /* one that just exited is reaped and restarted */
        }
    }
}
