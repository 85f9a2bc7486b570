/*
 * report_int.h - helpers shared by report.c (JSON, summary) and
 * report_junit.c, and the JUnit reading history.c uses for per-test
 * durations (internal to coordinator/).
 */
#ifndef SR_REPORT_INT_H
#define SR_REPORT_INT_H

#include <stddef.h>

#include "suite.h"

/* A final that is not a pass. */
int sr_report_is_bad(int final);
/* A copy made valid UTF-8 (and valid XML text when xml); malloc'd. */
char *sr_report_clean(const char *s, size_t n, int xml);
/* mkdir -p of the directory, then an atomic write; logs failures. */
int sr_report_write_out(const char *path, const void *p, size_t n);
/* What became of a file, in one line. */
void sr_report_describe(const struct sr_file *f, int unreadable, char *buf,
                        size_t sz);

/* Called per <testcase>: its classname and name ("" when absent, borrowed
 * for the call only) and time (NAN when absent or not a number). A
 * non-zero return stops the walk. */
typedef int (*sr_junit_case_fn)(const char *classname, const char *name,
                                double time_s, void *arg);
/* Every testcase of an attempt's JUnit report, in document order.
 * SR_EINVAL when the attempt has no usable report (absent, malformed, with
 * a DTD); else 0 or the first non-zero fn returned. */
int sr_report_junit_cases(const struct sr_attempt *a, sr_junit_case_fn fn,
                          void *arg);

#endif /* SR_REPORT_INT_H */
