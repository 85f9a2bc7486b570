/*
 * test_profile.c - word splitting, the pytest and generic profiles, exit
 * maps, reproduction commands and sr_find_python.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shardrun.pb-c.h"

#include "sr/err.h"
#include "sr/profile.h"
#include "sr/util.h"

#define PASSED   SHARDRUN__OUTCOME__PASSED
#define FAILED   SHARDRUN__OUTCOME__FAILED
#define NO_TESTS SHARDRUN__OUTCOME__NO_TESTS
#define ERROR    SHARDRUN__OUTCOME__ERROR

#define PY "/usr/bin/python3"

/* Compare sv with a NULL-terminated list of expected words. */
static void
expect_words(const struct sr_strv *sv, const char *const *want)
{
	size_t n = 0;

	while (want[n] != NULL) {
		assert_true(n < sv->n);
		assert_string_equal(sv->v[n], want[n]);
		n++;
	}
	assert_int_equal(sv->n, n);
	if (n > 0)
		assert_null(sv->v[n]);
}

static void
expect_split(const char *s, const char *const *want)
{
	struct sr_strv sv;

	sr_strv_init(&sv);
	assert_int_equal(sr_split_words(s, &sv), 0);
	expect_words(&sv, want);
	sr_strv_free(&sv);
}

static void
test_split_plain(void **state)
{
	(void) state;
	expect_split("", (const char *[]){NULL});
	expect_split("  \t\n ", (const char *[]){NULL});
	expect_split("a", (const char *[]){"a", NULL});
	expect_split(" a  b\tc\n", (const char *[]){"a", "b", "c", NULL});
	/* No operators, variables or globs: all literal. */
	expect_split("a;b | $HOME *.py",
	             (const char *[]){"a;b", "|", "$HOME", "*.py", NULL});
}

static void
test_split_quotes(void **state)
{
	(void) state;
	expect_split("'a b' c", (const char *[]){"a b", "c", NULL});
	expect_split("'a \\ \"b' c", (const char *[]){"a \\ \"b", "c", NULL});
	expect_split("\"a \\\"q\\\" \\\\ b\"",
	             (const char *[]){"a \"q\" \\ b", NULL});
	expect_split("\"\\x \\$\"", (const char *[]){"\\x $", NULL});
	expect_split("a'b'\"c\"d", (const char *[]){"abcd", NULL});
	expect_split("'' \"\"", (const char *[]){"", "", NULL});
	expect_split("--out='x y'", (const char *[]){"--out=x y", NULL});
	expect_split("'it'\\''s'", (const char *[]){"it's", NULL});
}

static void
test_split_escapes(void **state)
{
	(void) state;
	expect_split("a\\ b", (const char *[]){"a b", NULL});
	expect_split("\\'x\\\"", (const char *[]){"'x\"", NULL});
	expect_split("a\\\\b", (const char *[]){"a\\b", NULL});
	expect_split("a \\\n b", (const char *[]){"a", "b", NULL});
	expect_split("a\\\nb", (const char *[]){"ab", NULL});
}

static void
test_split_errors(void **state)
{
	static const char *const bad[] = {"'abc", "a \"b", "\"a\\\"",
	                                  "a\\",  "'",     "x 'y\" z"};
	struct sr_strv sv;

	(void) state;
	sr_strv_init(&sv);
	assert_int_equal(sr_strv_push(&sv, "keep"), 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(sr_split_words(bad[i], &sv), SR_EINVAL);
		expect_words(&sv, (const char *[]){"keep", NULL});
	}
	/* Success appends to what is there. */
	assert_int_equal(sr_split_words("x 'y z'", &sv), 0);
	expect_words(&sv, (const char *[]){"keep", "x", "y z", NULL});
	sr_strv_free(&sv);
}

