/* io_support.h — helpers for the io area's tests: a scratch directory,
 * whole-file read/write, recursive removal. Test code only (plain malloc). */
#ifndef CR_IO_SUPPORT_H
#define CR_IO_SUPPORT_H

#include <stddef.h>
#include <stdbool.h>

/* a new mkdtemp() directory under $TMPDIR or /tmp (malloc'd path) */
char *io_tmpdir(const char *tag);
/* path joined: dir/name (malloc'd) */
char *io_join(const char *dir, const char *name);
bool io_write_file(const char *path, const void *data, size_t n);
bool io_write_text(const char *path, const char *text);
/* whole file, NUL-terminated (malloc'd); NULL if unreadable */
char *io_read_file(const char *path, size_t *len);
bool io_exists(const char *path);
/* dir/name in one of 8 rotating static buffers: for building paths inline
 * in a test's calls (a 9th call reuses the first buffer) */
const char *io_scratch(const char *dir, const char *name);
/* entries of dir whose name contains `part`; -1 if dir cannot be read */
int io_count_entries(const char *dir, const char *part);
/* rm -rf */
void io_rmtree(const char *path);

#endif
