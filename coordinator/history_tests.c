/*
 * history_tests.c - per-test durations: each file entry's optional table
 * of test ids and smoothed times, its JSON form, the ids JUnit testcases
 * map to, and the estimates a split file's parts are balanced by.
 *
 * A table is a sorted array, like the file table, but rebuilt whole after
 * each healthy run of its file: the run's JUnit reports name every test
 * the file still has, so the new table is exactly those tests (smoothed
 * with the old times), and renamed or deleted tests do not pile up.
 *
 * A testcase's id is derived from what its classname holds after the module
 * of the file the attempt ran (sr/junit.h), and stored without the path:
 * "TestC::test_y[1]" for "tests/test_x.py::TestC::test_y[1]".
 */
#include <stdlib.h>
#include <string.h>

#include "sr/err.h"
#include "sr/junit.h"
#include "sr/log.h"
#include "sr/util.h"

#include "history_int.h"
#include "report_int.h"

void
sr_hist_tests_free(struct sr_hist_tests *t)
{
	if (t == NULL)
		return;
	for (size_t i = 0; i < t->n; i++)
		free(t->v[i].id);
	free(t->v);
	free(t);
}

static void
free_run(struct sr_hist_test *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i].id);
	free(v);
}

static int
by_id(const void *a, const void *b)
{
	return (strcmp(((const struct sr_hist_test *) a)->id,
	               ((const struct sr_hist_test *) b)->id));
}

/* A table of v[0..n), taken over with its ids (freed on failure): sorted,
 * a repeated id kept once with its times summed. */
static int
table_take(struct sr_hist_test *v, size_t n, struct sr_hist_tests **out)
{
	struct sr_hist_tests *t = malloc(sizeof(*t));
	size_t m = 0;

	if (t == NULL) {
		free_run(v, n);
		return (SR_ENOMEM);
	}
	qsort(v, n, sizeof(*v), by_id);
	for (size_t i = 0; i < n; i++) {
		if (m > 0 && strcmp(v[m - 1].id, v[i].id) == 0) {
			v[m - 1].duration_s += v[i].duration_s;
			free(v[i].id);
		} else {
			v[m++] = v[i];
		}
	}
	t->v = v;
	t->n = m;
	*out = t;
	return (0);
}

static const struct sr_hist_test *
lookup(const struct sr_hist_tests *t, const char *id)
{
	struct sr_hist_test key = {(char *) id, 0};

	if (t == NULL || t->n == 0)
		return (NULL);
	return (bsearch(&key, t->v, t->n, sizeof(*t->v), by_id));
}

const struct sr_hist_test *
sr_history_test_get(const struct sr_history *h, const char *path,
                    const char *id)
{
	return (lookup(sr_history_tests(h, sr_history_get(h, path)), id));
}

int
sr_hist_tests_merged(const struct sr_hist_tests *old,
                     const struct sr_hist_test *t, size_t n,
                     struct sr_hist_tests **out)
{
	struct sr_hist_tests *nt;
	struct sr_hist_test *v;
	int rv;

	for (size_t i = 0; i < n; i++)
		if (t[i].id == NULL || !sr_hist_valid(t[i].duration_s))
			return (SR_EINVAL);
	if (n == 0)
		return (SR_EINVAL);
	if ((v = calloc(n, sizeof(*v))) == NULL)
		return (SR_ENOMEM);
	for (size_t i = 0; i < n; i++) {
		if ((v[i].id = strdup(t[i].id)) == NULL) {
			free_run(v, i);
			return (SR_ENOMEM);
		}
		v[i].duration_s = t[i].duration_s;
	}
	if ((rv = table_take(v, n, &nt)) != 0)
		return (rv);
	for (size_t i = 0; i < nt->n; i++) {
		const struct sr_hist_test *was = lookup(old, nt->v[i].id);

		if (was != NULL)
			nt->v[i].duration_s =
			    SR_EWMA_ALPHA * nt->v[i].duration_s +
			    (1 - SR_EWMA_ALPHA) * was->duration_s;
	}
	*out = nt;
	return (0);
}

