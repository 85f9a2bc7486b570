/*
 * bundle.c - the results of a bundle: several pytest files run in one
 * session, reported file by file.
 *
 * A session that ended as pytest ends a test run (exit 0, 1 or 5) has its
 * JUnit report divided among the files (sr/junit.h): each file's outcome,
 * report and time come from its own testcases, and the session's start-up
 * cost is shared evenly. Any other end - a crash, a timeout, a collection
 * error, a report that cannot be divided - says nothing about any one
 * file: every file gets the session's outcome, marked bundled, and the
 * coordinator runs each of them alone. So does a file the report names no
 * test of: pytest may have stopped before it (-x, --maxfail), or named its
 * tests in a way no file claims; alone it gets its own verdict.
 *
 * Ownership: the Results handed to e->done point into the slot, whole and
 * this module's shares, all freed on return: the callee copies.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slot.h"
#include "sr/junit.h"
#include "sr/log.h"

/* A file's outcome and the exit code it would have had alone. */
static void
judge_share(const struct sr_junit_share *sh, Shardrun__Result *r)
{
	if (sh->tests == 0) {
		r->outcome = SHARDRUN__OUTCOME__ERROR; /* no verdict */
		r->exit_code = -1;
		r->message = "its bundle's report names none of its tests";
	} else if (sh->bad > 0) {
		r->outcome = SHARDRUN__OUTCOME__FAILED;
		r->exit_code = 1;
	} else {
		r->outcome = SHARDRUN__OUTCOME__PASSED;
		r->exit_code = 0;
	}
}

static bool
ended_as_a_run(const Shardrun__Result *whole)
{
	return (whole->outcome == SHARDRUN__OUTCOME__PASSED ||
	        whole->outcome == SHARDRUN__OUTCOME__FAILED ||
	        whole->outcome == SHARDRUN__OUTCOME__NO_TESTS);
}

/* Every file gets the session's end: it cannot be judged in the bundle. */
static void
report_whole(struct sr_slot *s, const struct sr_slot_env *e,
             const Shardrun__Result *whole, const char *why)
{
	char msg[512];

	snprintf(msg, sizeof(msg), "its bundle of %zu files %s%s%s", s->files.n,
	         why, whole->message[0] ? ": " : "", whole->message);
	for (size_t i = 0; i < s->files.n; i++) {
		Shardrun__Result r = *whole;

		r.index = (uint32_t) i;
		r.file = s->files.v[i];
		r.bundled = true;
		r.message = msg;
		if (ended_as_a_run(whole))
			r.outcome = SHARDRUN__OUTCOME__ERROR; /* undivided */
		r.junit_xml.data = NULL;
		r.junit_xml.len = 0;
		e->done(e->arg, s, &r);
	}
}

static void
report_shares(struct sr_slot *s, const struct sr_slot_env *e,
              const Shardrun__Result *whole, const struct sr_junit_share *sh)
{
	double tests = 0, overhead, at;
	char msg[96];

	for (size_t i = 0; i < s->files.n; i++)
		tests += sh[i].time_s;
	overhead = whole->duration_us / 1e6 - tests;
	overhead = overhead > 0 ? overhead / (double) s->files.n : 0;
	at = whole->start_us / 1e6;
	snprintf(msg, sizeof(msg), "ran in a bundle of %zu files", s->files.n);
	for (size_t i = 0; i < s->files.n; i++) {
		Shardrun__Result r = *whole;
		double d = sh[i].time_s + overhead;

		r.index = (uint32_t) i;
		r.file = s->files.v[i];
		r.bundled = true;
		r.message = msg;
		judge_share(&sh[i], &r);
		r.junit_xml.data = (uint8_t *) sh[i].xml;
		r.junit_xml.len = sh[i].len;
		r.start_us = (uint64_t) (at * 1e6);
		r.duration_us = (uint64_t) (d * 1e6);
		at += d;
		e->done(e->arg, s, &r);
	}
}

/* A failed session must show the failure in some file's share. */
static bool
shares_agree(const Shardrun__Result *whole, const struct sr_junit_share *sh,
             size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (sh[i].bad > 0)
			return (true);
	return (whole->outcome != SHARDRUN__OUTCOME__FAILED);
}

void
sr_bundle_report(struct sr_slot *s, const struct sr_slot_env *e,
                 const Shardrun__Result *whole)
{
	struct sr_junit_share *sh;

	if (!ended_as_a_run(whole)) {
		report_whole(s, e, whole, "did not end as a test run");
		return;
	}
	if ((sh = calloc(s->files.n, sizeof(*sh))) == NULL ||
	    sr_junit_divide((const char *) whole->junit_xml.data,
	                    whole->junit_xml.len, s->files.v, s->files.n,
	                    sh) != 0 ||
	    !shares_agree(whole, sh, s->files.n)) {
		sr_info("slot %u: a bundle's JUnit report cannot be divided "
		        "among its files; they run alone",
		        s->index);
		report_whole(s, e, whole,
		             "left a report that cannot be divided among them");
	} else {
		report_shares(s, e, whole, sh);
	}
	sr_junit_shares_free(sh, s->files.n);
	free(sh);
}