static void
test_pytest_argv(void **state)
{
	struct sr_profile p;
	struct sr_strv files, av;

	(void) state;
	assert_int_equal(sr_profile_pytest(&p, PY), 0);
	assert_string_equal(p.name, "pytest");
	assert_string_equal(p.python, PY);
	assert_true(p.junit);
	sr_strv_init(&files);
	sr_strv_init(&av);
	assert_int_equal(sr_strv_push(&files, "tests/test_a.py"), 0);
	assert_int_equal(sr_profile_argv(&p, &files, "/w/j.xml", "/w/tmp", &av),
	                 0);
	expect_words(&av,
	             (const char *[]){PY, "-m", "pytest", "-q", "-p",
	                              "no:cacheprovider", "--junitxml=/w/j.xml",
	                              "tests/test_a.py", NULL});
	sr_strv_free(&av);
	/* A chunk: "{file}" expands to every selector. */
	assert_int_equal(sr_strv_push(&files, "tests/test_a.py::test_b[1 2]"),
	                 0);
	assert_int_equal(sr_profile_argv(&p, &files, "/j", "/t", &av), 0);
	assert_int_equal(av.n, 9);
	assert_string_equal(av.v[6], "--junitxml=/j");
	assert_string_equal(av.v[7], "tests/test_a.py");
	assert_string_equal(av.v[8], "tests/test_a.py::test_b[1 2]");
	sr_strv_free(&av);
	sr_strv_free(&files);
	sr_profile_free(&p);
}

static void
test_argv_refusals(void **state)
{
	struct sr_profile p;
	struct sr_strv files, av;

	(void) state;
	assert_int_equal(sr_profile_pytest(&p, PY), 0);
	sr_strv_init(&files);
	sr_strv_init(&av);
	assert_int_equal(sr_profile_argv(&p, &files, "/j", "/t", &av),
	                 SR_EINVAL); /* no files */
	assert_int_equal(sr_strv_push(&files, "a.py"), 0);
	assert_int_equal(sr_profile_argv(&p, &files, NULL, "/t", &av),
	                 SR_EINVAL); /* {junit} without a path */
	assert_int_equal(sr_strv_push(&files, "-pevil"), 0);
	assert_int_equal(sr_profile_argv(&p, &files, "/j", "/t", &av),
	                 SR_EPATH); /* would be read as an option */
	assert_int_equal(av.n, 0);
	sr_strv_free(&files);
	sr_profile_free(&p);
}

static void
test_generic_argv(void **state)
{
	struct sr_profile p;
	struct sr_strv files, av;

	(void) state;
	assert_int_equal(
	    sr_profile_generic(&p,
	                       "'my runner' --out={junit} --dir={tmp}/w "
	                       "--name=pre{file}post {file} {literal}",
	                       NULL),
	    0);
	assert_string_equal(p.name, "generic");
	assert_true(p.junit);
	sr_strv_init(&files);
	sr_strv_init(&av);
	assert_int_equal(sr_strv_push(&files, "a b.t"), 0);
	assert_int_equal(sr_profile_argv(&p, &files, "/J", "/T", &av), 0);
	expect_words(&av, (const char *[]){"my runner", "--out=/J",
	                                   "--dir=/T/w", "--name=prea b.tpost",
	                                   "a b.t", "{literal}", NULL});
	sr_strv_free(&av);
	/* Several files: embedded {file} repeats its argument per file. */
	assert_int_equal(sr_strv_push(&files, "c.t"), 0);
	assert_int_equal(sr_profile_argv(&p, &files, "/J", "/T", &av), 0);
	expect_words(&av, (const char *[]){"my runner", "--out=/J",
	                                   "--dir=/T/w", "--name=prea b.tpost",
	                                   "--name=prec.tpost", "a b.t", "c.t",
	                                   "{literal}", NULL});
	sr_strv_free(&av);
	sr_strv_free(&files);
	sr_profile_free(&p);
}

static void
test_generic_template_errors(void **state)
{
	static const char *const bad[] = {"",
	                                  "   ",
	                                  "runner --all",
	                                  "runner '{file}",
	                                  "runner {file} \\",
	                                  "{python} {file}"};
	struct sr_profile p;

	(void) state;
	memset(&p, 0, sizeof(p));
	strcpy(p.name, "sentinel");
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(sr_profile_generic(&p, bad[i], NULL),
		                 SR_EINVAL);
		assert_string_equal(p.name, "sentinel");
	}
	assert_int_equal(sr_profile_generic(&p, "run --x={file}", NULL), 0);
	assert_false(p.junit); /* no {junit}: no report expected */
	sr_profile_free(&p);
}