int
sr_hist_tests_load(const char *file, const char *key, json_t *o,
                   struct sr_hist_tests **out)
{
	struct sr_hist_test *v;
	const char *id;
	json_t *d;
	size_t n = 0;

	if (o != NULL && !json_is_object(o)) {
		sr_error("%s: entry \"%s\": tests must be an object", file,
		         key);
		return (SR_EINVAL);
	}
	if (o == NULL || json_object_size(o) == 0) {
		*out = NULL;
		return (0);
	}
	if ((v = calloc(json_object_size(o), sizeof(*v))) == NULL)
		return (SR_ENOMEM);
	json_object_foreach(o, id, d)
	{
		if (!json_is_number(d) ||
		    !sr_hist_valid(json_number_value(d))) {
			sr_error("%s: entry \"%s\": test \"%s\" needs a "
			         "non-negative number of seconds",
			         file, key, id);
			free_run(v, n);
			return (SR_EINVAL);
		}
		if ((v[n].id = strdup(id)) == NULL) {
			free_run(v, n);
			return (SR_ENOMEM);
		}
		v[n++].duration_s = json_number_value(d);
	}
	return (table_take(v, n, out));
}

json_t *
sr_hist_tests_json(const struct sr_hist_tests *t)
{
	json_t *o = json_object();

	for (size_t i = 0; o != NULL && i < t->n; i++) {
		if (json_object_set_new(o, t->v[i].id,
		                        json_real(t->v[i].duration_s)) != 0) {
			json_decref(o);
			o = NULL;
		}
	}
	return (o);
}

/* A node id's test id: what follows the path's "::". */
static const char *
test_key(const char *nodeid)
{
	const char *sep = strstr(nodeid, "::");

	return (sep != NULL ? sep + 2 : nodeid);
}

size_t
sr_history_test_est(const struct sr_history *h, const char *path,
                    char *const *ids, size_t n, double *est)
{
	const struct sr_hist_tests *tab =
	    h != NULL ? sr_history_tests(h, sr_history_get(h, path)) : NULL;
	size_t known = 0;
	double sum = 0;

	for (size_t i = 0; i < n; i++) {
		const struct sr_hist_test *t = lookup(tab, test_key(ids[i]));

		est[i] = t != NULL ? t->duration_s : -1;
		if (t != NULL) {
			known++;
			sum += t->duration_s;
		}
	}
	for (size_t i = 0; i < n; i++)
		if (est[i] < 0)
			est[i] = known > 0 ? sum / (double) known : 0;
	return (known);
}

/* The testcases of one run, as history ids and times. */
struct run {
	const char *path;
	struct sr_hist_test *v;
	size_t n;
	size_t cap;
};

static int
on_case(const char *classname, const char *name, double time_s, void *arg)
{
	struct run *r = arg;
	char *id;
	int rv;

	if (!sr_hist_valid(time_s))
		return (0);
	if ((rv = sr_junit_test_id(r->path, classname, name, &id)) != 0)
		return (rv == SR_ENOENT ? 0 : rv);
	if (sr_grow(&r->v, &r->cap, r->n, sizeof(*r->v), 64) != 0) {
		free(id);
		return (SR_ENOMEM);
	}
	r->v[r->n].id = id;
	r->v[r->n++].duration_s = time_s;
	return (0);
}

int
sr_hist_tests_from_junit(struct sr_history *h, const char *path,
                         const struct sr_attempt *const *att, size_t n)
{
	struct run r = {path, NULL, 0, 0};
	int rv = 0;

	for (size_t i = 0; rv == 0 && i < n; i++) {
		size_t before = r.n;

		rv = sr_report_junit_cases(att[i], on_case, &r);
		if (rv == 0 && r.n == before)
			rv = SR_ENOENT; /* named no test of this file */
	}
	if (rv == 0)
		rv = sr_history_record_tests(h, path, r.v, r.n);
	free_run(r.v, r.n);
	/* No usable report is no per-test news, not a failure. */
	return (rv == SR_EINVAL || rv == SR_ENOENT ? 0 : rv);
}
