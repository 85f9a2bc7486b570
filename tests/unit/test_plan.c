/*
 * test_plan.c - the planner: units, LPT order, pull queue, static splits,
 * the lower bound, checked against brute force on small instances.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plan.h"
#include "sr/util.h"

static void
make_suite(struct sr_suite *s, const double *w, size_t n)
{
	char name[32];
	size_t idx;

	sr_suite_init(s);
	for (size_t i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "test_%02zu.py", i);
		assert_int_equal(sr_suite_add(s, name, &idx), 0);
		s->files[idx].est_s = w[i];
	}
}

/* Optimal makespan by trying every assignment (n small). */
static double
brute_force(const double *w, size_t n, unsigned m)
{
	double best = 1e300;
	size_t total = 1;

	for (size_t i = 0; i < n; i++)
		total *= m;
	for (size_t code = 0; code < total; code++) {
		double load[8] = {0};
		double mk = 0;
		size_t c = code;

		for (size_t i = 0; i < n; i++) {
			load[c % m] += w[i];
			c /= m;
		}
		for (unsigned k = 0; k < m; k++)
			if (load[k] > mk)
				mk = load[k];
		if (mk < best)
			best = mk;
	}
	return (best);
}

/* Pull dispatch with exact estimates: the earliest free slot takes the
 * heaviest queued unit. */
static double
simulate_pull(struct sr_plan *p, unsigned m)
{
	double free_at[8] = {0};
	double mk = 0;
	struct sr_unit *u;

	while (1) {
		unsigned k = 0;

		for (unsigned j = 1; j < m; j++)
			if (free_at[j] < free_at[k])
				k = j;
		if ((u = sr_plan_take(p, NULL, NULL)) == NULL)
			break;
		free_at[k] += u->weight;
		if (free_at[k] > mk)
			mk = free_at[k];
	}
	return (mk);
}

static void
test_lpt_against_brute_force(void **state)
{
	(void) state;
	srand(12345);
	for (int round = 0; round < 300; round++) {
		size_t n = 2 + (size_t) (rand() % 7);     /* 2..8 files */
		unsigned m = 2 + (unsigned) (rand() % 2); /* 2..3 slots */
		double w[8];
		struct sr_suite s;
		struct sr_plan p;
		struct sr_static_plan sp = {0};
		double opt;
		double lb;
		double stat = 0;
		double pull;

		for (size_t i = 0; i < n; i++)
			w[i] = 0.1 + (rand() % 1000) / 100.0;
		make_suite(&s, w, n);
		sr_plan_init(&p);
		assert_int_equal(sr_plan_build(&p, &s), 0);
		assert_int_equal(sr_plan_static(&p, m, &sp), 0);
		for (unsigned k = 0; k < m; k++)
			if (sp.loads[k] > stat)
				stat = sp.loads[k];
		opt = brute_force(w, n, m);
		lb = sr_lower_bound(w, n, m);
		pull = simulate_pull(&p, m);
		/* LB never exceeds OPT; LPT within Graham's 4/3 - 1/(3m). */
		assert_true(lb <= opt + 1e-9);
		assert_true(stat <= (4.0 / 3.0 - 1.0 / (3.0 * m)) * opt + 1e-9);
		assert_true(stat >= opt - 1e-9);
		/* Pull dispatch with exact estimates is LPT. */
		assert_true(pull <= stat + 1e-9 && pull >= stat - 1e-9);
		sr_static_plan_free(&sp);
		sr_plan_free(&p);
		sr_suite_free(&s);
	}
}

static void
test_take_order_and_ties(void **state)
{
	double w[] = {1.0, 3.0, 2.0, 3.0};
	struct sr_suite s;
	struct sr_plan p;
	const char *want[] = {"test_01.py", "test_03.py", "test_02.py",
	                      "test_00.py"};

	(void) state;
	make_suite(&s, w, 4);
	sr_plan_init(&p);
	assert_int_equal(sr_plan_build(&p, &s), 0);
	for (int i = 0; i < 4; i++) {
		struct sr_unit *u = sr_plan_take(&p, NULL, NULL);

		assert_non_null(u);
		assert_string_equal(s.files[sr_unit_file(u, 0)].path, want[i]);
	}
	assert_null(sr_plan_take(&p, NULL, NULL));
	sr_plan_free(&p);
	sr_suite_free(&s);
}

