/*
 * path.h - validation of file paths that cross a trust boundary.
 *
 * A path from the wire (or a command line) names a file relative to a
 * workspace. It is accepted only if it is relative, already normalised
 * (no "", ".", ".." components, no "//", no trailing "/"), free of control
 * characters, shorter than PATH_MAX, and - after resolving symbolic links -
 * still inside the workspace. Pure functions; thread safe.
 */
#ifndef SR_PATH_H
#define SR_PATH_H

#include <stddef.h>

/* Syntactic check only. 0 or SR_EPATH. */
int sr_path_check(const char *rel);
/* Normalise a user-given relative path: drop "./" prefixes and "." parts,
 * collapse "//", drop a trailing "/". Refuses ".." (SR_EPATH). */
int sr_path_normalize(const char *in, char *out, size_t outsz);
/* Check rel syntactically, then resolve root/rel with realpath(3) and check
 * the result is root itself or below it. root must be a realpath already.
 * SR_ENOENT when the file does not exist, SR_EPATH when it escapes. On
 * success the resolved absolute path is written to out. */
int sr_path_resolve(const char *root, const char *rel, char *out, size_t outsz);

#endif /* SR_PATH_H */
