/*
 * test_report.c - results JSON, merged JUnit XML and the human summary,
 * over a suite holding one file of every kind.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <regex.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <libxml/parser.h>
#include <libxml/tree.h>

#include "sr/err.h"
#include "sr/profile.h"
#include "sr/util.h"

#include "report.h"
#include "shardrun.pb-c.h"

#define PASSED  SHARDRUN__OUTCOME__PASSED
#define FAILED  SHARDRUN__OUTCOME__FAILED
#define CRASHED SHARDRUN__OUTCOME__CRASHED
#define TIMEOUT SHARDRUN__OUTCOME__TIMEOUT
#define MISSING SHARDRUN__OUTCOME__MISSING

/* What pytest --junitxml writes (pytest 7, xunit2). */
static const char junit_a[] =
    "<?xml version=\"1.0\" encoding=\"utf-8\"?><testsuites><testsuite "
    "name=\"pytest\" errors=\"0\" failures=\"0\" skipped=\"1\" tests=\"3\" "
    "time=\"2.000\" timestamp=\"2024-05-01T10:00:00.000000\" "
    "hostname=\"ci-1\"><testcase classname=\"tests.test_a\" "
    "name=\"test_one\" time=\"0.001\" /><testcase classname=\"tests.test_a\" "
    "name=\"test_two[caf\xc3\xa9]\" time=\"0.002\" /><testcase "
    "classname=\"tests.test_a\" name=\"test_skip\" time=\"0.000\"><skipped "
    "type=\"pytest.skip\" message=\"not here\">tests/test_a.py:9: not "
    "here</skipped></testcase></testsuite></testsuites>";

static const char junit_b[] =
    "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<testsuites>\n  <testsuite "
    "name=\"pytest\" errors=\"0\" failures=\"1\" skipped=\"0\" tests=\"2\" "
    "time=\"1.250\">\n    <properties><property name=\"ci\" "
    "value=\"yes\"/></properties>\n    <testcase "
    "classname=\"tests.sub.test_b\" name=\"test_ok\" time=\"0.1\"/>\n    "
    "<testcase classname=\"tests.sub.test_b\" name=\"test_bad\" "
    "time=\"0.2\"><failure message=\"assert 1 == 2\">def test_bad():\n"
    "&gt;       assert 1 == 2\nE       assert 1 == 2\n\n"
    "tests/sub/test_b.py:4: AssertionError</failure><system-out>out "
    "&amp; about</system-out></testcase>\n  </testsuite>\n</testsuites>\n";

/* The flaky file: the first run fails test_x, the rerun passes. */
static const char junit_e1[] =
    "<testsuites><testsuite name=\"pytest\" errors=\"0\" failures=\"1\" "
    "skipped=\"0\" tests=\"2\" time=\"0.4\"><testcase "
    "classname=\"tests.test_flaky\" name=\"test_x\" time=\"0.3\"><failure "
    "message=\"first failure\">Traceback flaky &lt;here&gt;</failure>"
    "</testcase><testcase classname=\"tests.test_flaky\" name=\"test_y\" "
    "time=\"0.1\"/></testsuite></testsuites>";
static const char junit_e2[] =
    "<testsuite name=\"pytest\" errors=\"0\" failures=\"0\" skipped=\"0\" "
    "tests=\"2\" time=\"0.5\"><testcase classname=\"tests.test_flaky\" "
    "name=\"test_x\" time=\"0.4\"><system-out>x</system-out></testcase>"
    "<testcase classname=\"tests.test_flaky\" name=\"test_y\" "
    "time=\"0.1\"/></testsuite>";

static const char junit_bad[] = "<testsuites><testsuite name=\"pytest\" "
                                "tests=\"1\"><testcase name=\"t\"></testsu";

static char crash_tail[2048];

