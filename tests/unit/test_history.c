/*
 * test_history.c - timing history: load, save, EWMA, estimates, and the
 * refusal of malformed files; per-test times: their ids from JUnit, their
 * EWMA, their place in the file, and the estimates splits use.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sr/err.h"
#include "sr/junit.h"
#include "sr/util.h"

#include "history.h"
#include "shardrun.pb-c.h"

#define PASSED   SHARDRUN__OUTCOME__PASSED
#define FAILED   SHARDRUN__OUTCOME__FAILED
#define NO_TESTS SHARDRUN__OUTCOME__NO_TESTS
#define CRASHED  SHARDRUN__OUTCOME__CRASHED
#define TIMEOUT  SHARDRUN__OUTCOME__TIMEOUT

struct fx {
	char dir[64];
	char file[128];
	struct sr_history h;
};

static int
setup(void **state)
{
	struct fx *fx = calloc(1, sizeof(*fx));

	if (fx == NULL)
		return (-1);
	strcpy(fx->dir, "/tmp/sr-test-history-XXXXXX");
	if (mkdtemp(fx->dir) == NULL)
		return (-1);
	snprintf(fx->file, sizeof(fx->file), "%s/durations.json", fx->dir);
	sr_history_init(&fx->h);
	*state = fx;
	return (0);
}

static int
teardown(void **state)
{
	struct fx *fx = *state;

	sr_history_free(&fx->h);
	(void) sr_rmtree(fx->dir);
	free(fx);
	return (0);
}

static void
write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	assert_int_equal(fputs(text, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
}

static void
add_attempt(struct sr_file *f, int outcome, double dur)
{
	struct sr_attempt a;

	memset(&a, 0, sizeof(a));
	a.outcome = outcome;
	a.duration_s = dur;
	a.exit_code = outcome == PASSED ? 0 : 1;
	assert_int_equal(sr_file_add_attempt(f, &a), 0);
}

static struct sr_file *
add_file(struct sr_suite *s, const char *path, uint32_t ntests)
{
	size_t i;

	assert_int_equal(sr_suite_add(s, path, &i), 0);
	s->files[i].ntests = ntests;
	return (&s->files[i]);
}

/* A passed attempt of one part whose JUnit report is xml (may be NULL). */
static void
add_junit_attempt(struct sr_file *f, int outcome, double dur, uint32_t part,
                  const char *xml)
{
	struct sr_attempt a;

	memset(&a, 0, sizeof(a));
	a.outcome = outcome;
	a.duration_s = dur;
	a.part = part;
	a.junit = (char *) xml;
	a.junit_len = xml != NULL ? strlen(xml) : 0;
	assert_int_equal(sr_file_add_attempt(f, &a), 0);
}

static double
test_time(const struct sr_history *h, const char *path, const char *id)
{
	const struct sr_hist_test *t = sr_history_test_get(h, path, id);

	return (t != NULL ? t->duration_s : -1);
}

static const struct sr_hist_tests *
tests_of(const struct sr_history *h, const char *path)
{
	return (sr_history_tests(h, sr_history_get(h, path)));
}

static void
record_tests(struct sr_history *h, const char *path,
             const struct sr_hist_test *t, size_t n)
{
	assert_int_equal(sr_history_record_tests(h, path, t, n), 0);
}

static void
test_load_missing(void **state)
{
	struct fx *fx = *state;

	assert_int_equal(sr_history_load(&fx->h, fx->file), 0);
	assert_int_equal(fx->h.n, 0);
	assert_null(sr_history_get(&fx->h, "tests/test_a.py"));
}

