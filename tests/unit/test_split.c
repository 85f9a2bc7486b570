/*
 * test_split.c - splitting long files: how many parts, parts balanced by
 * the tests' durations (LPT), and whole splits of a planned suite, with a
 * stand-in for pytest --collect-only that lists a fixed set of test ids.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sr/err.h"
#include "sr/util.h"

#include "history.h"
#include "plan.h"
#include "split.h"

static void
test_parts(void **state)
{
	(void) state;
	/* Not longer than the share, too short, or a single test. */
	assert_int_equal(sr_split_parts(10.0, 100, 10.0), 0);
	assert_int_equal(sr_split_parts(1.5, 100, 0.5), 0);
	assert_int_equal(sr_split_parts(40.0, 1, 10.0), 0);
	/* Parts of about half a share, never more than the tests. */
	assert_int_equal(sr_split_parts(40.0, 100, 10.0), 8);
	assert_int_equal(sr_split_parts(40.0, 3, 10.0), 3);
}

/* The spread of loads and whether every part got a test. */
static double
balance(const double *est, size_t n, uint32_t k, uint32_t *part, double *load)
{
	double lo = INFINITY, hi = 0, sum = 0;
	size_t *count = calloc(k, sizeof(*count));

	assert_non_null(count);
	assert_int_equal(sr_split_balance(est, n, k, part, load), 0);
	for (size_t i = 0; i < n; i++) {
		assert_true(part[i] < k);
		count[part[i]]++;
	}
	for (uint32_t p = 0; p < k; p++) {
		assert_true(count[p] > 0);
		lo = fmin(lo, load[p]);
		hi = fmax(hi, load[p]);
		sum += load[p];
	}
	free(count);
	for (size_t i = 0; i < n; i++)
		sum -= est[i];
	assert_true(fabs(sum) < 1e-9);
	return (hi - lo);
}

/* One test of 10 s and ten of 1 s: the slow one alone, not 5 and 6. */
static void
test_balance_slow_alone(void **state)
{
	double est[11], load[2];
	uint32_t part[11];

	(void) state;
	for (size_t i = 0; i < 11; i++)
		est[i] = i == 3 ? 10.0 : 1.0;
	assert_true(balance(est, 11, 2, part, load) < 1e-9);
	for (size_t i = 0; i < 11; i++)
		assert_true((part[i] == part[3]) == (i == 3));
	assert_true(fabs(load[part[3]] - 10.0) < 1e-12);
}

/* LPT's bound: no part exceeds the mean by more than the longest test. */
static void
test_balance_bound(void **state)
{
	double est[200], load[7], total = 0, longest = 0;
	uint32_t part[200];
	uint64_t x = 88172645463325252ull;

	(void) state;
	for (size_t i = 0; i < 200; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		est[i] = i % 50 == 0 ? 30.0 : (double) (x % 1000) / 1000.0;
		total += est[i];
		longest = fmax(longest, est[i]);
	}
	(void) balance(est, 200, 7, part, load);
	for (uint32_t p = 0; p < 7; p++)
		assert_true(load[p] <= total / 7 + longest);
	/* The four 30 s tests went to four different parts. */
	for (size_t i = 0; i < 200; i += 50)
		for (size_t j = i + 50; j < 200; j += 50)
			assert_int_not_equal(part[i], part[j]);
}

/* Nothing to balance by (all 0): near-equal counts, each part a test. */
static void
test_balance_zero(void **state)
{
	double est[5] = {0}, load[5];
	uint32_t part[5];

	(void) state;
	(void) balance(est, 5, 5, part, load);
	(void) balance(est, 5, 2, part, load);
	assert_int_equal(sr_split_balance(est, 5, 6, part, load), SR_EINVAL);
	assert_int_equal(sr_split_balance(est, 5, 0, part, load), SR_EINVAL);
}

/* A workspace with a stand-in "python" listing the ids given. */
struct fx {
	char dir[64];
	char python[128];
	struct sr_suite s;
	struct sr_history h;
	struct sr_plan p;
};

#define NIDS 12
static const char *const ids[NIDS] = {
    "tests/test_big.py::test_00",    "tests/test_big.py::test_01",
    "tests/test_big.py::T::test_02", "tests/test_big.py::T::test_03",
    "tests/test_big.py::test_04[a]", "tests/test_big.py::test_04[b]",
    "tests/test_big.py::test_slow",  "tests/test_big.py::test_07",
    "tests/test_big.py::test_08",    "tests/test_big.py::test_09",
    "tests/test_big.py::test_10",    "tests/test_big.py::test_new"};