static void
attempt(struct sr_suite *s, size_t i, int outcome, double start, double dur,
        const char *junit, const char *tail)
{
	struct sr_attempt a;

	memset(&a, 0, sizeof(a));
	a.outcome = outcome;
	a.tries = 1;
	a.start_s = start;
	a.duration_s = dur;
	a.exit_code = outcome == PASSED ? 0 : outcome == FAILED ? 1 : -1;
	a.signal = outcome == CRASHED ? SIGSEGV : 0;
	a.agent = "ci-1";
	a.slot = (int) i % 3;
	a.tail = (char *) tail;
	a.junit = (char *) junit;
	a.junit_len = junit != NULL ? strlen(junit) : 0;
	assert_int_equal(sr_file_add_attempt(&s->files[i], &a), 0);
}

static size_t
add(struct sr_suite *s, const char *path, int final, double est)
{
	size_t i;

	assert_int_equal(sr_suite_add(s, path, &i), 0);
	s->files[i].final = final;
	s->files[i].est_s = est;
	s->files[i].ntests = 2;
	return (i);
}

/*
 * A: passed. B: failed with a report. C: crashed twice (SIGSEGV), a long
 * tail with bytes XML cannot carry. D: failed, report malformed. E: flaky.
 * F: timeout. G: missing (error). H, only when interrupted: never ran.
 */
static void
make_suite(struct sr_suite *s, int interrupted)
{
	size_t n = 0, i;

	n += snprintf(crash_tail + n, sizeof(crash_tail) - n,
	              "\x1b[31mred\x1b[0m"
	              " \x01\xff<&>\n");
	for (int l = 1; l <= 30; l++)
		n += snprintf(crash_tail + n, sizeof(crash_tail) - n,
		              "line %d\n", l);
	sr_suite_init(s);
	i = add(s, "tests/test_a.py", SR_FINAL_PASSED, 2.2);
	attempt(s, i, PASSED, 0.5, 2.0, junit_a, "3 passed");
	i = add(s, "tests/sub/test_b.py", SR_FINAL_FAILED, 1.0);
	attempt(s, i, FAILED, 0.0, 1.3, junit_b, "1 failed, 1 passed");
	i = add(s, "tests/test_crash.py", SR_FINAL_CRASHED, 1.0);
	attempt(s, i, CRASHED, 0.0, 0.2, NULL, "first crash");
	attempt(s, i, CRASHED, 2.5, 0.3, NULL, crash_tail);
	s->files[i].restarts = 1;
	i = add(s, "tests/test_bad_xml.py", SR_FINAL_FAILED, 1.0);
	attempt(s, i, FAILED, 1.0, 0.4, junit_bad, "boom\n");
	i = add(s, "tests/test_flaky.py", SR_FINAL_FLAKY, 1.0);
	attempt(s, i, FAILED, 0.0, 0.4, junit_e1, "1 failed");
	attempt(s, i, PASSED, 3.0, 0.5, junit_e2, "2 passed");
	s->files[i].serial = true;
	i = add(s, "tests/test_timeout.py", SR_FINAL_TIMEOUT, 5.0);
	attempt(s, i, TIMEOUT, 0.0, 30.0, NULL, "sleeping...\n");
	s->files[i].exclusive = true;
	i = add(s, "tests/test_gone.py", SR_FINAL_ERROR, 1.0);
	attempt(s, i, MISSING, 0.0, 0.01, NULL, NULL);
	s->files[i].att[0].message =
	    strdup("file not found: tests/test_gone.py");
	if (interrupted)
		add(s, "tests/test_never.py", SR_FINAL_PENDING, 1.0);
}

static void
run_info(struct sr_run_info *ri, int interrupted)
{
	memset(ri, 0, sizeof(*ri));
	strcpy(ri->run_id, "00112233445566778899aabbccddeeff");
	ri->makespan_s = 12.34;
	ri->lower_bound_s = 11.9;
	ri->slots = 4;
	ri->interrupted = interrupted;
}

struct fx {
	char dir[64];
	char path[128];
	struct sr_suite s;
	struct sr_run_info ri;
};

static int
setup(void **state)
{
	struct fx *fx = calloc(1, sizeof(*fx));

	if (fx == NULL)
		return (-1);
	strcpy(fx->dir, "/tmp/sr-test-report-XXXXXX");
	if (mkdtemp(fx->dir) == NULL)
		return (-1);
	*state = fx;
	return (0);
}

static int
teardown(void **state)
{
	struct fx *fx = *state;

	sr_suite_free(&fx->s);
	(void) sr_rmtree(fx->dir);
	free(fx);
	return (0);
}

