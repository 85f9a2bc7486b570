/*
 * test_junit.c - which file a JUnit testcase belongs to, dividing one
 * session's report among its files, and packing short files into bundles.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "sr/err.h"
#include "sr/junit.h"

#include "bundle.h"
#include "plan.h"
#include "suite.h"

/* One session over three files (pytest 7, xunit2): a and a's class, b's
 * failure, c's skip, and a module of another file's directory with the
 * same basename (tests/sub/test_a.py). */
static const char session[] =
    "<?xml version=\"1.0\" encoding=\"utf-8\"?><testsuites><testsuite "
    "name=\"pytest\" errors=\"0\" failures=\"1\" skipped=\"1\" tests=\"5\" "
    "time=\"0.500\" timestamp=\"2026-01-01T10:00:00\" hostname=\"ci-1\">"
    "<testcase classname=\"tests.test_a\" name=\"test_one\" time=\"0.010\"/>"
    "<testcase classname=\"tests.test_a.TestC\" name=\"test_two[x]\" "
    "time=\"0.020\"/>"
    "<testcase classname=\"tests.test_b\" name=\"test_bad\" time=\"0.100\">"
    "<failure message=\"assert 1 == 2\">E assert 1 == 2</failure>"
    "</testcase>"
    "<testcase classname=\"tests.sub.test_a\" name=\"test_sub\" "
    "time=\"0.001\"><skipped message=\"no\"/></testcase>"
    "<testcase classname=\"tests.test_b\" name=\"test_ok\" time=\"0.200\"/>"
    "</testsuite></testsuites>";

static void
test_match_prefers_the_fullest_module(void **state)
{
	const char *rest = NULL;

	(void) state;
	assert_int_equal(sr_junit_match("tests/test_a.py", "tests.test_a.TestC",
	                                "test_two", &rest),
	                 strlen("tests.test_a"));
	assert_string_equal(rest, ".TestC");
	/* tests/sub/test_a.py names its module in full; tests/test_a.py
	 * only its last component. */
	assert_true(
	    sr_junit_match("tests/sub/test_a.py", "tests.sub.test_a", "t",
	                   NULL) >
	    sr_junit_match("tests/test_a.py", "tests.sub.test_a", "t", NULL));
	/* A rootdir below the workspace drops the leading components. */
	assert_int_equal(
	    sr_junit_match("pkg/tests/test_x.py", "tests.test_x", "t", NULL),
	    strlen("tests.test_x"));
	/* Not a component boundary. */
	assert_int_equal(
	    sr_junit_match("tests/test_x.py", "tests.test_xy", "t", NULL), 0);
	/* A module that failed to import: empty classname, dotted name. */
	assert_int_equal(
	    sr_junit_match("tests/test_x.py", "", "tests.test_x", NULL),
	    strlen("tests.test_x"));
	assert_int_equal(
	    sr_junit_match("tests/test_x.py", "", "tests.test_x.more", NULL),
	    0);
	/* ... behind a --junitprefix, the classname is the prefix alone. */
	assert_int_equal(
	    sr_junit_match("tests/test_x.py", "ci", "tests.test_x", NULL),
	    strlen("tests.test_x"));
}

static void
test_id_of_a_testcase(void **state)
{
	char *id = NULL;

	(void) state;
	assert_int_equal(sr_junit_test_id("tests/test_a.py",
	                                  "tests.test_a.TestC", "test_two[x]",
	                                  &id),
	                 0);
	assert_string_equal(id, "TestC::test_two[x]");
	free(id);
	assert_int_equal(
	    sr_junit_test_id("tests/test_a.py", "", "tests.test_a", &id),
	    SR_ENOENT);
}