static void
test_exit_maps(void **state)
{
	struct sr_profile p;

	(void) state;
	assert_int_equal(sr_profile_pytest(&p, PY), 0);
	assert_int_equal(sr_profile_classify(&p, 0), PASSED);
	assert_int_equal(sr_profile_classify(&p, 1), FAILED);
	assert_int_equal(sr_profile_classify(&p, 2), ERROR);
	assert_int_equal(sr_profile_classify(&p, 3), ERROR);
	assert_int_equal(sr_profile_classify(&p, 4), SR_EXIT_TRANSIENT);
	assert_int_equal(sr_profile_classify(&p, 5), NO_TESTS);
	assert_int_equal(sr_profile_classify(&p, 6), ERROR);
	assert_int_equal(sr_profile_classify(&p, 255), ERROR);
	sr_profile_free(&p);

	assert_int_equal(sr_profile_generic(&p, "t {file}", NULL), 0);
	assert_int_equal(sr_profile_classify(&p, 0), PASSED);
	assert_int_equal(sr_profile_classify(&p, 1), FAILED);
	assert_int_equal(sr_profile_classify(&p, 77), FAILED);
	sr_profile_free(&p);

	assert_int_equal(
	    sr_profile_generic(&p, "t {file}",
	                       " 1 = failed,4=transient,5=no_tests,*=error"),
	    0);
	assert_int_equal(sr_profile_classify(&p, 0), PASSED); /* default */
	assert_int_equal(sr_profile_classify(&p, 1), FAILED);
	assert_int_equal(sr_profile_classify(&p, 4), SR_EXIT_TRANSIENT);
	assert_int_equal(sr_profile_classify(&p, 5), NO_TESTS);
	assert_int_equal(sr_profile_classify(&p, 9), ERROR);
	sr_profile_free(&p);

	assert_int_equal(
	    sr_profile_generic(&p, "t {file}", "0=failed,77=passed"), 0);
	assert_int_equal(sr_profile_classify(&p, 0), FAILED);
	assert_int_equal(sr_profile_classify(&p, 77), PASSED);
	assert_int_equal(sr_profile_classify(&p, 2), FAILED); /* default * */
	sr_profile_free(&p);
}

static void
test_exit_map_errors(void **state)
{
	static const char *const bad[] = {"x=passed",
	                                  "0=bogus",
	                                  "0passed",
	                                  "256=failed",
	                                  "-1=failed",
	                                  "1234=failed",
	                                  "0=passed,,1=failed",
	                                  "0=passed,",
	                                  ",",
	                                  "0=passed,0=failed",
	                                  "*=failed,*=error",
	                                  "=passed",
	                                  "0=",
	                                  "0=crashed",
	                                  "0=PASSED",
	                                  "1 2=failed"};
	struct sr_profile p;
	char many[512] = "";
	size_t len = 0;

	(void) state;
	memset(&p, 0, sizeof(p));
	strcpy(p.name, "sentinel");
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(sr_profile_generic(&p, "t {file}", bad[i]),
		                 SR_EINVAL);
		assert_string_equal(p.name, "sentinel");
	}
	for (int c = 0; c < SR_PROFILE_MAXMAP; c++)
		len += (size_t) snprintf(many + len, sizeof(many) - len,
		                         "%s%d=failed", c ? "," : "", c);
	assert_int_equal(sr_profile_generic(&p, "t {file}", many), 0);
	assert_int_equal(p.nmap, SR_PROFILE_MAXMAP);
	sr_profile_free(&p);
	snprintf(many + len, sizeof(many) - len, ",99=passed");
	assert_int_equal(sr_profile_generic(&p, "t {file}", many), SR_ETOOBIG);
}

static void
expect_repro(const struct sr_profile *p, const char *file, const char *want)
{
	struct sr_buf b;

	sr_buf_init(&b);
	assert_int_equal(sr_profile_repro(p, file, &b), 0);
	assert_string_equal((char *) b.p, want);
	sr_buf_free(&b);
}

static void
test_repro(void **state)
{
	struct sr_profile p;

	(void) state;
	assert_int_equal(sr_profile_pytest(&p, PY), 0);
	expect_repro(&p, "tests/test_a.py", PY " -m pytest tests/test_a.py");
	expect_repro(&p, "tests/my test.py",
	             PY " -m pytest 'tests/my test.py'");
	expect_repro(&p, "it's.py", PY " -m pytest 'it'\\''s.py'");
	sr_profile_free(&p);

	assert_int_equal(sr_profile_pytest(&p, "/opt/my py/bin/python"), 0);
	expect_repro(&p, "a.py", "'/opt/my py/bin/python' -m pytest a.py");
	sr_profile_free(&p);

	assert_int_equal(
	    sr_profile_generic(&p,
	                       "runner --junitxml={junit} --tmp {tmp} -v "
	                       "'--sel=$x' {file}",
	                       NULL),
	    0);
	expect_repro(&p, "a b.t", "runner --tmp /tmp -v '--sel=$x' 'a b.t'");
	sr_profile_free(&p);

	assert_int_equal(
	    sr_profile_generic(&p, "'my runner' {file} --report {junit}", NULL),
	    0);
	expect_repro(&p, "a.t", "'my runner' a.t --report /tmp/junit.xml");
	sr_profile_free(&p);
}