static void
test_counts(void **state)
{
	struct fx *fx = *state;
	unsigned c[SR_FINAL_COUNT];

	make_suite(&fx->s, 1);
	sr_report_counts(&fx->s, c);
	assert_int_equal(c[SR_FINAL_PENDING], 1);
	assert_int_equal(c[SR_FINAL_PASSED], 1);
	assert_int_equal(c[SR_FINAL_FAILED], 2);
	assert_int_equal(c[SR_FINAL_FLAKY], 1);
	assert_int_equal(c[SR_FINAL_CRASHED], 1);
	assert_int_equal(c[SR_FINAL_TIMEOUT], 1);
	assert_int_equal(c[SR_FINAL_ERROR], 1);
}

static json_t *
file_by_path(json_t *files, const char *path)
{
	size_t i;
	json_t *f;

	json_array_foreach(files, i, f)
	{
		if (strcmp(json_string_value(json_object_get(f, "file")),
		           path) == 0)
			return (f);
	}
	fail_msg("%s not in the results", path);
	return (NULL);
}

/* Every documented key, with its type (null allowed where documented). */
static void
check_file_keys(json_t *f)
{
	static const struct {
		const char *key;
		json_type type;
		int nullable;
	} keys[] = {
	    {"file", JSON_STRING, 0},       {"outcome", JSON_STRING, 0},
	    {"attempts", JSON_INTEGER, 0},  {"duration_s", JSON_REAL, 1},
	    {"start_s", JSON_REAL, 1},      {"end_s", JSON_REAL, 1},
	    {"agent", JSON_STRING, 1},      {"slot", JSON_INTEGER, 1},
	    {"exit_code", JSON_INTEGER, 1}, {"signal", JSON_STRING, 1},
	    {"estimate_s", JSON_REAL, 0},   {"attempt_outcomes", JSON_ARRAY, 0},
	    {"message", JSON_STRING, 1},
	};

	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		json_t *v = json_object_get(f, keys[i].key);

		assert_non_null(v);
		if (keys[i].nullable && json_is_null(v))
			continue;
		assert_int_equal(json_typeof(v), keys[i].type);
	}
	assert_true(json_is_boolean(json_object_get(f, "serial")));
	assert_true(json_is_boolean(json_object_get(f, "exclusive")));
}

static json_t *
load_results(struct fx *fx)
{
	json_error_t err;
	json_t *root;

	snprintf(fx->path, sizeof(fx->path), "%s/out/results.json", fx->dir);
	assert_int_equal(sr_report_json(&fx->s, &fx->ri, fx->path), 0);
	root = json_load_file(fx->path, 0, &err);
	if (root == NULL)
		fail_msg("results JSON does not parse: %s", err.text);
	return (root);
}