static void
test_round_trip(void **state)
{
	struct fx *fx = *state;
	struct sr_history back;
	char path[256];
	char *text;

	snprintf(path, sizeof(path), "%s/a/b/.shardrun/durations.json",
	         fx->dir);
	assert_int_equal(sr_history_record(&fx->h, "tests/test_z.py", 2.5), 0);
	assert_int_equal(sr_history_record(&fx->h, "tests/test_a.py", 1.2), 0);
	assert_int_equal(sr_history_record(&fx->h, "tests/test_m.py", 0), 0);
	assert_int_equal(sr_history_record(&fx->h, "tests/test_a.py", 1.2), 0);
	assert_int_equal(sr_history_save(&fx->h, path), 0);

	sr_history_init(&back);
	assert_int_equal(sr_history_load(&back, path), 0);
	assert_int_equal(back.n, 3);
	for (size_t i = 0; i < 3; i++) {
		assert_string_equal(back.e[i].path, fx->h.e[i].path);
		assert_true(fabs(back.e[i].duration_s - fx->h.e[i].duration_s) <
		            1e-9);
		assert_int_equal(back.e[i].runs, fx->h.e[i].runs);
	}
	assert_int_equal(sr_history_get(&back, "tests/test_a.py")->runs, 2);
	sr_history_free(&back);

	/* Pretty and sorted: a before m before z, two-space indent. */
	assert_int_equal(sr_read_file(path, 1 << 20, &text, NULL), 0);
	assert_non_null(strstr(text, "\n  \"files\""));
	assert_true(strstr(text, "test_a.py") < strstr(text, "test_m.py"));
	assert_true(strstr(text, "test_m.py") < strstr(text, "test_z.py"));
	assert_true(strstr(text, "\"files\"") < strstr(text, "\"version\""));
	assert_non_null(strstr(text, "1.2,"));
	free(text);
}

static void
test_ewma(void **state)
{
	struct fx *fx = *state;
	const struct sr_hist_entry *e;

	assert_int_equal(sr_history_record(&fx->h, "t.py", 10.0), 0);
	e = sr_history_get(&fx->h, "t.py");
	assert_non_null(e);
	assert_true(fabs(e->duration_s - 10.0) < 1e-12);
	assert_int_equal(e->runs, 1);
	assert_int_equal(sr_history_record(&fx->h, "t.py", 20.0), 0);
	e = sr_history_get(&fx->h, "t.py");
	assert_true(fabs(e->duration_s - 15.0) < 1e-12);
	assert_int_equal(sr_history_record(&fx->h, "t.py", 5.0), 0);
	e = sr_history_get(&fx->h, "t.py");
	assert_true(fabs(e->duration_s - 10.0) < 1e-12);
	assert_int_equal(e->runs, 3);

	assert_int_equal(sr_history_record(&fx->h, "t.py", -1.0), SR_EINVAL);
	assert_int_equal(sr_history_record(&fx->h, "t.py", NAN), SR_EINVAL);
	assert_int_equal(sr_history_record(&fx->h, "t.py", INFINITY),
	                 SR_EINVAL);
	assert_int_equal(sr_history_get(&fx->h, "t.py")->runs, 3);
}

static void
test_sorted_inserts(void **state)
{
	struct fx *fx = *state;
	const char *paths[] = {"m", "c", "x", "a", "d", "b", "z", "y"};
	char name[16];

	for (size_t i = 0; i < 200; i++) {
		snprintf(name, sizeof(name), "%s%zu", paths[i % 8], i * 7 % 13);
		assert_int_equal(sr_history_record(&fx->h, name, 1.0), 0);
	}
	for (size_t i = 1; i < fx->h.n; i++)
		assert_true(strcmp(fx->h.e[i - 1].path, fx->h.e[i].path) < 0);
	assert_non_null(sr_history_get(&fx->h, "z6"));
}