static int
setup(void **state)
{
	struct fx *fx = calloc(1, sizeof(*fx));
	FILE *f;

	if (fx == NULL)
		return (-1);
	strcpy(fx->dir, "/tmp/sr-test-split-XXXXXX");
	if (mkdtemp(fx->dir) == NULL)
		return (-1);
	snprintf(fx->python, sizeof(fx->python), "%s/python", fx->dir);
	if ((f = fopen(fx->python, "w")) == NULL)
		return (-1);
	fprintf(f, "#!/bin/sh\n: > \"$SHARDRUN_COLLECT_OUT\"\n");
	for (size_t i = 0; i < NIDS; i++)
		fprintf(f,
		        "printf 'SRITEM\\t%%s\\t\\n' '%s' >> "
		        "\"$SHARDRUN_COLLECT_OUT\"\n",
		        ids[i]);
	if (fclose(f) != 0 || chmod(fx->python, 0755) != 0)
		return (-1);
	sr_suite_init(&fx->s);
	sr_history_init(&fx->h);
	sr_plan_init(&fx->p);
	*state = fx;
	return (0);
}

static int
teardown(void **state)
{
	struct fx *fx = *state;

	sr_plan_free(&fx->p);
	sr_suite_free(&fx->s);
	sr_history_free(&fx->h);
	(void) sr_rmtree(fx->dir);
	free(fx);
	return (0);
}

/* The suite: test_big.py (20 s) and test_small.py (1 s), planned. */
static void
plan(struct fx *fx)
{
	size_t idx;

	assert_int_equal(sr_history_record(&fx->h, "tests/test_big.py", 20.0),
	                 0);
	assert_int_equal(sr_history_record(&fx->h, "tests/test_small.py", 1.0),
	                 0);
	assert_int_equal(sr_suite_add(&fx->s, "tests/test_big.py", &idx), 0);
	assert_int_equal(sr_suite_add(&fx->s, "tests/test_small.py", &idx), 0);
	sr_history_estimate(&fx->h, &fx->s);
	assert_int_equal(sr_plan_build(&fx->p, &fx->s), 0);
}

/* The suite planned, then split for two slots. Returns how many files
 * were split. */
static size_t
plan_and_split(struct fx *fx)
{
	struct sr_split_cfg cfg = {fx->dir, fx->python, 2, 30.0, &fx->h};
	struct sr_splitter sp;
	struct sr_unit *u;
	size_t split = 0;

	plan(fx);
	assert_int_equal(sr_split_begin(&sp, &fx->p, &fx->s, &cfg), 0);
	/* While pytest lists its ids, the big file stays queued untaken. */
	u = sr_plan_take(&fx->p, NULL, NULL);
	assert_string_equal(fx->s.files[sr_unit_file(u, 0)].path,
	                    "tests/test_small.py");
	assert_null(sr_plan_take(&fx->p, NULL, NULL));
	assert_int_equal(sr_plan_push(&fx->p, u), 0);
	while (sr_split_poll(&sp, &fx->p, &fx->s))
		usleep(1000);
	sr_split_stop(&sp, &fx->p);
	for (size_t i = 0; i < fx->s.n; i++)
		split += sr_file_nparts(&fx->s.files[i]) > 0;
	return (split);
}

/* The python of the fixture runs body instead of listing the ids. */
static void
python_runs(struct fx *fx, const char *body)
{
	FILE *f = fopen(fx->python, "w");

	assert_non_null(f);
	fprintf(f, "#!/bin/sh\n%s\n", body);
	assert_int_equal(fclose(f), 0);
}

/* The heaviest unit the plan gives, which must be the whole big file. */
static void
big_goes_whole(struct fx *fx)
{
	struct sr_unit *u = sr_plan_take(&fx->p, NULL, NULL);

	assert_non_null(u);
	assert_null(sr_unit_selectors(u));
	assert_string_equal(fx->s.files[sr_unit_file(u, 0)].path,
	                    "tests/test_big.py");
	assert_int_equal(sr_file_nparts(&fx->s.files[0]), 0);
}

/* pytest fails: the file runs whole, and is taken again. */
static void
test_failed_listing_goes_whole(void **state)
{
	struct fx *fx = *state;

	python_runs(fx, "echo broken; exit 3");
	assert_int_equal(plan_and_split(fx), 0);
	big_goes_whole(fx);
}

