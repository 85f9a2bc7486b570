/*
 * report.h - what people see after a run: the summary, the results JSON,
 * the merged JUnit XML.
 *
 * Results JSON (keys other tools rely on; more may be added):
 *   {"run_id": HEX, "makespan_s": F, "lower_bound_s": F, "slots": N,
 *    "counts": {"passed": N, "failed": N, "flaky": N, "crashed": N,
 *               "timeout": N, "error": N},
 *    "files": [{"file": PATH, "outcome": NAME, "attempts": N,
 *               "duration_s": F, "start_s": F, "end_s": F, "agent": NAME,
 *               "slot": N, "exit_code": N|null, "signal": NAME|null,
 *               "estimate_s": F, "serial": B, "exclusive": B,
 *               "attempt_outcomes": [NAME...], "message": S|null,
 *               "tries": N}]}
 * tries counts the final attempt's executions, including the agent's
 * retries of transient errors.
 * start_s/end_s/duration_s describe the final attempt.
 *
 * Merged JUnit: one <testsuites> holding every file's <testsuite> elements
 * from its final attempt, with properties shardrun.file, shardrun.outcome,
 * shardrun.attempts; a file without a usable report (crash, timeout,
 * missing) gets a synthesized testsuite with one testcase carrying an
 * <error> and its output tail; a flaky file's earlier failures appear as
 * <flakyFailure> elements (the Surefire convention CI reporters read).
 *
 * Ownership: everything is borrowed; the functions write files or a FILE*.
 */
#ifndef SR_REPORT_H
#define SR_REPORT_H

#include <stdint.h>
#include <stdio.h>

#include "sr/profile.h"
#include "suite.h"

struct sr_run_info {
	char run_id[33]; /* hex */
	double makespan_s;
	double lower_bound_s;
	unsigned slots;
	int interrupted;      /* Ctrl-C: files without a result are listed */
	unsigned backups;     /* speculative backup attempts started */
	unsigned backup_wins; /* ... that answered before the original */
	uint64_t messages_in; /* messages the coordinator received, and sent */
	uint64_t messages_out;
};

/* counts[SR_FINAL_*] for the suite. */
void sr_report_counts(const struct sr_suite *s, unsigned *counts);
int sr_report_json(const struct sr_suite *s, const struct sr_run_info *ri,
                   const char *path);
int sr_report_junit(const struct sr_suite *s, const struct sr_run_info *ri,
                    const char *path);
/* The human summary: counts, failures with their tails and a reproduce
 * command, the slowest files, makespan against the lower bound. color:
 * use ANSI colours. */
void sr_report_summary(FILE *out, const struct sr_suite *s,
                       const struct sr_run_info *ri,
                       const struct sr_profile *prof, int color);

#endif /* SR_REPORT_H */