/* Only a first attempt that passed (or found no tests) is recorded. */
static void
test_update_first_pass_only(void **state)
{
	struct fx *fx = *state;
	struct sr_suite s;

	sr_suite_init(&s);
	add_attempt(add_file(&s, "pass.py", 0), PASSED, 2.0);
	add_attempt(add_file(&s, "notests.py", 0), NO_TESTS, 0.5);
	add_attempt(add_file(&s, "timeout.py", 0), TIMEOUT, 300.0);
	add_attempt(add_file(&s, "flaky.py", 0), FAILED, 1.0);
	add_attempt(&s.files[3], PASSED, 3.0);
	add_attempt(add_file(&s, "crash.py", 0), CRASHED, 1.0);
	add_attempt(&s.files[4], PASSED, 4.0);
	add_file(&s, "never.py", 0);
	add_attempt(add_file(&s, "known.py", 0), PASSED, 6.0);
	assert_int_equal(sr_history_record(&fx->h, "known.py", 2.0), 0);
	assert_int_equal(sr_history_record(&fx->h, "timeout.py", 5.0), 0);

	assert_int_equal(sr_history_update(&fx->h, &s), 0);
	assert_int_equal(fx->h.n, 4);
	assert_true(fabs(sr_history_get(&fx->h, "pass.py")->duration_s - 2.0) <
	            1e-12);
	assert_non_null(sr_history_get(&fx->h, "notests.py"));
	assert_null(sr_history_get(&fx->h, "flaky.py"));
	assert_null(sr_history_get(&fx->h, "crash.py"));
	assert_null(sr_history_get(&fx->h, "never.py"));
	/* The hang did not raise its own estimate. */
	assert_true(fabs(sr_history_get(&fx->h, "timeout.py")->duration_s -
	                 5.0) < 1e-12);
	assert_int_equal(sr_history_get(&fx->h, "timeout.py")->runs, 1);
	assert_true(fabs(sr_history_get(&fx->h, "known.py")->duration_s - 4.0) <
	            1e-12);
	assert_int_equal(sr_history_get(&fx->h, "known.py")->runs, 2);
	sr_suite_free(&s);
}

static void
test_estimates(void **state)
{
	struct fx *fx = *state;
	struct sr_suite s;

	assert_int_equal(sr_history_record(&fx->h, "a.py", 10.0), 0);
	assert_int_equal(sr_history_record(&fx->h, "b.py", 20.0), 0);
	assert_int_equal(sr_history_record(&fx->h, "gone.py", 900.0), 0);
	sr_suite_init(&s);
	add_file(&s, "a.py", 5);
	add_file(&s, "b.py", 15);
	add_file(&s, "c.py", 4); /* 4 tests x (30 s / 20 tests) */
	add_file(&s, "d.py", 0); /* mean of a and b */
	sr_history_estimate(&fx->h, &s);
	assert_true(s.files[0].est_known && s.files[1].est_known);
	assert_false(s.files[2].est_known || s.files[3].est_known);
	assert_true(fabs(s.files[0].est_s - 10.0) < 1e-12);
	assert_true(fabs(s.files[1].est_s - 20.0) < 1e-12);
	assert_true(fabs(s.files[2].est_s - 6.0) < 1e-12);
	assert_true(fabs(s.files[3].est_s - 15.0) < 1e-12);
	sr_suite_free(&s);

	/* Known files without test counts: the mean, even with ntests. */
	sr_suite_init(&s);
	add_file(&s, "a.py", 0);
	add_file(&s, "e.py", 7);
	sr_history_estimate(&fx->h, &s);
	assert_true(fabs(s.files[1].est_s - 10.0) < 1e-12);
	sr_suite_free(&s);

	/* Nothing known in this suite: the default. */
	sr_suite_init(&s);
	add_file(&s, "x.py", 3);
	add_file(&s, "y.py", 0);
	sr_history_estimate(&fx->h, &s);
	assert_false(s.files[0].est_known);
	assert_true(fabs(s.files[0].est_s - SR_DEFAULT_ESTIMATE_S) < 1e-12);
	assert_true(fabs(s.files[1].est_s - SR_DEFAULT_ESTIMATE_S) < 1e-12);
	sr_suite_free(&s);
}

/* Load with stderr captured; returns the code, *log what was logged. */
static int
load_logged(struct sr_history *h, const char *path, char *log, size_t sz)
{
	FILE *cap = tmpfile();
	int saved = dup(STDERR_FILENO);
	size_t n;
	int rv;

	assert_non_null(cap);
	assert_true(saved >= 0);
	assert_true(dup2(fileno(cap), STDERR_FILENO) >= 0);
	rv = sr_history_load(h, path);
	assert_true(dup2(saved, STDERR_FILENO) >= 0);
	close(saved);
	rewind(cap);
	n = fread(log, 1, sz - 1, cap);
	log[n] = '\0';
	fclose(cap);
	return (rv);
}