static void
test_divide_gives_each_file_its_testcases(void **state)
{
	char *paths[] = {"tests/test_a.py", "tests/test_b.py",
	                 "tests/sub/test_a.py", "tests/test_none.py"};
	struct sr_junit_share sh[4];
	xmlDocPtr doc;

	(void) state;
	assert_int_equal(
	    sr_junit_divide(session, strlen(session), paths, 4, sh), 0);
	assert_int_equal(sh[0].tests, 2);
	assert_int_equal(sh[0].bad, 0);
	assert_true(sh[0].time_s > 0.029 && sh[0].time_s < 0.031);
	assert_int_equal(sh[1].tests, 2);
	assert_int_equal(sh[1].bad, 1);
	assert_int_equal(sh[2].tests, 1);
	assert_int_equal(sh[2].bad, 0);
	assert_int_equal(sh[3].tests, 0);
	assert_null(sh[3].xml);
	/* b's own report: its two testcases, its counts, the session's
	 * suite name and host. */
	doc = sr_junit_parse(sh[1].xml, sh[1].len);
	assert_non_null(doc);
	{
		xmlNodePtr suite = xmlDocGetRootElement(doc)->children;

		assert_true(sr_junit_is(suite, "testsuite"));
		assert_string_equal(sr_junit_attr(suite, "tests"), "2");
		assert_string_equal(sr_junit_attr(suite, "failures"), "1");
		assert_string_equal(sr_junit_attr(suite, "errors"), "0");
		assert_string_equal(sr_junit_attr(suite, "hostname"), "ci-1");
		assert_string_equal(sr_junit_attr(suite->children, "name"),
		                    "test_bad");
		assert_string_equal(
		    sr_junit_attr(suite->children->next, "name"), "test_ok");
	}
	xmlFreeDoc(doc);
	doc = sr_junit_parse(sh[2].xml, sh[2].len);
	assert_string_equal(
	    sr_junit_attr(xmlDocGetRootElement(doc)->children, "skipped"), "1");
	xmlFreeDoc(doc);
	sr_junit_shares_free(sh, 4);
}

static void
test_divide_refuses_a_failure_of_no_file(void **state)
{
	char *paths[] = {"tests/test_a.py"};
	struct sr_junit_share sh[1];
	static const char stray[] =
	    "<testsuites><testsuite><testcase classname=\"tests.test_a\" "
	    "name=\"t\"/><testcase classname=\"elsewhere\" name=\"x\"><error "
	    "message=\"boom\"/></testcase></testsuite></testsuites>";
	static const char stray_pass[] =
	    "<testsuites><testsuite><testcase classname=\"tests.test_a\" "
	    "name=\"t\"/><testcase classname=\"elsewhere\" name=\"x\"/>"
	    "</testsuite></testsuites>";
	static const char dtd[] =
	    "<!DOCTYPE testsuites [<!ENTITY e \"x\">]><testsuites/>";

	(void) state;
	assert_int_equal(sr_junit_divide(stray, strlen(stray), paths, 1, sh),
	                 SR_EINVAL);
	sr_junit_shares_free(sh, 1);
	assert_int_equal(
	    sr_junit_divide(stray_pass, strlen(stray_pass), paths, 1, sh), 0);
	assert_int_equal(sh[0].tests, 1);
	sr_junit_shares_free(sh, 1);
	assert_int_equal(sr_junit_divide(dtd, strlen(dtd), paths, 1, sh),
	                 SR_EINVAL);
	assert_int_equal(sr_junit_divide("<a", 2, paths, 1, sh), SR_EINVAL);
	assert_int_equal(sr_junit_divide(NULL, 0, paths, 1, sh), SR_EINVAL);
	sr_junit_shares_free(sh, 1);
}

/* ---- packing ---- */

static void
add(struct sr_suite *s, const char *path, double est)
{
	size_t i;

	assert_int_equal(sr_suite_add(s, path, &i), 0);
	s->files[i].est_s = est;
}

/* The queued units, by their files' paths ("a+b" for a bundle). */
static int
queued_bundles(const struct sr_plan *p, const struct sr_suite *s,
               size_t *nfiles)
{
	int n = 0;

	*nfiles = 0;
	for (size_t i = 0; i < p->n; i++) {
		const struct sr_unit *u = p->units[i];

		if (u->state != SR_UNIT_QUEUED || !sr_unit_bundle(u))
			continue;
		n++;
		*nfiles += u->nfiles;
		assert_true(u->nfiles >= 2);
		assert_true(u->nfiles <= SR_BUNDLE_MAX_FILES);
		for (size_t k = 1; k < u->nfiles; k++) {
			const char *a = s->files[sr_unit_file(u, 0)].path;
			const char *b = s->files[sr_unit_file(u, k)].path;

			/* one directory */
			assert_int_equal(strrchr(a, '/') - a,
			                 strrchr(b, '/') - b);
			assert_memory_equal(a, b,
			                    (size_t) (strrchr(a, '/') - a));
		}
	}
	return (n);
}