static void
test_json(void **state)
{
	static const char *const counts[] = {"passed",  "failed",  "flaky",
	                                     "crashed", "timeout", "error"};
	static const int want[] = {1, 2, 1, 1, 1, 1};
	struct fx *fx = *state;
	json_t *root, *files, *f, *c;

	make_suite(&fx->s, 0);
	run_info(&fx->ri, 0);
	root = load_results(fx);
	assert_string_equal(json_string_value(json_object_get(root, "run_id")),
	                    fx->ri.run_id);
	assert_true(json_is_real(json_object_get(root, "makespan_s")));
	assert_true(json_is_real(json_object_get(root, "lower_bound_s")));
	assert_int_equal(json_integer_value(json_object_get(root, "slots")), 4);
	c = json_object_get(root, "counts");
	assert_true(json_is_object(c));
	for (size_t i = 0; i < 6; i++)
		assert_int_equal(
		    json_integer_value(json_object_get(c, counts[i])), want[i]);
	assert_null(json_object_get(c, "pending"));
	files = json_object_get(root, "files");
	assert_int_equal(json_array_size(files), fx->s.n);
	for (size_t i = 0; i < json_array_size(files); i++)
		check_file_keys(json_array_get(files, i));

	f = file_by_path(files, "tests/test_crash.py");
	assert_string_equal(json_string_value(json_object_get(f, "outcome")),
	                    "crashed");
	assert_string_equal(json_string_value(json_object_get(f, "signal")),
	                    "SEGV");
	assert_true(json_is_null(json_object_get(f, "exit_code")));
	assert_int_equal(json_integer_value(json_object_get(f, "attempts")), 2);
	assert_true(fabs(json_real_value(json_object_get(f, "start_s")) - 2.5) <
	            1e-9);
	assert_true(fabs(json_real_value(json_object_get(f, "end_s")) - 2.8) <
	            1e-9);

	f = file_by_path(files, "tests/test_a.py");
	assert_int_equal(json_integer_value(json_object_get(f, "exit_code")),
	                 0);
	assert_true(json_is_null(json_object_get(f, "signal")));
	assert_true(json_is_null(json_object_get(f, "message")));
	assert_string_equal(json_string_value(json_object_get(f, "agent")),
	                    "ci-1");

	f = file_by_path(files, "tests/test_flaky.py");
	assert_string_equal(json_string_value(json_object_get(f, "outcome")),
	                    "flaky");
	assert_true(json_is_true(json_object_get(f, "serial")));
	c = json_object_get(f, "attempt_outcomes");
	assert_int_equal(json_array_size(c), 2);
	assert_string_equal(json_string_value(json_array_get(c, 0)), "failed");
	assert_string_equal(json_string_value(json_array_get(c, 1)), "passed");

	f = file_by_path(files, "tests/test_gone.py");
	assert_string_equal(json_string_value(json_object_get(f, "message")),
	                    "file not found: tests/test_gone.py");
	json_decref(root);
}

/* Interrupted: the unrun file is "pending" with null timings. */
static void
test_json_interrupted(void **state)
{
	struct fx *fx = *state;
	json_t *root, *f;

	make_suite(&fx->s, 1);
	run_info(&fx->ri, 1);
	/* Bytes that are not UTF-8 must not break the JSON. */
	free(fx->s.files[0].att[0].agent);
	fx->s.files[0].att[0].agent = strdup("bad\xff\xfe name");
	root = load_results(fx);
	assert_int_equal(json_integer_value(json_object_get(
	                     json_object_get(root, "counts"), "pending")),
	                 1);
	f = file_by_path(json_object_get(root, "files"), "tests/test_never.py");
	check_file_keys(f);
	assert_string_equal(json_string_value(json_object_get(f, "outcome")),
	                    "pending");
	assert_int_equal(json_integer_value(json_object_get(f, "attempts")), 0);
	assert_true(json_is_null(json_object_get(f, "start_s")));
	assert_true(json_is_null(json_object_get(f, "end_s")));
	assert_true(json_is_null(json_object_get(f, "duration_s")));
	assert_true(json_is_null(json_object_get(f, "exit_code")));
	assert_true(json_is_null(json_object_get(f, "agent")));
	assert_true(json_array_size(json_object_get(f, "attempt_outcomes")) ==
	            0);
	f = file_by_path(json_object_get(root, "files"), "tests/test_a.py");
	assert_non_null(
	    strstr(json_string_value(json_object_get(f, "agent")), " name"));
	json_decref(root);
}

static xmlDocPtr
load_junit(struct fx *fx)
{
	xmlDocPtr doc;

	snprintf(fx->path, sizeof(fx->path), "%s/junit/merged.xml", fx->dir);
	assert_int_equal(sr_report_junit(&fx->s, &fx->ri, fx->path), 0);
	doc = xmlReadFile(fx->path, NULL, XML_PARSE_NONET);
	assert_non_null(doc);
	return (doc);
}

static char *
prop(xmlNodePtr n, const char *name)
{
	static char buf[4096];
	xmlChar *v = xmlGetProp(n, BAD_CAST name);

	snprintf(buf, sizeof(buf), "%s", v != NULL ? (char *) v : "(none)");
	xmlFree(v);
	return (buf);
}

static int
is(xmlNodePtr n, const char *name)
{
	return (n->type == XML_ELEMENT_NODE &&
	        strcmp((const char *) n->name, name) == 0);
}