static void
test_malformed(void **state)
{
	static const char *const bad[] = {
	    "not json {",
	    "",
	    "[]",
	    "{\"version\": 1}",
	    "{\"version\": 1, \"files\": []}",
	    "{\"version\": \"1\", \"files\": {}}",
	    "{\"version\": 2, \"files\": {}}",
	    "{\"version\": 1, \"files\": {\"a.py\": 3}}",
	    "{\"version\": 1, \"files\": {\"a.py\": {\"runs\": 1}}}",
	    "{\"version\": 1, \"files\": {\"a.py\": "
	    "{\"duration_s\": \"2\", \"runs\": 1}}}",
	    "{\"version\": 1, \"files\": {\"a.py\": "
	    "{\"duration_s\": -0.5, \"runs\": 1}}}",
	    "{\"version\": 1, \"files\": {\"a.py\": "
	    "{\"duration_s\": 1.5, \"runs\": -1}}}",
	    "{\"version\": 1, \"files\": {\"a.py\": "
	    "{\"duration_s\": 1.5, \"runs\": 1.5}}}",
	    "{\"version\": 1, \"files\": {\"a.py\": "
	    "{\"duration_s\": 1e999, \"runs\": 1}}}",
	    "{\"version\": 1, \"files\": {\"a.py\": "
	    "{\"duration_s\": NaN, \"runs\": 1}}}",
	    "{\"version\": 1, \"files\": {\"a.py\": "
	    "{\"duration_s\": 1, \"runs\": 99999999999}}}",
	    "{\"version\": 1, \"files\": {\"a.py\": "
	    "{\"duration_s\": 1, \"runs\": 1}, \"a.py\": "
	    "{\"duration_s\": 2, \"runs\": 1}}}",
	    "{\"version\": 1, \"files\": {\"ok.py\": "
	    "{\"duration_s\": 1, \"runs\": 1}, \"b.py\": null}}",
	    "{\"version\": 1, \"files\": {\"a.py\": "
	    "{\"duration_s\": 1, \"runs\": 1, \"tests\": []}}}",
	    "{\"version\": 1, \"files\": {\"a.py\": "
	    "{\"duration_s\": 1, \"runs\": 1, \"tests\": {\"t\": -1}}}}",
	    "{\"version\": 1, \"files\": {\"a.py\": "
	    "{\"duration_s\": 1, \"runs\": 1, \"tests\": {\"t\": \"1\"}}}}",
	    "{\"version\": 1, \"files\": {\"a.py\": "
	    "{\"duration_s\": 1, \"runs\": 1, \"tests\": "
	    "{\"t\": 1, \"u\": null}}}}",
	};
	struct fx *fx = *state;
	char log[4096];

	assert_int_equal(sr_history_record(&fx->h, "kept.py", 7.0), 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		write_text(fx->file, bad[i]);
		assert_int_equal(
		    load_logged(&fx->h, fx->file, log, sizeof(log)), SR_EINVAL);
		/* The reason names the file; the history is untouched. */
		assert_non_null(strstr(log, fx->file));
		assert_int_equal(fx->h.n, 1);
		assert_string_equal(fx->h.e[0].path, "kept.py");
	}

	/* A good file after all that still loads, replacing the table. */
	write_text(fx->file, "{\"version\": 1, \"files\": {\"b.py\": "
	                     "{\"duration_s\": 3, \"runs\": 4}}}");
	assert_int_equal(sr_history_load(&fx->h, fx->file), 0);
	assert_int_equal(fx->h.n, 1);
	assert_int_equal(sr_history_get(&fx->h, "b.py")->runs, 4);
	assert_true(fabs(sr_history_get(&fx->h, "b.py")->duration_s - 3.0) <
	            1e-12);
}

static void
test_atomic_save(void **state)
{
	struct fx *fx = *state;
	struct dirent *de;
	DIR *d;
	int nfiles = 0;

	write_text(fx->file, "old content");
	assert_int_equal(sr_history_record(&fx->h, "a.py", 1.0), 0);
	assert_int_equal(sr_history_save(&fx->h, fx->file), 0);
	assert_int_equal(sr_history_record(&fx->h, "b.py", 2.0), 0);
	assert_int_equal(sr_history_save(&fx->h, fx->file), 0);

	assert_non_null(d = opendir(fx->dir));
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		assert_string_equal(de->d_name, "durations.json");
		nfiles++;
	}
	closedir(d);
	assert_int_equal(nfiles, 1);

	sr_history_free(&fx->h);
	assert_int_equal(sr_history_load(&fx->h, fx->file), 0);
	assert_int_equal(fx->h.n, 2);
}

