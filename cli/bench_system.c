/* SPDX-License-Identifier: MIT */
/*
 * `skald bench`: what the system itself costs while the bench measures.
 * The processes are the children of the `skald up` that owns the data dir
 * (its pid file), read from /proc: CPU from /proc/PID/stat (utime + stime),
 * memory from /proc/PID/smaps_rollup (RSS, and PSS, which shares library
 * pages out among the processes that map them). Only for a system on this
 * machine; otherwise the bench reports no system figures.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "cli.h"

/* Files read here are small; a larger one is cut (smaps_rollup is < 1 KiB). */
#define PROC_TEXT_MAX 4096

/* Read a /proc file into @p buf (NUL-terminated); bytes read, or -1. */
static ssize_t read_text(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return -1;
    }
    size_t n = fread(buf, 1, cap - 1, f);
    fclose(f);
    buf[n] = '\0';
    return (ssize_t)n;
}

bool cli_proc_stat_ticks(const char *text, uint64_t *ticks)
{
    /* "pid (comm) state ppid ..." : fields after the last ')' start at field 3. */
    const char *p = text != NULL ? strrchr(text, ')') : NULL;
    unsigned long long utime = 0, stime = 0;

    if (p == NULL || ticks == NULL) {
        return false;
    }
    /* state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt utime stime */
    if (sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime) !=
        2) {
        return false;
    }
    *ticks = (uint64_t)utime + (uint64_t)stime;
    return true;
}

bool cli_smaps_kb(const char *text, const char *field, uint64_t *kb)
{
    size_t len = field != NULL ? strlen(field) : 0;
    unsigned long long v = 0;

    if (text == NULL || len == 0 || kb == NULL) {
        return false;
    }
    for (const char *line = text; line != NULL && *line != '\0';) {
        if (strncmp(line, field, len) == 0 && line[len] == ':' &&
            sscanf(line + len + 1, " %llu kB", &v) == 1) {
            *kb = (uint64_t)v;
            return true;
        }
        line = strchr(line, '\n');
        line = line != NULL ? line + 1 : NULL;
    }
    return false;
}

/* The instance name from the command line (--instance NAME), else the command name. */
static void proc_name(int pid, char *out, size_t cap, bool *is_broker)
{
    char path[64], buf[PROC_TEXT_MAX];
    ssize_t n;

    *is_broker = false;
    snprintf(out, cap, "pid %d", pid);
    snprintf(path, sizeof(path), "/proc/%d/cmdline", pid);
    n = read_text(path, buf, sizeof(buf));
    for (ssize_t i = 0; n > 0 && i < n;) {
        const char *arg = buf + i;
        size_t len = strlen(arg);
        if (strcmp(arg, "--instance") == 0 && i + (ssize_t)len + 1 < n) {
            snprintf(out, cap, "%.*s", (int)(cap - 1), arg + len + 1);
            return;
        }
        i += (ssize_t)len + 1;
    }
    snprintf(path, sizeof(path), "/proc/%d/comm", pid);
    if (read_text(path, buf, sizeof(buf)) > 0) {
        buf[strcspn(buf, "\n")] = '\0';
        snprintf(out, cap, "%.*s", (int)(cap - 1), buf);
        *is_broker = strcmp(buf, "nats-server") == 0;
    }
}

bool cli_sys_open(cli_sys *s, const char *data_dir)
{
    char path[1024], buf[PROC_TEXT_MAX];

    memset(s, 0, sizeof(*s));
    if (data_dir == NULL) {
        return false;
    }
    snprintf(path, sizeof(path), "%s/run/skald.pid", data_dir);
    int root = read_text(path, buf, sizeof(buf)) > 0 ? atoi(buf) : 0;
    snprintf(path, sizeof(path), "/proc/%d/task/%d/children", root, root);
    if (root <= 0 || read_text(path, buf, sizeof(buf)) <= 0) {
        return false;
    }
    /* The children of skald up's main thread: it starts them all. */
    char *save = NULL;
    for (char *tok = strtok_r(buf, " \n", &save); tok != NULL && s->n < CLI_SYS_MAX_PROCS;
         tok = strtok_r(NULL, " \n", &save)) {
        cli_sys_proc *p = &s->procs[s->n];
        p->pid = atoi(tok);
        if (p->pid > 0) {
            proc_name(p->pid, p->name, sizeof(p->name), &p->is_broker);
            s->n++;
        }
    }
    s->root = s->n > 0 ? root : 0;
    return s->root != 0;
}