static xmlNodePtr
child(xmlNodePtr n, const char *name)
{
	for (xmlNodePtr c = n->children; c != NULL; c = c->next)
		if (is(c, name))
			return (c);
	return (NULL);
}

/* The testsuite whose shardrun.file property is path. */
static xmlNodePtr
suite_of(xmlNodePtr root, const char *path, const char *outcome)
{
	for (xmlNodePtr s = root->children; s != NULL; s = s->next) {
		xmlNodePtr props =
		    is(s, "testsuite") ? child(s, "properties") : NULL;
		int mine = 0, seen = 0;

		for (xmlNodePtr p = props ? props->children : NULL; p != NULL;
		     p = p->next) {
			if (!is(p, "property"))
				continue;
			if (strcmp(prop(p, "name"), "shardrun.file") == 0)
				mine = strcmp(prop(p, "value"), path) == 0;
			if (strncmp(prop(p, "name"), "shardrun.", 9) == 0)
				seen++;
		}
		if (!mine)
			continue;
		assert_int_equal(seen, 4);
		for (xmlNodePtr p = props->children; p != NULL; p = p->next)
			if (is(p, "property") &&
			    strcmp(prop(p, "name"), "shardrun.outcome") == 0)
				assert_string_equal(prop(p, "value"), outcome);
		return (s);
	}
	fail_msg("no testsuite for %s", path);
	return (NULL);
}

static char *
content(xmlNodePtr n)
{
	static char buf[8192];
	xmlChar *c = xmlNodeGetContent(n);

	snprintf(buf, sizeof(buf), "%s", c != NULL ? (char *) c : "");
	xmlFree(c);
	return (buf);
}

static void
check_totals(xmlNodePtr root)
{
	assert_string_equal(prop(root, "name"), "shardrun");
	/* A 3 + B 2 + C 1 + D 1 + E 2 + F 1 + G 1 */
	assert_string_equal(prop(root, "tests"), "11");
	assert_string_equal(prop(root, "failures"), "2"); /* B, D */
	assert_string_equal(prop(root, "errors"), "3");   /* C, F, G */
	assert_string_equal(prop(root, "skipped"), "1");  /* in A */
	/* 2.0 + 1.25 + 0.3 + 0.4 + 0.5 + 30.0 + 0.01 */
	assert_string_equal(prop(root, "time"), "34.460");
}

static void
check_crash(xmlNodePtr root)
{
	xmlNodePtr s = suite_of(root, "tests/test_crash.py", "crashed");
	xmlNodePtr tc = child(s, "testcase"), err;

	assert_string_equal(prop(s, "name"), "tests/test_crash.py");
	assert_string_equal(prop(s, "tests"), "1");
	assert_string_equal(prop(s, "errors"), "1");
	assert_string_equal(prop(s, "failures"), "0");
	assert_string_equal(prop(tc, "classname"), "tests.test_crash");
	assert_string_equal(prop(tc, "name"), "shardrun");
	assert_string_equal(prop(tc, "time"), "0.300");
	assert_non_null(err = child(tc, "error"));
	assert_string_equal(prop(err, "message"), "crashed (SIGSEGV)");
	assert_non_null(strstr(content(err), "line 30\n"));
	assert_non_null(strstr(content(err), "<&>"));
	assert_non_null(strstr(content(err), "red"));
	assert_null(strchr(content(err), '\x1b'));
}

static void
check_unreadable(xmlNodePtr root)
{
	xmlNodePtr s = suite_of(root, "tests/test_bad_xml.py", "failed");
	xmlNodePtr f = child(child(s, "testcase"), "failure");

	assert_non_null(f);
	assert_non_null(strstr(prop(f, "message"), "unreadable JUnit report"));
	assert_string_equal(content(f), "boom\n");
	assert_string_equal(prop(s, "failures"), "1");
}

