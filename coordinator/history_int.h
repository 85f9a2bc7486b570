/*
 * history_int.h - what history.c (the file table, its JSON, estimates)
 * and history_tests.c (each file's per-test table) share; internal to
 * coordinator/.
 *
 * Ownership: the history owns every per-test table (history.c attaches,
 * replaces and frees them); history_tests.c makes them.
 */
#ifndef SR_HISTORY_INT_H
#define SR_HISTORY_INT_H

#include <math.h>
#include <stdbool.h>

#include <jansson.h>

#include "history.h"

/* A duration worth keeping: finite and not negative. */
static inline bool
sr_hist_valid(double d)
{
	return (isfinite(d) && d >= 0);
}

/* Free a table and its ids; NULL is fine. */
void sr_hist_tests_free(struct sr_hist_tests *t);
/* A new table of a run's times t[] (n > 0; ids copied), smoothed with
 * those in old (may be NULL). SR_EINVAL for a NULL id or a bad time. */
int sr_hist_tests_merged(const struct sr_hist_tests *old,
                         const struct sr_hist_test *t, size_t n,
                         struct sr_hist_tests **out);
/* The "tests" object o of entry key in file (NULL: none); *out is NULL
 * for an empty object. SR_EINVAL, with the reason logged, when o is not an
 * object of non-negative numbers. */
int sr_hist_tests_load(const char *file, const char *key, json_t *o,
                       struct sr_hist_tests **out);
/* {"TESTID": seconds, ...}; NULL when out of memory. */
json_t *sr_hist_tests_json(const struct sr_hist_tests *t);
/* Record the per-test times in the JUnit reports of one healthy run of
 * the recorded file at path: att[] its counted attempts (one per part).
 * Nothing changes when one of them left no readable report naming a test
 * of the file (a partial view would drop the tests it missed). */
int sr_hist_tests_from_junit(struct sr_history *h, const char *path,
                             const struct sr_attempt *const *att, size_t n);

#endif /* SR_HISTORY_INT_H */
