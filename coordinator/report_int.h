/*
 * report_int.h - helpers shared by report.c (JSON, summary) and
 * report_junit.c (internal to coordinator/).
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

#endif /* SR_REPORT_INT_H */