/* Plan the suite, bundle it, and check how many bundles and files. */
static void
pack(struct sr_plan *p, struct sr_suite *s, double max_s, size_t bundles,
     size_t files)
{
	size_t nfiles;

	sr_plan_init(p);
	assert_int_equal(sr_plan_build(p, s), 0);
	assert_int_equal(sr_bundle_short(p, s, max_s, 2), bundles);
	assert_int_equal(queued_bundles(p, s, &nfiles), bundles);
	assert_int_equal(nfiles, files);
}

static void
test_bundles_pack_short_files_of_one_directory(void **state)
{
	struct sr_suite s;
	struct sr_plan p;
	size_t nfiles;
	char path[64];

	(void) state;
	sr_suite_init(&s);
	for (int i = 0; i < 100; i++) {
		snprintf(path, sizeof(path), "%s/test_%03d.py",
		         i < 50 ? "a" : "b", i);
		add(&s, path, 0.05);
	}
	add(&s, "b/test_long.py", 30.0);
	add(&s, "b/test_serial.py", 0.05);
	s.files[s.n - 1].serial = true;
	sr_suite_sort(&s);
	sr_plan_init(&p);
	assert_int_equal(sr_plan_build(&p, &s), 0);
	/* 35 s over 2 slots: a share of 17.5 s, a bundle at most 1 s. */
	assert_true(sr_bundle_short(&p, &s, 1.0, 2) > 0);
	assert_true(queued_bundles(&p, &s, &nfiles) >= 100 * 0.05 / 1.0);
	assert_int_equal(nfiles, 100);
	for (size_t i = 0; i < p.n; i++) {
		const struct sr_unit *u = p.units[i];

		if (u->state != SR_UNIT_QUEUED || !sr_unit_bundle(u))
			continue;
		assert_true(u->weight <= 1.0 + 1e-9);
		assert_false(u->serial);
	}
	/* Nothing left to bundle a second time. */
	assert_int_equal(sr_bundle_short(&p, &s, 1.0, 2), 0);
	sr_plan_free(&p);
	sr_suite_free(&s);
}

static void
test_small_suites_keep_their_balance(void **state)
{
	struct sr_suite s;
	struct sr_plan p;
	char path[64];

	(void) state;
	sr_suite_init(&s);
	for (int i = 0; i < 9; i++) {
		snprintf(path, sizeof(path), "t/test_%d.py", i);
		add(&s, path, 0.1);
	}
	/* 0.9 s on 2 slots: bundles of at most half a share (0.225 s), so
	 * pairs, and the ninth file alone. */
	pack(&p, &s, 5.0, 4, 8);
	sr_plan_free(&p);
	sr_suite_free(&s);
	/* Off, and nothing short enough. */
	sr_suite_init(&s);
	add(&s, "t/test_a.py", 2.0);
	add(&s, "t/test_b.py", 2.0);
	pack(&p, &s, 0, 0, 0);
	assert_int_equal(sr_bundle_short(&p, &s, 1.0, 2), 0);
	sr_plan_free(&p);
	sr_suite_free(&s);
}

static void
test_a_directory_stays_together(void **state)
{
	struct sr_suite s;
	struct sr_plan p;

	(void) state;
	sr_suite_init(&s);
	/* The subdirectory's files sort between d/test_a.py and d/test_c.py. */
	add(&s, "d/test_a.py", 0.1);
	add(&s, "d/test_b/test_1.py", 0.1);
	add(&s, "d/test_b/test_2.py", 0.1);
	add(&s, "d/test_c.py", 0.1);
	add(&s, "d/test_long.py", 20.0);
	sr_suite_sort(&s);
	pack(&p, &s, 1.0, 2, 4);
	/* Compacted, the queue holds the long file and the two bundles. */
	sr_plan_compact(&p);
	assert_int_equal(p.nheap, 3);
	assert_string_equal(s.files[sr_unit_file(sr_plan_peek(&p), 0)].path,
	                    "d/test_long.py");
	for (int i = 0; i < 3; i++)
		assert_non_null(sr_plan_take(&p, NULL, NULL));
	assert_null(sr_plan_take(&p, NULL, NULL));
	sr_plan_free(&p);
	sr_suite_free(&s);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_match_prefers_the_fullest_module),
	    cmocka_unit_test(test_id_of_a_testcase),
	    cmocka_unit_test(test_divide_gives_each_file_its_testcases),
	    cmocka_unit_test(test_divide_refuses_a_failure_of_no_file),
	    cmocka_unit_test(test_bundles_pack_short_files_of_one_directory),
	    cmocka_unit_test(test_small_suites_keep_their_balance),
	    cmocka_unit_test(test_a_directory_stays_together),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