/* Stopped while pytest lists (the run ended first): pytest is killed at
 * once and the file is no longer held back. */
static void
test_stop_while_listing(void **state)
{
	struct fx *fx = *state;
	struct sr_split_cfg cfg = {fx->dir, fx->python, 2, 30.0, &fx->h};
	struct sr_splitter sp;
	double t0;

	python_runs(fx, "exec sleep 60");
	plan(fx);
	assert_int_equal(sr_split_begin(&sp, &fx->p, &fx->s, &cfg), 0);
	assert_true(sr_split_poll(&sp, &fx->p, &fx->s));
	t0 = sr_now();
	sr_split_stop(&sp, &fx->p);
	assert_true(sr_now() - t0 < 5.0);
	assert_int_equal(waitpid(-1, NULL, WNOHANG), -1); /* none left */
	big_goes_whole(fx);
}

/* pytest takes longer than the budget: it is killed, its files are
 * removed, and the file goes whole. Meanwhile slots take only units that
 * end within the budget. */
static void
test_listing_past_the_budget(void **state)
{
	struct fx *fx = *state;
	struct sr_split_cfg cfg = {fx->dir, fx->python, 2, 0.5, &fx->h};
	struct sr_splitter sp;
	const struct sr_unit *small;
	char tmp[128];
	DIR *d;
	struct dirent *e;

	python_runs(fx, "exec sleep 60");
	snprintf(tmp, sizeof(tmp), "%s/tmp", fx->dir);
	assert_int_equal(mkdir(tmp, 0700), 0);
	assert_int_equal(setenv("TMPDIR", tmp, 1), 0);
	plan(fx);
	assert_int_equal(sr_split_begin(&sp, &fx->p, &fx->s, &cfg), 0);
	small = sr_plan_unit(&fx->p, 2);
	assert_string_equal(fx->s.files[sr_unit_file(small, 0)].path,
	                    "tests/test_small.py");
	assert_false(sr_split_allows(&sp, small)); /* 1 s > 0.5 */
	while (sr_split_poll(&sp, &fx->p, &fx->s))
		usleep(10000);
	assert_true(sr_split_allows(&sp, small));
	sr_split_stop(&sp, &fx->p);
	assert_int_equal(unsetenv("TMPDIR"), 0);
	assert_int_equal(waitpid(-1, NULL, WNOHANG), -1); /* none left */
	assert_non_null(d = opendir(tmp));
	while ((e = readdir(d)) != NULL)
		assert_true(e->d_name[0] == '.');
	closedir(d);
	big_goes_whole(fx);
}

/* A workspace that is not there: nothing is held back. */
static void
test_begin_fails_and_holds_nothing(void **state)
{
	struct fx *fx = *state;
	struct sr_split_cfg cfg = {"/nonexistent/ws", fx->python, 2, 30.0,
	                           &fx->h};
	struct sr_splitter sp;

	plan(fx);
	assert_int_not_equal(sr_split_begin(&sp, &fx->p, &fx->s, &cfg), 0);
	assert_false(sr_split_poll(&sp, &fx->p, &fx->s));
	sr_split_stop(&sp, &fx->p);
	big_goes_whole(fx);
}

/* Many long files on many slots: only a few are held at once, so a take
 * (which looks past at most 64 refused units) still finds work. */
static void
test_many_long_files_hold_few(void **state)
{
	struct fx *fx = *state;
	struct sr_split_cfg cfg = {fx->dir, fx->python, 100, 30.0, &fx->h};
	struct sr_splitter sp;
	struct sr_unit *u;
	size_t held = 0, idx;
	char name[64];

	python_runs(fx, "exec sleep 60");
	for (int i = 0; i < 70; i++) {
		snprintf(name, sizeof(name), "tests/test_long_%02d.py", i);
		assert_int_equal(sr_suite_add(&fx->s, name, &idx), 0);
		fx->s.files[idx].est_s = 60;
	}
	for (int i = 0; i < 1000; i++) {
		snprintf(name, sizeof(name), "tests/test_short_%04d.py", i);
		assert_int_equal(sr_suite_add(&fx->s, name, &idx), 0);
		fx->s.files[idx].est_s = 0.1;
	}
	assert_int_equal(sr_plan_build(&fx->p, &fx->s), 0);
	assert_int_equal(sr_split_begin(&sp, &fx->p, &fx->s, &cfg), 0);
	for (size_t i = 0; i < fx->p.n; i++)
		held += fx->p.units[i]->splitting;
	assert_true(held > 0 && held <= 16);
	assert_non_null(u = sr_plan_take(&fx->p, NULL, NULL));
	assert_true(u->weight == 60);
	sr_split_stop(&sp, &fx->p);
	for (size_t i = 0; i < fx->p.n; i++)
		assert_false(fx->p.units[i]->splitting);
}

