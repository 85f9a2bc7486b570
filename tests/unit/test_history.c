/*
 * test_history.c - timing history: load, save, EWMA, estimates, and the
 * refusal of malformed files.
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
	};

	if (sr_init("test") != 0)
		return (1);
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