static void
check_flaky(xmlNodePtr root)
{
	xmlNodePtr s = suite_of(root, "tests/test_flaky.py", "flaky");
	xmlNodePtr ff = NULL, st;
	int nflaky = 0;

	for (xmlNodePtr tc = s->children; tc != NULL; tc = tc->next) {
		if (!is(tc, "testcase"))
			continue;
		for (xmlNodePtr c = tc->children; c != NULL; c = c->next) {
			if (!is(c, "flakyFailure"))
				continue;
			assert_string_equal(prop(tc, "name"), "test_x");
			ff = c;
			nflaky++;
		}
	}
	assert_int_equal(nflaky, 1);
	assert_string_equal(prop(ff, "message"), "first failure");
	assert_string_equal(prop(ff, "type"), "failure");
	assert_non_null(st = child(ff, "stackTrace"));
	assert_string_equal(content(st), "Traceback flaky <here>");
	assert_string_equal(prop(s, "failures"), "0");
}

static void
check_copied(xmlNodePtr root)
{
	xmlNodePtr s = suite_of(root, "tests/sub/test_b.py", "failed");
	xmlNodePtr props = child(s, "properties"), p;
	int n = 0;

	/* The report's own property is kept, ours appended. */
	for (p = props->children; p != NULL; p = p->next)
		n += is(p, "property");
	assert_int_equal(n, 5);
	assert_string_equal(prop(s, "failures"), "1");

	s = suite_of(root, "tests/test_a.py", "passed");
	assert_string_equal(prop(s, "tests"), "3");
	assert_true(is(xmlFirstElementChild(s), "properties"));

	s = suite_of(root, "tests/test_timeout.py", "timeout");
	assert_string_equal(
	    prop(child(child(s, "testcase"), "error"), "message"),
	    "timeout after 30s");
	s = suite_of(root, "tests/test_gone.py", "error");
	assert_string_equal(
	    prop(child(child(s, "testcase"), "error"), "message"),
	    "file not found: tests/test_gone.py");
}

static void
test_junit(void **state)
{
	struct fx *fx = *state;
	xmlDocPtr doc;
	xmlNodePtr root;
	int nsuites = 0;

	make_suite(&fx->s, 0);
	run_info(&fx->ri, 0);
	doc = load_junit(fx);
	root = xmlDocGetRootElement(doc);
	assert_true(is(root, "testsuites"));
	for (xmlNodePtr s = root->children; s != NULL; s = s->next)
		nsuites += is(s, "testsuite");
	assert_int_equal(nsuites, 7);
	check_totals(root);
	check_crash(root);
	check_unreadable(root);
	check_flaky(root);
	check_copied(root);
	xmlFreeDoc(doc);
}

/* Entities are never resolved: a report with a DTD is not used at all. */
static void
test_junit_xxe(void **state)
{
	static const char xxe[] =
	    "<?xml version=\"1.0\"?><!DOCTYPE t [<!ENTITY x SYSTEM "
	    "\"file:///etc/passwd\"><!ENTITY y \"HIDDEN\">]><testsuite "
	    "name=\"&y;\" tests=\"1\"><testcase classname=\"a\" "
	    "name=\"b\">&x;</testcase></testsuite>";
	struct fx *fx = *state;
	xmlDocPtr doc;
	xmlNodePtr s, tc;
	char *text;
	size_t i;

	sr_suite_init(&fx->s);
	i = add(&fx->s, "evil.py", SR_FINAL_PASSED, 1.0);
	attempt(&fx->s, i, PASSED, 0, 1, xxe, "1 passed");
	i = add(&fx->s, "pending.py", SR_FINAL_PENDING, 1.0);
	run_info(&fx->ri, 1);
	doc = load_junit(fx);
	s = suite_of(xmlDocGetRootElement(doc), "evil.py", "passed");
	tc = child(s, "testcase");
	assert_null(child(tc, "error"));
	assert_non_null(strstr(content(child(tc, "system-out")),
	                       "unreadable JUnit report"));
	assert_string_equal(prop(s, "errors"), "0");
	s = suite_of(xmlDocGetRootElement(doc), "pending.py", "pending");
	assert_non_null(child(child(s, "testcase"), "skipped"));
	assert_string_equal(prop(xmlDocGetRootElement(doc), "skipped"), "1");
	xmlFreeDoc(doc);
	assert_int_equal(sr_read_file(fx->path, 1 << 20, &text, NULL), 0);
	assert_null(strstr(text, "root:"));
	assert_null(strstr(text, "HIDDEN"));
	free(text);
}