/* Where each id went: its part; and each part's weight. Checks that every
 * id is in exactly one part and each part keeps pytest's order. */
static uint32_t
parts_of(const struct sr_plan *p, uint32_t *where, double *weight)
{
	uint32_t k = 0;

	for (size_t i = 0; i < NIDS; i++)
		where[i] = UINT32_MAX;
	for (size_t u = 0; u < p->n; u++) {
		const struct sr_unit *un = p->units[u];
		size_t last = 0;

		if (sr_unit_selectors(un) == NULL)
			continue;
		k++;
		weight[sr_unit_part(un)] = un->weight;
		for (size_t j = 0; j < sr_unit_selectors(un)->n; j++) {
			size_t i = 0;

			while (i < NIDS &&
			       strcmp(ids[i], sr_unit_selectors(un)->v[j]) != 0)
				i++;
			assert_true(i < NIDS);
			assert_int_equal(where[i], UINT32_MAX);
			assert_true(j == 0 || i > last);
			where[i] = sr_unit_part(un);
			last = i;
		}
	}
	for (size_t i = 0; i < NIDS; i++)
		assert_int_not_equal(where[i], UINT32_MAX);
	return (k);
}

/* test_slow took 8 s, ten others 1 s each, test_new is new (the mean of
 * the known, 18/11 s): the slow test gets a part of its own, wherever it
 * sits in the file, and the parts' weights follow their tests. */
static void
test_split_by_duration(void **state)
{
	struct fx *fx = *state;
	struct sr_hist_test t[NIDS - 1];
	uint32_t where[NIDS], k;
	double weight[NIDS], sum = 0;
	size_t nslow = 0;

	for (size_t i = 0; i < NIDS - 1; i++) {
		t[i].id = (char *) strstr(ids[i], "::") + 2;
		t[i].duration_s = i == 6 ? 8.0 : 1.0;
	}
	assert_int_equal(sr_history_record(&fx->h, "tests/test_big.py", 20.0),
	                 0);
	assert_int_equal(
	    sr_history_record_tests(&fx->h, "tests/test_big.py", t, NIDS - 1),
	    0);
	assert_int_equal(plan_and_split(fx), 1);
	k = parts_of(&fx->p, where, weight);
	assert_int_equal(k, sr_file_nparts(&fx->s.files[0]));
	assert_true(k >= 2);
	for (size_t i = 0; i < NIDS; i++)
		nslow += where[i] == where[6];
	assert_int_equal(nslow, 1);
	for (uint32_t p = 0; p < k; p++)
		sum += weight[p];
	/* The file's estimate (EWMA 20, 20), shared as the tests' times. */
	assert_true(fabs(sum - 20.0) < 1e-9);
	assert_true(fabs(weight[where[6]] - 20.0 * 8.0 / (18.0 + 18.0 / 11)) <
	            1e-9);
}

/* No per-test times: contiguous runs of near-equal count, as before. */
static void
test_split_by_count(void **state)
{
	struct fx *fx = *state;
	uint32_t where[NIDS], k;
	double weight[NIDS];

	assert_int_equal(plan_and_split(fx), 1);
	k = parts_of(&fx->p, where, weight);
	assert_true(k >= 2);
	for (size_t i = 1; i < NIDS; i++)
		assert_true(where[i] == where[i - 1] ||
		            where[i] == where[i - 1] + 1);
	for (uint32_t p = 0; p < k; p++) {
		size_t count = NIDS * (p + 1) / k - NIDS * p / k;

		assert_true(fabs(weight[p] - 20.0 * count / NIDS) < 1e-9);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parts),
	    cmocka_unit_test(test_balance_slow_alone),
	    cmocka_unit_test(test_balance_bound),
	    cmocka_unit_test(test_balance_zero),
	    cmocka_unit_test_setup_teardown(test_split_by_duration, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_split_by_count, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_failed_listing_goes_whole,
	                                    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_stop_while_listing, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_listing_past_the_budget, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_begin_fails_and_holds_nothing,
	                                    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_many_long_files_hold_few,
	                                    setup, teardown),
	};

	if (sr_init("test") != 0)
		return (1);
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
