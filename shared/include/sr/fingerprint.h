/*
 * fingerprint.h - what a workspace holds: its commit and file contents.
 *
 * The coordinator sends the commit it runs from and a BLAKE2b-256 hash of
 * every file of the run; an agent refuses a run whose files differ from its
 * own checkout, naming the first differing file, so a stale runner can
 * never report results for code it did not run. Pure functions over the
 * file system; thread safe.
 */
#ifndef SR_FINGERPRINT_H
#define SR_FINGERPRINT_H

#include <stddef.h>
#include <stdint.h>

#define SR_HASH_BYTES 32

/* BLAKE2b-256 of a file's content. SR_ENOENT when missing. */
int sr_hash_file(const char *path, uint8_t out[SR_HASH_BYTES]);
/*
 * The commit checked out in root (40 hex characters), read from .git
 * without running git: HEAD, a loose ref, or packed-refs. SR_ENOENT when
 * root is not a git checkout or HEAD cannot be resolved.
 */
int sr_git_commit(const char *root, char out[41]);

#endif /* SR_FINGERPRINT_H */
