/* replay.c — feeds files to a fuzz target without libFuzzer.
 *
 * As a program (built with one tests/fuzz/fuzz_*.c by tools/fuzz.sh
 * replay): `replay_TARGET PATH...` runs LLVMFuzzerTestOneInput on each file,
 * or on every file of each directory, and prints how many it ran. With
 * CR_REPLAY_NO_MAIN defined it only provides cr_fuzz_replay_path(), which
 * tests/unit/test_fuzz_replay.c uses to replay every committed corpus and
 * crash input inside `zig build test`. Test code: plain malloc.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef int (*cr_fuzz_fn)(const uint8_t *data, size_t size);

static int replay_cmp(const void *a, const void *b)
{ return strcmp(*(char *const *)a, *(char *const *)b); }

static int replay_file(cr_fuzz_fn fn, const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) { fprintf(stderr, "replay: cannot open %s\n", path); return -1; }
    size_t cap = 4096, n = 0;
    uint8_t *buf = malloc(cap);
    size_t r;
    while (buf && (r = fread(buf + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) { uint8_t *g = realloc(buf, cap *= 2); if (!g) { free(buf); buf = NULL; } else buf = g; }
    }
    fclose(f);
    if (!buf) return -1;
    /* an exact-size copy so ASan sees reads past the input's end */
    uint8_t *exact = malloc(n ? n : 1);
    if (!exact) { free(buf); return -1; }
    memcpy(exact, buf, n);
    free(buf);
    fn(exact, n);
    free(exact);
    return 0;
}

/* Replay `path` (a file, or every regular file of a directory in name
 * order). Adds the number of inputs run to *n_run; returns -1 if something
 * could not be read. A crashing input aborts the process (that is the
 * failure report, with the sanitiser's trace when built with one). */
static int cr_fuzz_replay_path(cr_fuzz_fn fn, const char *path, int *n_run)
{
    struct stat st;
    if (stat(path, &st)) { fprintf(stderr, "replay: %s does not exist\n", path); return -1; }
    if (!S_ISDIR(st.st_mode)) {
        if (replay_file(fn, path)) return -1;
        (*n_run)++;
        return 0;
    }
    DIR *d = opendir(path);
    if (!d) return -1;
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        if (n == cap) {
            char **g = realloc(names, (cap = cap ? cap * 2 : 64) * sizeof *names);
            if (!g) { rc = -1; break; }
            names = g;
        }
        size_t len = strlen(path) + strlen(e->d_name) + 2;
        if (!(names[n] = malloc(len))) { rc = -1; break; }
        snprintf(names[n++], len, "%s/%s", path, e->d_name);
    }
    closedir(d);
    if (n) qsort(names, n, sizeof *names, replay_cmp);
    for (size_t i = 0; i < n; i++) {
        if (!stat(names[i], &st) && S_ISREG(st.st_mode)) {
            if (replay_file(fn, names[i])) rc = -1;
            else (*n_run)++;
        }
        free(names[i]);
    }
    free(names);
    return rc;
}

#ifndef CR_REPLAY_NO_MAIN
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int main(int argc, char **argv)
{
    int n_run = 0, rc = 0;
    for (int i = 1; i < argc; i++)
        if (cr_fuzz_replay_path(LLVMFuzzerTestOneInput, argv[i], &n_run)) rc = 1;
    printf("replayed %d inputs\n", n_run);
    return rc;
}
#endif