static void
test_save_unwritable(void **state)
{
	struct fx *fx = *state;
	char path[256];

	/* The parent is a regular file: no directory can be made there. */
	write_text(fx->file, "x");
	snprintf(path, sizeof(path), "%s/sub/durations.json", fx->file);
	assert_int_equal(sr_history_record(&fx->h, "a.py", 1.0), 0);
	assert_int_not_equal(sr_history_save(&fx->h, path), 0);
}

/* Per-test times cost an entry nothing: the slot fits its padding. */
static void
test_entry_size(void **state)
{
	(void) state;
	assert_true(sizeof(struct sr_hist_entry) <=
	            sizeof(char *) + sizeof(double) + 2 * sizeof(uint32_t));
}

static size_t
count_of(const char *text, const char *needle)
{
	size_t n = 0;

	for (const char *p = strstr(text, needle); p != NULL;
	     p = strstr(p + 1, needle))
		n++;
	return (n);
}

static void
test_tests_round_trip(void **state)
{
	struct fx *fx = *state;
	const struct sr_hist_test t[] = {{"TestC::test_y[a.b]", 4.5},
	                                 {"test_f", 0.25},
	                                 {"TestC::TestD::test_n", 0}};
	struct sr_history back;
	const struct sr_hist_tests *tab;
	char *text;

	assert_int_equal(sr_history_record(&fx->h, "tests/test_x.py", 5.0), 0);
	assert_int_equal(sr_history_record(&fx->h, "tests/test_y.py", 1.0), 0);
	record_tests(&fx->h, "tests/test_x.py", t, 3);
	assert_int_equal(sr_history_save(&fx->h, fx->file), 0);

	sr_history_init(&back);
	assert_int_equal(sr_history_load(&back, fx->file), 0);
	tab = tests_of(&back, "tests/test_x.py");
	assert_non_null(tab);
	assert_int_equal(tab->n, 3);
	for (size_t i = 1; i < tab->n; i++)
		assert_true(strcmp(tab->v[i - 1].id, tab->v[i].id) < 0);
	assert_true(
	    fabs(test_time(&back, "tests/test_x.py", "TestC::test_y[a.b]") -
	         4.5) < 1e-9);
	assert_true(fabs(test_time(&back, "tests/test_x.py", "test_f") - 0.25) <
	            1e-9);
	assert_true(
	    test_time(&back, "tests/test_x.py", "TestC::TestD::test_n") == 0);
	assert_true(test_time(&back, "tests/test_x.py", "test_gone") < 0);
	/* A file without per-test times has no table, and none is written. */
	assert_null(tests_of(&back, "tests/test_y.py"));
	sr_history_free(&back);

	assert_int_equal(sr_read_file(fx->file, 1 << 20, &text, NULL), 0);
	assert_int_equal(count_of(text, "\"tests\": {"), 1);
	assert_non_null(strstr(text, "\"TestC::test_y[a.b]\": 4.5"));
	free(text);
}

/* A history written before per-test times loads, and so does one with
 * them for a reader that ignores them. */
static void
test_old_format(void **state)
{
	struct fx *fx = *state;

	write_text(fx->file,
	           "{\"version\": 1, \"files\": {"
	           "\"a.py\": {\"duration_s\": 3, \"runs\": 2},"
	           "\"b.py\": {\"duration_s\": 4, \"runs\": 1, \"tests\": {}},"
	           "\"c.py\": {\"duration_s\": 5, \"runs\": 1, "
	           "\"tests\": {\"test_1\": 1.5, \"T::test_2\": 3}}}}");
	assert_int_equal(sr_history_load(&fx->h, fx->file), 0);
	assert_int_equal(fx->h.n, 3);
	assert_null(tests_of(&fx->h, "a.py"));
	assert_int_equal(sr_history_get(&fx->h, "a.py")->runs, 2);
	assert_null(tests_of(&fx->h, "b.py"));
	assert_int_equal(tests_of(&fx->h, "c.py")->n, 2);
	assert_true(fabs(test_time(&fx->h, "c.py", "T::test_2") - 3.0) < 1e-12);
}

