/* SPDX-License-Identifier: MIT */
/*
 * Corpus replay driver: feeds every regular file of each directory (or each
 * file) named on the command line to LLVMFuzzerTestOneInput, in name order,
 * so that ordinary builds (gcc, or clang with ASan+UBSan but no libFuzzer)
 * run the committed corpora and regression inputs as a ctest. A missing
 * directory counts as empty; an unreadable file is a failure.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

/* Inputs bigger than this are not part of any corpus (libFuzzer's -max_len stays below). */
#define REPLAY_MAX_BYTES (4u * 1024u * 1024u)

static int replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    uint8_t *data = NULL;
    uint8_t *exact = NULL;
    size_t len = 0;
    int rc = 1;

    if (f == NULL) {
        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
        return 1;
    }
    data = sk_malloc(REPLAY_MAX_BYTES + 1);
    if (data == NULL) {
        fprintf(stderr, "replay: %s: out of memory\n", path);
        goto out;
    }
    len = fread(data, 1, REPLAY_MAX_BYTES + 1, f);
    if (ferror(f) || len > REPLAY_MAX_BYTES) {
        fprintf(stderr, "replay: %s: read error or larger than %u bytes\n", path, REPLAY_MAX_BYTES);
        goto out;
    }
    /* Copy into an exact-size buffer so that ASan sees any read past the end. */
    exact = sk_malloc(len > 0 ? len : 1);
    if (exact == NULL) {
        fprintf(stderr, "replay: %s: out of memory\n", path);
        goto out;
    }
    if (len > 0) {
        memcpy(exact, data, len);
    }
    LLVMFuzzerTestOneInput(exact, len);
    rc = 0;
out:
    sk_free(exact);
    sk_free(data);
    fclose(f);
    return rc;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int replay_dir(const char *dir, size_t *n_files)
{
    DIR *d = opendir(dir);
    char **names = NULL;
    size_t n = 0;
    size_t cap = 0;
    int rc = 0;
    struct dirent *e;

    if (d == NULL) {
        if (errno == ENOENT) {
            return 0;
        }
        fprintf(stderr, "replay: %s: %s\n", dir, strerror(errno));
        return 1;
    }
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') {
            continue;
        }
        if (n == cap) {
            size_t ncap = cap == 0 ? 64 : cap * 2;
            char **nn = sk_realloc(names, ncap * sizeof(*names));
            if (nn == NULL) {
                rc = 1;
                goto out;
            }
            names = nn;
            cap = ncap;
        }
        names[n] = sk_strdup(e->d_name);
        if (names[n] == NULL) {
            rc = 1;
            goto out;
        }
        n++;
    }
    if (n > 0) {
        qsort(names, n, sizeof(*names), cmp_names);
    }
    for (size_t i = 0; i < n && rc == 0; i++) {
        char path[4096];
        struct stat sb;
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode)) {
            continue;
        }
        rc = replay_file(path);
        (*n_files)++;
    }
out:
    for (size_t i = 0; i < n; i++) {
        sk_free(names[i]);
    }
    sk_free(names);
    closedir(d);
    return rc;
}

int main(int argc, char **argv)
{
    size_t n_files = 0;
    struct stat sb;

    if (argc < 2) {
        fprintf(stderr, "usage: %s DIR|FILE...\n", argv[0]);
        return 2;
    }
    for (int i = 1; i < argc; i++) {
        int rc;
        if (stat(argv[i], &sb) == 0 && S_ISREG(sb.st_mode)) {
            rc = replay_file(argv[i]);
            n_files++;
        } else {
            rc = replay_dir(argv[i], &n_files);
        }
        if (rc != 0) {
            return 1;
        }
    }
    printf("replayed %zu inputs\n", n_files);
    return 0;
}
