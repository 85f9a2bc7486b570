/*
 * test_suite.c - suite.c: adding files, deep-copied attempts, sorting,
 * the names of final results.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>

#include "suite.h"

static void
test_suite_attempts(void **state)
{
	struct sr_suite s;
	struct sr_attempt a = {
	    .outcome = 2, .tries = 1, .exit_code = 1, .slot = 3};
	char agent[] = "agent-1", tail[] = "boom", junit[] = "<x/>\0<y/>";
	const struct sr_attempt *last;
	size_t idx;

	(void) state;
	sr_suite_init(&s);
	assert_int_equal(sr_suite_add(&s, "b.py", &idx), 0);
	assert_int_equal(sr_suite_add(&s, "a.py", &idx), 0);
	assert_int_equal(idx, 1);
	assert_null(sr_file_last(&s.files[1]));
	assert_int_equal(s.files[1].final, SR_FINAL_PENDING);
	a.agent = agent;
	a.tail = tail;
	a.junit = junit;
	a.junit_len = sizeof(junit) - 1;
	assert_int_equal(sr_file_add_attempt(&s.files[1], &a), 0);
	agent[0] = tail[0] = junit[0] = 'X';
	a.agent = a.tail = a.junit = NULL;
	a.message = "second";
	a.exit_code = 0;
	assert_int_equal(sr_file_add_attempt(&s.files[1], &a), 0);
	assert_int_equal(s.files[1].natt, 2);
	assert_string_equal(s.files[1].att[0].agent, "agent-1");
	assert_string_equal(s.files[1].att[0].tail, "boom");
	assert_int_equal(s.files[1].att[0].junit_len, 9);
	assert_memory_equal(s.files[1].att[0].junit, "<x/>\0<y/>", 9);
	assert_null(s.files[1].att[0].message);
	last = sr_file_last(&s.files[1]);
	assert_string_equal(last->message, "second");
	assert_null(last->agent);
	assert_null(last->junit);
	assert_int_equal(last->slot, 3);
	sr_suite_sort(&s);
	assert_string_equal(s.files[0].path, "a.py");
	assert_int_equal(s.files[0].natt, 2);
	sr_suite_free(&s);
	assert_int_equal(s.n, 0);
}

static void
test_final_names(void **state)
{
	static const char *const want[] = {"pending", "passed",  "failed",
	                                   "flaky",   "crashed", "timeout",
	                                   "error"};

	(void) state;
	for (int i = 0; i < SR_FINAL_COUNT; i++)
		assert_string_equal(sr_final_name(i), want[i]);
	assert_string_equal(sr_final_name(SR_FINAL_COUNT), "unknown");
	assert_string_equal(sr_final_name(-1), "unknown");
}

static void
test_many_files(void **state)
{
	struct sr_suite s;
	char name[32];
	size_t idx;

	(void) state;
	sr_suite_init(&s);
	for (int i = 999; i >= 0; i--) {
		snprintf(name, sizeof(name), "f%04d.py", i);
		assert_int_equal(sr_suite_add(&s, name, &idx), 0);
		assert_int_equal(idx, (size_t) (999 - i));
	}
	sr_suite_sort(&s);
	for (size_t i = 0; i < s.n; i++) {
		snprintf(name, sizeof(name), "f%04zu.py", i);
		assert_string_equal(s.files[i].path, name);
	}
	sr_suite_free(&s);
	assert_null(s.files);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_suite_attempts),
	    cmocka_unit_test(test_many_files),
	    cmocka_unit_test(test_final_names),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
