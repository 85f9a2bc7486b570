/*
 * bundle.h - bundling short files (--bundle S, pytest profile).
 *
 * A pytest session costs a start (configuring plugins, building the
 * fixture manager, writing the report) that a file of a few milliseconds of
 * tests pays many times over. So at the start of dispatch, when the slots
 * are known, files estimated under S seconds are packed, in path order and
 * never across directories (one directory: one pytest configuration, which
 * the fork server keeps), into bundles of at most S estimated seconds - and
 * at most half a slot's fair share, so the end of the run stays balanced -
 * and at most SR_BUNDLE_MAX_FILES files. A bundle is one unit: its files run
 * in one session, and each gets its own result from its share of the JUnit
 * report (agent/bundle.c). Serial, exclusive and split files are never
 * bundled.
 *
 * The price is isolation, so the coordinator buys it back where it
 * matters: a file that fails in a bundle runs again alone before it is
 * judged (passing alone, it is reported as an isolation leak), and when a
 * bundle ends badly (a crash, a timeout, a collection error) each of its
 * files runs alone.
 *
 * Ownership: borrows everything; records the bundles in the plan.
 */
#ifndef SR_BUNDLE_H
#define SR_BUNDLE_H

#include "plan.h"
#include "suite.h"

#define SR_BUNDLE_MAX_FILES 64

/* Bundle what is worth bundling; returns how many bundles were made. */
size_t sr_bundle_short(struct sr_plan *p, const struct sr_suite *s,
                       double max_s, unsigned slots);

#endif /* SR_BUNDLE_H */
