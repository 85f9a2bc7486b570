/*
 * split.h - splitting files longer than a fair share into parts.
 *
 * With one huge file, no schedule of whole files can beat that file's
 * length. So at the start of dispatch, when the slots are known, every file
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
 * Ownership: borrows everything; records the parts in the plan and the
 * suite. Blocks while pytest collects (bounded by budget_s in total).
 */
#ifndef SR_SPLIT_H
#define SR_SPLIT_H

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

/* Split what is worth splitting; returns how many files were split. */
size_t sr_split_long(struct sr_plan *p, struct sr_suite *s,
                     const struct sr_split_cfg *cfg);
/* The plan for one file of n ids and the given weight: how many parts
 * (0: not worth it), for a fair share `share`. Exposed for tests. */
uint32_t sr_split_parts(double weight, size_t n, double share);
/* LPT of n tests with estimates est[] into k parts (1 <= k <= n): part[i]
 * receives test i's part, load[p] the sum of part p. Every part gets at
 * least one test. Exposed for tests. */
int sr_split_balance(const double *est, size_t n, uint32_t k, uint32_t *part,
                     double *load);

#endif /* SR_SPLIT_H */