static void
test_find_python(void **state)
{
	char out[512] = "keep";
	char why[1024] = "";
	struct sr_profile p;

	(void) state;
	assert_int_equal(setenv("SHARDRUN_PYTHON", PY, 1), 0);
	assert_int_equal(sr_find_python(out, sizeof(out), why, sizeof(why)), 0);
	assert_string_equal(out, PY);
	assert_int_equal(sr_profile_pytest(&p, NULL), 0);
	assert_string_equal(p.python, PY);
	sr_profile_free(&p);

	strcpy(out, "keep");
	assert_int_equal(setenv("SHARDRUN_PYTHON", "/bin/false", 1), 0);
	assert_int_equal(sr_find_python(out, sizeof(out), why, sizeof(why)),
	                 SR_ENOENT);
	assert_string_equal(out, "keep");
	assert_non_null(strstr(why, "SHARDRUN_PYTHON=/bin/false"));
	assert_non_null(strstr(why, "cannot import pytest"));
	assert_int_equal(sr_profile_pytest(&p, NULL), SR_ENOENT);

	assert_int_equal(setenv("SHARDRUN_PYTHON", "/nonexistent/py", 1), 0);
	assert_int_equal(sr_find_python(out, sizeof(out), why, sizeof(why)),
	                 SR_ENOENT);
	assert_non_null(strstr(why, "not an executable"));
	unsetenv("SHARDRUN_PYTHON");
}

/* Without SHARDRUN_PYTHON and nothing on PATH, /usr/bin/python3 is used. */
static void
test_find_python_fallback(void **state)
{
	char *saved = getenv("PATH") ? strdup(getenv("PATH")) : NULL;
	char out[512];
	char why[1024] = "";

	(void) state;
	unsetenv("SHARDRUN_PYTHON");
	assert_int_equal(setenv("PATH", "/nonexistent:relative/bin:", 1), 0);
	assert_int_equal(sr_find_python(out, sizeof(out), why, sizeof(why)), 0);
	assert_string_equal(out, PY);
	if (saved != NULL) {
		setenv("PATH", saved, 1);
		free(saved);
	}
}

static void
test_outcome_names(void **state)
{
	(void) state;
	assert_string_equal(sr_outcome_name(0), "none");
	assert_string_equal(sr_outcome_name(PASSED), "passed");
	assert_string_equal(sr_outcome_name(FAILED), "failed");
	assert_string_equal(sr_outcome_name(NO_TESTS), "no_tests");
	assert_string_equal(sr_outcome_name(SHARDRUN__OUTCOME__CRASHED),
	                    "crashed");
	assert_string_equal(sr_outcome_name(SHARDRUN__OUTCOME__TIMEOUT),
	                    "timeout");
	assert_string_equal(sr_outcome_name(SHARDRUN__OUTCOME__MISSING),
	                    "missing");
	assert_string_equal(sr_outcome_name(ERROR), "error");
	assert_string_equal(sr_outcome_name(SHARDRUN__OUTCOME__REFUSED),
	                    "refused");
	assert_string_equal(sr_outcome_name(9), "unknown");
	assert_string_equal(sr_outcome_name(-1), "unknown");
	assert_string_equal(sr_outcome_name(SR_EXIT_TRANSIENT), "unknown");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_split_plain),
	    cmocka_unit_test(test_split_quotes),
	    cmocka_unit_test(test_split_escapes),
	    cmocka_unit_test(test_split_errors),
	    cmocka_unit_test(test_pytest_argv),
	    cmocka_unit_test(test_argv_refusals),
	    cmocka_unit_test(test_generic_argv),
	    cmocka_unit_test(test_generic_template_errors),
	    cmocka_unit_test(test_exit_maps),
	    cmocka_unit_test(test_exit_map_errors),
	    cmocka_unit_test(test_repro),
	    cmocka_unit_test(test_find_python),
	    cmocka_unit_test(test_find_python_fallback),
	    cmocka_unit_test(test_outcome_names),
	};

	if (sr_init("test") != 0)
		return (1);
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