static void
test_serial_group_is_one_unit(void **state)
{
	double w[] = {1.0, 2.0, 4.0, 0.5};
	struct sr_suite s;
	struct sr_plan p;
	struct sr_unit *u;

	(void) state;
	make_suite(&s, w, 4);
	s.files[0].serial = true;
	s.files[3].serial = true;
	sr_plan_init(&p);
	assert_int_equal(sr_plan_build(&p, &s), 0);
	assert_int_equal(p.n, 3);
	u = sr_plan_take(&p, NULL, NULL);
	assert_false(u->serial);
	assert_true(u->weight == 4.0);
	u = sr_plan_take(&p, NULL, NULL);
	assert_false(u->serial);
	u = sr_plan_take(&p, NULL, NULL);
	assert_true(u->serial);
	assert_int_equal(u->nfiles, 2);
	assert_int_equal(sr_unit_file(u, 0), 0); /* path order */
	assert_int_equal(sr_unit_file(u, 1), 3);
	assert_true(u->weight == 1.5);
	sr_plan_free(&p);
	sr_suite_free(&s);
}

static bool
refuse_heavy(void *arg, const struct sr_unit *u)
{
	(void) arg;
	return (u->weight < 5.0);
}

static void
test_refused_units_stay_queued(void **state)
{
	double w[] = {9.0, 1.0, 2.0};
	struct sr_suite s;
	struct sr_plan p;
	struct sr_unit *u;
	uint32_t id;
	size_t f = 1;

	(void) state;
	make_suite(&s, w, 3);
	sr_plan_init(&p);
	assert_int_equal(sr_plan_build(&p, &s), 0);
	u = sr_plan_take(&p, refuse_heavy, NULL);
	assert_true(u->weight == 2.0);
	u = sr_plan_take(&p, NULL, NULL);
	assert_true(u->weight == 9.0);
	/* A requeue is a new unit with a new id. */
	assert_int_equal(sr_plan_add(&p, &s, &f, 1, false, &id), 0);
	assert_int_equal(id, 4);
	assert_int_equal(p.nheap, 2);
	sr_plan_free(&p);
	sr_suite_free(&s);
}

static bool
refuse_and_count(void *arg, const struct sr_unit *u)
{
	(void) u;
	++*(int *) arg;
	return (false);
}

/* A search above a floor asks ok() about no unit below it, takes none
 * below it, and leaves every unit it refused queued. */
static void
test_take_above_stops_at_the_floor(void **state)
{
	double w[] = {10, 9, 8, 7, 6, 5, 4, 3, 2, 1};
	struct sr_suite s;
	struct sr_plan p;
	struct sr_unit *u;
	int asked = 0;

	(void) state;
	make_suite(&s, w, 10);
	sr_plan_init(&p);
	assert_int_equal(sr_plan_build(&p, &s), 0);
	assert_null(sr_plan_take_above(&p, 7.5, refuse_and_count, &asked));
	assert_int_equal(asked, 3);
	assert_null(sr_plan_take_above(&p, 20, NULL, NULL));
	assert_int_equal(p.nheap, 10);
	u = sr_plan_take_above(&p, 7.5, NULL, NULL);
	assert_true(u->weight == 10.0);
	u = sr_plan_take_above(&p, 9.5, NULL, NULL);
	assert_null(u);
	u = sr_plan_take(&p, NULL, NULL);
	assert_true(u->weight == 9.0);
	assert_int_equal(p.nheap, 8);
	sr_plan_free(&p);
	sr_suite_free(&s);
}

static void
test_lower_bound(void **state)
{
	double w[] = {1, 1, 1, 9};

	(void) state;
	assert_true(sr_lower_bound(w, 4, 2) == 9.0);
	assert_true(sr_lower_bound(w, 3, 2) == 1.5);
	assert_true(sr_lower_bound(w, 0, 2) == 0.0);
}

/* The planning budget (1,000,000 files under 300 MB) rests on it. */
static void
test_unit_is_small(void **state)
{
	(void) state;
	if (sizeof(void *) == 8)
		assert_true(sizeof(struct sr_unit) <= 64);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_unit_is_small),
	    cmocka_unit_test(test_lpt_against_brute_force),
	    cmocka_unit_test(test_take_order_and_ties),
	    cmocka_unit_test(test_serial_group_is_one_unit),
	    cmocka_unit_test(test_refused_units_stay_queued),
	    cmocka_unit_test(test_take_above_stops_at_the_floor),
	    cmocka_unit_test(test_lower_bound),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