static char *
summary(struct fx *fx, const struct sr_profile *prof, int color)
{
	char *text = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&text, &len);

	assert_non_null(out);
	sr_report_summary(out, &fx->s, &fx->ri, prof, color);
	assert_int_equal(fclose(out), 0);
	return (text);
}

static const char *
last_line(const char *text)
{
	size_t n = strlen(text);

	assert_true(n > 0 && text[n - 1] == '\n');
	for (n--; n > 0 && text[n - 1] != '\n'; n--)
		;
	return (text + n);
}

static int
starts_with(const char *s, const char *prefix)
{
	return (strncmp(s, prefix, strlen(prefix)) == 0);
}

static void
test_summary(void **state)
{
	struct fx *fx = *state;
	struct sr_profile prof;
	const char *repro;
	char *text;
	regex_t re;

	make_suite(&fx->s, 0);
	run_info(&fx->ri, 0);
	assert_int_equal(sr_profile_pytest(&prof, "/usr/bin/python3"), 0);
	text = summary(fx, &prof, 0);
	assert_true(starts_with(text, "1 passed, 2 failed, 1 flaky, 1 crashed, "
	                              "1 timeout, 1 error in 12.3s\n"));
	assert_non_null(strstr(text,
	                       "CRASHED tests/test_crash.py: crashed "
	                       "(SIGSEGV)\n  2 attempts (crashed, crashed), "
	                       "agent ci-1 slot 2\n"));
	/* The last 20 lines of the tail, indented. */
	assert_non_null(strstr(text, "\n    line 11\n"));
	assert_non_null(strstr(text, "\n    line 30\n"));
	assert_null(strstr(text, "line 10\n"));
	assert_non_null(strstr(text, "TIMEOUT tests/test_timeout.py: timeout "
	                             "after 30s"));
	assert_non_null(strstr(text, "FLAKY tests/test_flaky.py: 2 attempts "
	                             "(failed, passed)"));
	assert_null(strstr(text, "PASSED"));
	repro = strstr(text, "  reproduce: ");
	assert_non_null(repro);
	assert_non_null(strstr(repro, "python3"));
	assert_true(strstr(repro, "tests/sub/test_b.py") < strchr(repro, '\n'));
	assert_non_null(strstr(text, "\nslowest files:\n      30.0s  "
	                             "tests/test_timeout.py (estimate 5.0s)\n"
	                             "       2.0s  tests/test_a.py"));
	assert_non_null(strstr(text, "makespan 12.3s, lower bound 11.9s "
	                             "(1.04x)\n"));
	assert_null(strchr(text, '\x1b'));
	assert_string_equal(last_line(text), "1 passed, 2 failed, 1 flaky, "
	                                     "1 crashed, 1 timeout, 1 error\n");
	assert_int_equal(regcomp(&re, "^[0-9]+ passed, [0-9]+ failed",
	                         REG_EXTENDED | REG_NOSUB),
	                 0);
	assert_int_equal(regexec(&re, last_line(text), 0, NULL, 0), 0);
	regfree(&re);
	free(text);
	sr_profile_free(&prof);
}

static void
test_summary_color_interrupted(void **state)
{
	struct fx *fx = *state;
	char *text;

	make_suite(&fx->s, 1);
	run_info(&fx->ri, 1);
	text = summary(fx, NULL, 1);
	assert_non_null(strstr(text, "\033[31m2 failed\033[0m"));
	assert_non_null(strstr(text, "\033[32m1 passed\033[0m"));
	assert_non_null(
	    strstr(text, "\033[33mFLAKY\033[0m tests/test_flaky.py"));
	assert_non_null(strstr(text, "PENDING\033[0m tests/test_never.py"));
	assert_null(strstr(text, "reproduce:"));
	assert_string_equal(
	    last_line(text),
	    "1 passed, 2 failed, 1 flaky, 1 crashed, 1 timeout, 1 error, "
	    "1 not run\n");
	free(text);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_counts, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_json, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_json_interrupted, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_junit, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_junit_xxe, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_summary, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_summary_color_interrupted,
	                                    setup, teardown),
	};

	if (sr_init("test") != 0)
		return (1);
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