/* Per-test times are smoothed like files; a test no longer reported is
 * dropped; a repeated id counts once with its times summed. */
static void
test_tests_ewma(void **state)
{
	struct fx *fx = *state;
	const struct sr_hist_test one[] = {{"a", 2.0}, {"b", 4.0}};
	const struct sr_hist_test two[] = {{"c", 1.0}, {"a", 4.0}, {"c", 0.5}};
	const struct sr_hist_test bad[] = {{"a", 1.0}, {"b", -1.0}};

	assert_int_equal(sr_history_record_tests(&fx->h, "t.py", one, 2),
	                 SR_ENOENT);
	assert_int_equal(sr_history_record(&fx->h, "t.py", 10.0), 0);
	record_tests(&fx->h, "t.py", one, 2);
	record_tests(&fx->h, "t.py", two, 3);
	assert_int_equal(tests_of(&fx->h, "t.py")->n, 2);
	assert_true(fabs(test_time(&fx->h, "t.py", "a") - 3.0) < 1e-12);
	assert_true(fabs(test_time(&fx->h, "t.py", "c") - 1.5) < 1e-12);
	assert_true(test_time(&fx->h, "t.py", "b") < 0);

	/* Nothing, or something invalid: the table stays as it was. */
	record_tests(&fx->h, "t.py", NULL, 0);
	assert_int_equal(sr_history_record_tests(&fx->h, "t.py", bad, 2),
	                 SR_EINVAL);
	assert_int_equal(tests_of(&fx->h, "t.py")->n, 2);
	assert_true(fabs(test_time(&fx->h, "t.py", "a") - 3.0) < 1e-12);
	/* Entries inserted before it move it; its tests move along. */
	assert_int_equal(sr_history_record(&fx->h, "a.py", 10.0), 0);
	assert_int_equal(sr_history_record(&fx->h, "s.py", 10.0), 0);
	assert_null(tests_of(&fx->h, "a.py"));
	assert_int_equal(tests_of(&fx->h, "t.py")->n, 2);
	assert_true(fabs(test_time(&fx->h, "t.py", "c") - 1.5) < 1e-12);
	/* The file's own EWMA is untouched by its tests'. */
	assert_true(fabs(sr_history_get(&fx->h, "t.py")->duration_s - 10.0) <
	            1e-12);
}

static void
expect_id(const char *path, const char *cls, const char *name, const char *want)
{
	char *id = NULL;

	assert_int_equal(sr_junit_test_id(path, cls, name, &id), 0);
	assert_string_equal(id, want);
	free(id);
}

static void
expect_no_id(const char *path, const char *cls, const char *name)
{
	char *id = NULL;

	assert_int_equal(sr_junit_test_id(path, cls, name, &id), SR_ENOENT);
	assert_null(id);
}

/* JUnit classname and name to node ids, as pytest 7 writes them. */
static void
test_junit_ids(void **state)
{
	(void) state;
	expect_id("tests/test_x.py", "tests.test_x", "test_f", "test_f");
	expect_id("tests/test_x.py", "tests.test_x.TestC", "test_y[a.b]",
	          "TestC::test_y[a.b]");
	expect_id("tests/test_x.py", "tests.test_x.TestC", "test_y[x::y]",
	          "TestC::test_y[x::y]");
	expect_id("tests/test_x.py", "tests.test_x.TestC.TestInner", "test_n",
	          "TestC::TestInner::test_n");
	expect_id("test_top.py", "test_top", "test_a", "test_a");
	/* A directory with a dot in its name. */
	expect_id("tests/sub.d/test_x.py", "tests.sub.d.test_x.U", "test_u",
	          "U::test_u");
	/* The rootdir below the workspace: the classname starts lower. */
	expect_id("tests/unit/test_x.py", "unit.test_x.TestC", "test_a",
	          "TestC::test_a");
	expect_id("tests/unit/test_x.py", "test_x", "test_a", "test_a");
	/* --junitprefix. */
	expect_id("tests/test_x.py", "pre.tests.test_x.TestC", "test_a",
	          "TestC::test_a");
	/* A package named like its module: the longest match wins. */
	expect_id("test_x/test_x.py", "test_x.test_x.TestC", "test_a",
	          "TestC::test_a");
	/* Another file's testcases, or one without a name. */
	expect_no_id("tests/test_x.py", "tests.test_xy.TestC", "test_a");
	expect_no_id("tests/test_x.py", "other", "test_a");
	expect_no_id("tests/test_x.py", "tests.test_x", "");
}

