/*
 * split.h - splitting files longer than a fair share into parts.
 *
 * With one huge file, no schedule of whole files can beat that file's
 * length. So once dispatch starts, when the slots are known, every file
 * whose estimate exceeds the fair share (total estimate / slots) - and at
 * least 2 s - is split into parts of its test ids, each part a unit of its
 * own. The ids come from pytest itself (--collect-only on just that file),
 * so a renamed or new test is never lost. There are enough parts for each
 * to be about half a fair share. They are balanced by the tests' durations
 * in the history (cfg->hist, the one the suite's estimates came from; a
 * test without one counts as the mean of the file's known tests), each part's
 * ids in pytest's order; a file none of whose tests has a known time is cut
 * into contiguous runs of near-equal count (module and class fixtures stay
 * together). A part weighs its tests' share of the file's estimate.
 *
 * pytest collects while the run goes on: the files to split (at most 16)
 * stay queued but are not taken (sr_unit.splitting) until their parts
 * replace them, or, where pytest fails or the budget is spent, they go
 * whole. One pytest at a time, the longest file first. Meanwhile slots
 * take only what ends within the budget (sr_split_allows).
 *
 * Ownership: the coordinator owns the splitter; it borrows the plan, the
 * suite and cfg's strings, and records the parts in the plan and the
 * suite. Its pytest is a child of the calling process, waited for by pid.
 * One thread.
 */
#ifndef SR_SPLIT_H
#define SR_SPLIT_H

#include <limits.h>

#include "collect_exact.h"
#include "plan.h"
#include "suite.h"

#define SR_MIN_PART_S 1.0

struct sr_split_cfg {
	const char *root; /* workspace */
	const char *python;
	unsigned slots;
	double budget_s;               /* time allowed for asking pytest */
	const struct sr_history *hist; /* per-test times; may be NULL */
};

struct sr_splitter {
	struct sr_split_cfg cfg;
	double share;   /* the fair share when it began */
	double end;     /* past it, the candidates left go whole */
	uint32_t *cand; /* unit ids, the longest first */
	size_t n;
	size_t next; /* the candidate being collected, or the next one */
	struct sr_collect_opts co;
	struct sr_collect_job job;
	bool ready;          /* co initialised */
	bool running;        /* job is a pytest that runs */
	char real[PATH_MAX]; /* the workspace's real path */
};

/* Pick what is worth splitting and start asking pytest about it. Whatever
 * it returns, sr_split_stop ends the splitter. */
int sr_split_begin(struct sr_splitter *sp, struct sr_plan *p,
                   const struct sr_suite *s, const struct sr_split_cfg *cfg);
/* Go on without blocking: split a file whose ids came, start the next
 * collection. False once nothing is left to split. */
bool sr_split_poll(struct sr_splitter *sp, struct sr_plan *p,
                   struct sr_suite *s);
/* Whether a slot may take u now: anything while no file waits for its
 * split; meanwhile only a unit due to end before the budget does, so that
 * a file which goes whole after all (pytest failed, or took too long)
 * finds a slot free by then, as early as it would have had the run waited
 * for pytest. */
bool sr_split_allows(const struct sr_splitter *sp, const struct sr_unit *u);
/* Stop (a pytest still collecting is killed) and let every candidate not
 * split yet go whole (with p NULL, the plan is not touched: when it is
 * freed next); frees what the splitter holds. */
void sr_split_stop(struct sr_splitter *sp, struct sr_plan *p);
/* The plan for one file of n ids and the given weight: how many parts
 * (0: not worth it), for a fair share `share`. Exposed for tests. */
uint32_t sr_split_parts(double weight, size_t n, double share);
/* LPT of n tests with estimates est[] into k parts (1 <= k <= n): part[i]
 * receives test i's part, load[p] the sum of part p. Every part gets at
 * least one test. Exposed for tests. */
int sr_split_balance(const double *est, size_t n, uint32_t k, uint32_t *part,
                     double *load);

#endif /* SR_SPLIT_H */
