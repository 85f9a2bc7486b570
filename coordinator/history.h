/*
 * history.h - per-file and per-test timing history, and estimates.
 *
 * The history file (default .shardrun/durations.json in the workspace) is
 *   {"version": 1, "files": {"PATH": {"duration_s": D, "runs": N,
 *                                     "tests": {"TESTID": T, ...}}, ...}}
 * "tests" is optional (files recorded before it existed, files whose
 * reports named no tests): TESTID is the pytest node id without its
 * leading "PATH::" (e.g. "TestC::test_y[1]"), T its seconds as JUnit
 * reported them. Older readers ignore "tests", so the version stays 1.
 *
 * Only healthy durations are recorded: the first attempt of a file that
 * passed (a hang must never raise its own timeout); a split file counts
 * when the first attempt of every part passed, its duration their sum. D
 * and each T are smoothed (EWMA, alpha 0.5: the newest run weighs half).
 * The per-test times of such a run come from its JUnit reports; when every
 * counted attempt left a readable report naming tests, they replace the
 * file's table (smoothed with the old times; tests no longer reported are
 * dropped), else the table is kept. The file is rewritten atomically
 * (temp file, fsync, rename); entries of files not in this run are kept.
 *
 * Estimates for a suite: history where known; otherwise ntests times the
 * mean per-test time of known files; otherwise the mean of known files;
 * otherwise SR_DEFAULT_ESTIMATE_S. Estimates for the tests of a file being
 * split: the test's time where known; otherwise the mean known time of the
 * file's tests; nothing when none is known (the split goes by count).
 *
 * Memory: an entry is as small as before per-test times (planning holds
 * one per known file): a table hangs off the history, in a side array the
 * entry indexes with a 32-bit slot that fits its padding.
 *
 * Ownership: sr_history owns its entries (their paths in its string
 * pool) and every per-test table; the coordinator borrows it
 * (sr_coord_cfg.history) to split long files. Not thread safe.
 */
#ifndef SR_HISTORY_H
#define SR_HISTORY_H

#include <stddef.h>
#include <stdint.h>

#include "suite.h"

#define SR_DEFAULT_ESTIMATE_S 1.0
#define SR_EWMA_ALPHA         0.5

/* One test's smoothed duration; id as in the file's "tests" object. */
struct sr_hist_test {
	char *id;
	double duration_s;
};

/* A file's per-test durations, sorted by id. */
struct sr_hist_tests {
	struct sr_hist_test *v;
	size_t n;
};

struct sr_hist_entry {
	char *path;
	double duration_s;
	unsigned runs;
	uint32_t tests; /* per-test times: h->tests[tests - 1]; 0: none */
};

struct sr_history {
	struct sr_hist_entry *e; /* sorted by path */
	size_t n;
	size_t cap;
	/* Per-test tables of the entries that have one; a dropped table
	 * leaves a NULL slot (not reused; gone at the next load). */
	struct sr_hist_tests **tests;
	size_t ntests;
	size_t tests_cap;
	struct sr_strpool paths; /* the entries' paths */
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
/* Record the per-test times of one healthy run of a recorded file (else
 * SR_ENOENT): t[] in any order, a repeated id counting once with its
 * times summed; ids copied. Tests known before are smoothed (EWMA), tests
 * not in t[] dropped. n == 0 leaves the table as it was. */
int sr_history_record_tests(struct sr_history *h, const char *path,
                            const struct sr_hist_test *t, size_t n);
/* An entry's per-test times; NULL when it has none (or e is NULL). */
const struct sr_hist_tests *sr_history_tests(const struct sr_history *h,
                                             const struct sr_hist_entry *e);
/* One test of a file; NULL when unknown. */
const struct sr_hist_test *sr_history_test_get(const struct sr_history *h,
                                               const char *path,
                                               const char *id);
/* Fill est[i] for the n pytest node ids of one file ("PATH::TESTID"): the
 * known time, else the mean known time of these tests. Returns how many
 * were known; 0 leaves est[] all 0. h may be NULL. */
size_t sr_history_test_est(const struct sr_history *h, const char *path,
                           char *const *ids, size_t n, double *est);
/* Fill est_s / est_known for every file of the suite. */
void sr_history_estimate(const struct sr_history *h, struct sr_suite *s);
/* Record the healthy durations (files and tests) of a finished run. */
int sr_history_update(struct sr_history *h, const struct sr_suite *s);

#endif /* SR_HISTORY_H */