#define JUNIT_HEAD                                                             \
	"<?xml version=\"1.0\" encoding=\"utf-8\"?><testsuites>"               \
	"<testsuite name=\"pytest\" tests=\"3\">"
#define JUNIT_TAIL "</testsuite></testsuites>"

static const char junit_whole[] = JUNIT_HEAD
    "<testcase classname=\"tests.test_big.TestC\" name=\"test_slow\" "
    "time=\"4.000\"/>"
    "<testcase classname=\"tests.test_big\" name=\"test_fast[1]\" "
    "time=\"0.500\"/>"
    "<testcase classname=\"tests.test_big\" name=\"test_skip\" "
    "time=\"0.000\"><skipped message=\"no\"/></testcase>"
    "<testcase classname=\"tests.test_big\" name=\"test_notime\"/>" JUNIT_TAIL;
static const char junit_part0[] =
    JUNIT_HEAD "<testcase classname=\"tests.test_split\" name=\"test_a\" "
               "time=\"3.0\"/>" JUNIT_TAIL;
static const char junit_part1[] =
    JUNIT_HEAD "<testcase classname=\"tests.test_split\" name=\"test_b\" "
               "time=\"1.0\"/>"
               "<testcase classname=\"tests.test_split\" name=\"test_c\" "
               "time=\"1.0\"/>" JUNIT_TAIL;

static const char junit_part1_slow[] =
    JUNIT_HEAD "<testcase classname=\"tests.test_split\" name=\"test_b\" "
               "time=\"5.0\"/>" JUNIT_TAIL;

/* The per-test times of a finished run come from the JUnit reports of the
 * attempts that count: the first of each part, all passed. */
static void
test_update_tests_from_junit(void **state)
{
	struct fx *fx = *state;
	struct sr_file *f;
	struct sr_suite s;

	sr_suite_init(&s);
	add_junit_attempt(add_file(&s, "tests/test_big.py", 3), PASSED, 5.0, 0,
	                  junit_whole);
	f = add_file(&s, "tests/test_split.py", 3);
	assert_int_equal(sr_file_split(f, 2), 0);
	add_junit_attempt(f, PASSED, 3.0, 0, junit_part0);
	add_junit_attempt(f, PASSED, 2.0, 1, junit_part1);
	/* Too short ever to be split: no table. */
	add_junit_attempt(add_file(&s, "tests/test_short.py", 1), PASSED, 1.0,
	                  0, junit_whole);
	/* Failed first: nothing recorded at all. */
	f = add_file(&s, "tests/test_flaky.py", 1);
	add_junit_attempt(f, FAILED, 5.0, 0, junit_whole);
	add_junit_attempt(f, PASSED, 5.0, 0, junit_whole);
	/* A report naming another file's tests only. */
	add_junit_attempt(add_file(&s, "tests/test_other.py", 1), PASSED, 5.0,
	                  0, junit_whole);

	assert_int_equal(sr_history_update(&fx->h, &s), 0);
	assert_int_equal(tests_of(&fx->h, "tests/test_big.py")->n, 3);
	assert_true(
	    fabs(test_time(&fx->h, "tests/test_big.py", "TestC::test_slow") -
	         4.0) < 1e-12);
	assert_true(
	    fabs(test_time(&fx->h, "tests/test_big.py", "test_fast[1]") - 0.5) <
	    1e-12);
	assert_true(test_time(&fx->h, "tests/test_big.py", "test_skip") == 0);
	assert_true(test_time(&fx->h, "tests/test_big.py", "test_notime") < 0);
	/* Both parts' reports. */
	assert_int_equal(tests_of(&fx->h, "tests/test_split.py")->n, 3);
	assert_true(fabs(test_time(&fx->h, "tests/test_split.py", "test_a") -
	                 3.0) < 1e-12);
	assert_true(fabs(test_time(&fx->h, "tests/test_split.py", "test_c") -
	                 1.0) < 1e-12);
	assert_null(tests_of(&fx->h, "tests/test_short.py"));
	assert_null(sr_history_get(&fx->h, "tests/test_flaky.py"));
	assert_null(tests_of(&fx->h, "tests/test_other.py"));
	sr_suite_free(&s);
}