uint64_t cli_self_cpu_us(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) {
        return 0;
    }
    return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000 +
           (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

bool cli_proc_cpu_us(int pid, uint64_t *us)
{
    char path[64], buf[PROC_TEXT_MAX];
    long hz = sysconf(_SC_CLK_TCK);
    uint64_t ticks = 0;

    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    if (pid <= 0 || hz <= 0 || read_text(path, buf, sizeof(buf)) <= 0 ||
        !cli_proc_stat_ticks(buf, &ticks)) {
        return false;
    }
    *us = ticks * 1000000 / (uint64_t)hz;
    return true;
}

/* CPU time into *cpu_us, and memory peaks; marks a process that is gone. */
static void proc_sample(cli_sys_proc *p, uint64_t *cpu_us, uint64_t *rss, uint64_t *pss)
{
    char path[64], buf[PROC_TEXT_MAX];

    *rss = 0;
    *pss = 0;
    if (!cli_proc_cpu_us(p->pid, cpu_us)) {
        p->is_gone = true;
        return;
    }
    snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", p->pid);
    if (read_text(path, buf, sizeof(buf)) > 0 && cli_smaps_kb(buf, "Rss", rss) &&
        cli_smaps_kb(buf, "Pss", pss)) {
        p->peak_rss_kb = *rss > p->peak_rss_kb ? *rss : p->peak_rss_kb;
        p->peak_pss_kb = *pss > p->peak_pss_kb ? *pss : p->peak_pss_kb;
    }
}

/* Sample every process; the first sample of a window sets the CPU baseline. */
static void sample_all(cli_sys *s, bool is_first)
{
    uint64_t sum_rss = 0, sum_pss = 0;

    for (size_t i = 0; i < s->n; i++) {
        cli_sys_proc *p = &s->procs[i];
        uint64_t cpu_us = 0, rss = 0, pss = 0;
        if (p->is_gone) {
            continue;
        }
        proc_sample(p, &cpu_us, &rss, &pss);
        if (p->is_gone) {
            continue;
        }
        if (is_first) {
            p->cpu0_us = cpu_us;
        }
        p->cpu1_us = cpu_us;
        if (!p->is_broker) {
            sum_rss += rss;
            sum_pss += pss;
        }
    }
    s->peak_services_rss_kb = sum_rss > s->peak_services_rss_kb ? sum_rss : s->peak_services_rss_kb;
    s->peak_services_pss_kb = sum_pss > s->peak_services_pss_kb ? sum_pss : s->peak_services_pss_kb;
}

void cli_sys_start(cli_sys *s)
{
    if (s->root == 0) {
        return;
    }
    /* Each window (each --find-max step) has peaks of its own. */
    for (size_t i = 0; i < s->n; i++) {
        s->procs[i].peak_rss_kb = 0;
        s->procs[i].peak_pss_kb = 0;
    }
    s->peak_services_rss_kb = 0;
    s->peak_services_pss_kb = 0;
    s->t0_us = sk_time_mono_ns() / 1000;
    s->client0_us = cli_self_cpu_us();
    sample_all(s, true);
    s->t1_us = s->t0_us;
    s->client1_us = s->client0_us;
}

void cli_sys_sample(cli_sys *s)
{
    if (s->root == 0) {
        return;
    }
    sample_all(s, false);
    s->t1_us = sk_time_mono_ns() / 1000;
    s->client1_us = cli_self_cpu_us();
}

void cli_sys_report_make(const cli_sys *s, double n_orders, cli_sys_report *out)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    double services_ms = 0, broker_ms = 0;

    memset(out, 0, sizeof(*out));
    if (s->root == 0 || s->t1_us <= s->t0_us) {
        return;
    }
    out->is_available = true;
    out->root = s->root;
    out->n_procs = s->n;
    for (size_t i = 0; i < s->n; i++) {
        const cli_sys_proc *p = &s->procs[i];
        double ms = (double)(p->cpu1_us - p->cpu0_us) / 1000.0;
        if (p->is_broker) {
            broker_ms += ms;
            out->broker_rss_kb = p->peak_rss_kb;
            continue;
        }
        services_ms += ms;
        if (p->peak_rss_kb > out->largest_rss_kb) {
            out->largest_rss_kb = p->peak_rss_kb;
            out->largest_pss_kb = p->peak_pss_kb;
            snprintf(out->largest, sizeof(out->largest), "%s", p->name);
        }
    }
    out->services_rss_kb = s->peak_services_rss_kb;
    out->services_pss_kb = s->peak_services_pss_kb;
    double window_ms = (double)(s->t1_us - s->t0_us) / 1000.0;
    out->cpu_share = (services_ms + broker_ms) / (window_ms * (double)(cores > 0 ? cores : 1));
    if (n_orders > 0) {
        out->services_cpu_ms_per_order = services_ms / n_orders;
        out->broker_cpu_ms_per_order = broker_ms / n_orders;
        out->cpu_ms_per_order = (services_ms + broker_ms) / n_orders;
        out->client_cpu_ms_per_order = (double)(s->client1_us - s->client0_us) / 1000.0 / n_orders;
    }
}
