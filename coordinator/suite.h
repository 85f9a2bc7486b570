/*
 * suite.h - the files of one run and what became of them.
 *
 * A suite is filled in three stages by three owners: collect.c adds the
 * files (path, test count, markers), history.c fills the estimates, run.c
 * records attempts and the final result. report.c only reads it.
 *
 * Ownership: the suite owns every string and array below (the paths in
 * its string pool, so a file's path is never freed alone); sr_suite_free
 * releases all of it. Not thread safe: one run, one thread.
 */
#ifndef SR_SUITE_H
#define SR_SUITE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sr/util.h"

/* A file's final result. Exactly one per file once the run is over. */
enum sr_final {
	SR_FINAL_PENDING = 0,
	SR_FINAL_PASSED,
	SR_FINAL_FAILED,
	SR_FINAL_FLAKY,   /* failed, then passed on a rerun */
	SR_FINAL_CRASHED, /* killed by a signal we did not send, restarts used
	                   */
	SR_FINAL_TIMEOUT,
	SR_FINAL_ERROR, /* missing file, usage error, refused, spawn failed */
	SR_FINAL_COUNT
};

/* One attempt of one file, as the agent reported it. */
struct sr_attempt {
	int outcome;    /* Shardrun__Outcome */
	uint32_t tries; /* executions incl. the agent's transient retries */
	double start_s; /* since the run started */
	double duration_s;
	int exit_code; /* -1 when killed */
	int signal;
	char *agent; /* agent name */
	int slot;
	char *tail;  /* output tail (may be NULL) */
	char *junit; /* the attempt's JUnit XML (may be NULL) */
	size_t junit_len;
	char *message;  /* agent's explanation (may be NULL) */
	uint32_t part;  /* which part of a split file (0 when not split) */
	bool bundled;   /* ran in a bundle: its share of one session */
	double parse_s; /* of duration_s: its fork server's parse, first */
};

/* A file longer than a fair share is split into parts (chunks of its test
 * ids); each part ends with a final result of its own and has its own
 * budgets, and the file's final result is the worst of them. Few files are
 * split, so this lives apart from struct sr_file. */
struct sr_parts {
	uint32_t n;
	uint32_t left;      /* parts without a final result */
	int *final;         /* per part, enum sr_final */
	uint32_t *restarts; /* per part: crash requeues used */
	uint32_t *reruns;   /* per part: failure reruns used */
	uint32_t *lost;     /* per part: agents lost while they held it */
};

struct sr_file {
	char *path;             /* relative to the workspace, as collected */
	double est_s;           /* estimated duration */
	struct sr_attempt *att; /* every attempt, in order */
	struct sr_parts *parts; /* NULL unless split (below) */
	uint32_t natt;
	uint32_t ntests;   /* tests found by collection, 0 if unknown */
	int final;         /* enum sr_final */
	uint32_t restarts; /* crash requeues used */
	uint32_t reruns;   /* failure reruns used */
	uint32_t lost;     /* agents lost while they held it (ran it or had it
	                    * queued) */
	bool serial;       /* in the serial group */
	bool exclusive;    /* must run alone on its machine */
	uint8_t config; /* its pytest configuration (collect.h), 0: unknown */
	bool est_known; /* estimate came from history */
	bool leak;      /* failed in a bundle, passed alone */
};
/* A million of them is the planning target (bench/, under 300 MB). */
_Static_assert(sizeof(void *) != 8 || sizeof(struct sr_file) <= 64,
               "struct sr_file outgrew 64 bytes");

struct sr_suite {
	struct sr_file *files;
	size_t n;
	size_t cap;
	struct sr_strpool paths; /* every file's path */
};

void sr_suite_init(struct sr_suite *s);
void sr_suite_free(struct sr_suite *s);
/* Add a file (path copied). Returns its index via *idx. */
int sr_suite_add(struct sr_suite *s, const char *path, size_t *idx);
/* Sort files by path (collection order is then deterministic). */
void sr_suite_sort(struct sr_suite *s);
/* Append an attempt to a file; the strings in a are copied. */
int sr_file_add_attempt(struct sr_file *f, const struct sr_attempt *a);
/* The last attempt, or NULL. */
const struct sr_attempt *sr_file_last(const struct sr_file *f);
/* Parts of a split file, 0 when it is whole. */
static inline uint32_t
sr_file_nparts(const struct sr_file *f)
{
	return (f->parts != NULL ? f->parts->n : 0);
}

/* Make the file a split one with n parts; and whole again. */
int sr_file_split(struct sr_file *f, uint32_t n);
void sr_file_unsplit(struct sr_file *f);
/* The last attempt of one part of a split file, or NULL. */
const struct sr_attempt *sr_file_part_last(const struct sr_file *f,
                                           uint32_t part);
/* When the file's final attempts ran: the earliest start, the latest end,
 * and the sum of their durations (one attempt, unless split). false when
 * nothing ran. */
bool sr_file_span(const struct sr_file *f, double *start, double *end,
                  double *work);
/* Of two finals, the one that says more is wrong (error > crashed >
 * timeout > failed > flaky > passed). */
int sr_final_worst(int a, int b);

const char *sr_final_name(int final); /* "passed", "failed", "flaky", ... */

#endif /* SR_SUITE_H */