/* A later run whose report is missing for one part keeps the old times;
 * one that became too short to split loses them. */
static void
test_update_tests_kept_or_dropped(void **state)
{
	struct fx *fx = *state;
	struct sr_file *f;
	struct sr_suite s;

	sr_suite_init(&s);
	f = add_file(&s, "tests/test_split.py", 3);
	assert_int_equal(sr_file_split(f, 2), 0);
	add_junit_attempt(f, PASSED, 3.0, 0, junit_part0);
	add_junit_attempt(f, PASSED, 2.0, 1, junit_part1);
	assert_int_equal(sr_history_update(&fx->h, &s), 0);
	sr_suite_free(&s);

	sr_suite_init(&s);
	f = add_file(&s, "tests/test_split.py", 3);
	assert_int_equal(sr_file_split(f, 2), 0);
	add_junit_attempt(f, PASSED, 3.0, 0, junit_part1_slow);
	add_junit_attempt(f, PASSED, 2.0, 1, NULL);
	assert_int_equal(sr_history_update(&fx->h, &s), 0);
	assert_int_equal(tests_of(&fx->h, "tests/test_split.py")->n, 3);
	assert_true(fabs(test_time(&fx->h, "tests/test_split.py", "test_b") -
	                 1.0) < 1e-12);
	sr_suite_free(&s);

	/* 5 s, then 0.1 s twice: EWMA 1.3 s, below two minimal parts. */
	for (int i = 0; i < 2; i++) {
		sr_suite_init(&s);
		add_junit_attempt(add_file(&s, "tests/test_split.py", 3),
		                  PASSED, 0.1, 0, junit_part1);
		assert_int_equal(sr_history_update(&fx->h, &s), 0);
		sr_suite_free(&s);
	}
	assert_null(tests_of(&fx->h, "tests/test_split.py"));
}

/* Estimates for a split: known times, else the file's known mean. */
static void
test_test_estimates(void **state)
{
	struct fx *fx = *state;
	const struct sr_hist_test t[] = {{"TestC::test_a", 6.0},
	                                 {"test_b[1]", 2.0}};
	char *ids[] = {"tests/t.py::TestC::test_a", "tests/t.py::test_b[1]",
	               "tests/t.py::test_new", "tests/t.py::test_b[2]"};
	double est[4];

	assert_int_equal(sr_history_record(&fx->h, "tests/t.py", 9.0), 0);
	record_tests(&fx->h, "tests/t.py", t, 2);
	assert_int_equal(sr_history_test_est(&fx->h, "tests/t.py", ids, 4, est),
	                 2);
	assert_true(fabs(est[0] - 6.0) < 1e-12);
	assert_true(fabs(est[1] - 2.0) < 1e-12);
	assert_true(fabs(est[2] - 4.0) < 1e-12);
	assert_true(fabs(est[3] - 4.0) < 1e-12);

	/* Nothing known: all 0, so the split goes by count. */
	assert_int_equal(sr_history_test_est(&fx->h, "tests/u.py", ids, 4, est),
	                 0);
	assert_true(est[0] == 0 && est[3] == 0);
	assert_int_equal(sr_history_test_est(NULL, "tests/t.py", ids, 4, est),
	                 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_load_missing, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_ewma, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_sorted_inserts, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_update_first_pass_only, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_estimates, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_malformed, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_atomic_save, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_save_unwritable, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_entry_size, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_tests_round_trip, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_old_format, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_tests_ewma, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_junit_ids, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_update_tests_from_junit, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_update_tests_kept_or_dropped,
	                                    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_test_estimates, setup,
	                                    teardown),
	};

	if (sr_init("test") != 0)
		return (1);
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
