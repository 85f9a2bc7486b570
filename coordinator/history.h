/*
 * history.h - per-file timing history and estimates.
 *
 * The history file (default .shardrun/durations.json in the workspace) is
 *   {"version": 1, "files": {"PATH": {"duration_s": D, "runs": N}, ...}}
 * Only healthy durations are recorded: the first attempt of a file that
 * passed (a hang must never raise its own timeout). D is smoothed
 * (EWMA, alpha 0.5: the newest run weighs half). The file is rewritten
 * atomically (temp file, fsync, rename); entries of files not in this run
 * are kept.
 *
 * Estimates for a suite: history where known; otherwise ntests times the
 * mean per-test time of known files; otherwise the mean of known files;
 * otherwise SR_DEFAULT_ESTIMATE_S.
 *
 * Ownership: sr_history owns its table; not thread safe.
 */
#ifndef SR_HISTORY_H
#define SR_HISTORY_H

#include <stddef.h>

#include "suite.h"

#define SR_DEFAULT_ESTIMATE_S 1.0
#define SR_EWMA_ALPHA         0.5

struct sr_hist_entry {
	char *path;
	double duration_s;
	unsigned runs;
};

struct sr_history {
	struct sr_hist_entry *e; /* sorted by path */
	size_t n;
	size_t cap;
};

void sr_history_init(struct sr_history *h);
void sr_history_free(struct sr_history *h);
/* Load; a missing file is an empty history (0). A malformed file is
 * SR_EINVAL with a logged reason. */
int sr_history_load(struct sr_history *h, const char *path);
/* Write atomically, creating the parent directory. */
int sr_history_save(const struct sr_history *h, const char *path);
/* Lookup; NULL when unknown. */
const struct sr_hist_entry *sr_history_get(const struct sr_history *h,
                                           const char *path);
/* Record one healthy duration (EWMA). */
int sr_history_record(struct sr_history *h, const char *path, double dur);
/* Fill est_s / est_known for every file of the suite. */
void sr_history_estimate(const struct sr_history *h, struct sr_suite *s);
/* Record the healthy durations of a finished run. */
int sr_history_update(struct sr_history *h, const struct sr_suite *s);

#endif /* SR_HISTORY_H */
