/*
 * split.h - splitting files longer than a fair share into parts.
 *
 * With one huge file, no schedule of whole files can beat that file's
 * length. So at the start of dispatch, when the slots are known, every file
 * whose estimate exceeds the fair share (total estimate / slots) - and at
 * least 2 s - is split into parts of its test ids, each part a unit of its
 * own. The ids come from pytest itself (--collect-only on just that file),
 * so a renamed or new test is never lost; parts are contiguous runs of ids
 * in pytest's order (module and class fixtures stay together), sized to
 * about half a fair share.
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
	double budget_s; /* time allowed for asking pytest */
};

/* Split what is worth splitting; returns how many files were split. */
size_t sr_split_long(struct sr_plan *p, struct sr_suite *s,
                     const struct sr_split_cfg *cfg);
/* The plan for one file of n ids and the given weight: how many parts
 * (0: not worth it), for a fair share `share`. Exposed for tests. */
uint32_t sr_split_parts(double weight, size_t n, double share);

#endif /* SR_SPLIT_H */
