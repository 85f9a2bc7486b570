/*
 * report_junit.c - the merged JUnit XML document: every file's own report
 * (its final attempt, or each part's), shardrun.* properties, stand-ins for
 * files that left none, and <flakyFailure> for earlier failures of flaky
 * files. Reports are parsed with libxml2 without network access or entity
 * expansion; a report carrying a DTD is not used. The same parsing hands
 * each testcase of an attempt to the history (per-test durations).
 */
#include <ctype.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>
#include <libxml/tree.h>

#include "report.h"
#include "report_int.h"
#include "sr/err.h"
#include "sr/junit.h"
#include "sr/log.h"
#include "sr/util.h"

/* The merged document and its running totals. */
struct junit {
	xmlDocPtr doc;
	xmlNodePtr root;
	long n[4]; /* tests, failures, errors, skipped */
	double time;
};

static const char *const total_keys[4] = {"tests", "failures", "errors",
                                          "skipped"};

/* An attribute's value, not copied; "" when absent. */
static const xmlChar *
attr(xmlNodePtr n, const char *name)
{
	return (BAD_CAST sr_junit_attr(n, name));
}

/* An attempt's JUnit report, parsed (sr_junit_parse); NULL when unusable. */
static xmlDocPtr
parse_junit(const struct sr_attempt *a)
{
	return (a != NULL ? sr_junit_parse(a->junit, a->junit_len) : NULL);
}

struct case_arg {
	sr_junit_case_fn fn;
	void *arg;
};

/* A testcase's time attribute; NAN when absent or not a number. */
static double
case_time(xmlNodePtr tc)
{
	const char *s = (const char *) attr(tc, "time");
	char *end;
	double t = strtod(s, &end);

	return (end != s && *end == '\0' ? t : NAN);
}

static int
each_case(xmlNodePtr tc, void *arg)
{
	struct case_arg *ca = arg;

	return (ca->fn((const char *) attr(tc, "classname"),
	               (const char *) attr(tc, "name"), case_time(tc),
	               ca->arg));
}

int
sr_report_junit_cases(const struct sr_attempt *a, sr_junit_case_fn fn,
                      void *arg)
{
	struct case_arg ca = {fn, arg};
	xmlDocPtr doc = parse_junit(a);
	int rv;

	if (doc == NULL)
		return (SR_EINVAL);
	rv = sr_junit_visit(xmlDocGetRootElement(doc), "testcase", each_case,
	                    &ca);
	xmlFreeDoc(doc);
	return (rv);
}

/* Set an attribute; value (possibly from an agent) is cleaned for XML. */
static int
set_prop(xmlNodePtr n, const char *name, const char *value)
{
	char *c =
	    sr_report_clean(value ? value : "", value ? strlen(value) : 0, 1);
	xmlAttrPtr a = c ? xmlSetProp(n, BAD_CAST name, BAD_CAST c) : NULL;

	free(c);
	return (a != NULL ? 0 : SR_ENOMEM);
}

/* Text content from agent-supplied bytes, cleaned for XML. */
static int
set_text(xmlNodePtr n, const char *text)
{
	char *c = sr_report_clean(text, strlen(text), 1);
	xmlNodePtr t = c != NULL ? xmlNewDocText(n->doc, BAD_CAST c) : NULL;

	free(c);
	return (t != NULL && xmlAddChild(n, t) != NULL ? 0 : SR_ENOMEM);
}

/* shardrun.* properties, in the suite's <properties> (made first). */
static int
add_properties(xmlNodePtr suite, const struct sr_file *f)
{
	const struct sr_attempt *a = sr_file_last(f);
	xmlNodePtr p, props = suite->children;
	char natt[24];
	const char *kv[8] = {"shardrun.file",     f->path,
	                     "shardrun.outcome",  sr_final_name(f->final),
	                     "shardrun.attempts", natt,
	                     "shardrun.agent",    a != NULL ? a->agent : NULL};
	int rv = 0;

	snprintf(natt, sizeof(natt), "%u", f->natt);
	while (props != NULL && !sr_junit_is(props, "properties"))
		props = props->next;
	if (props == NULL) {
		props = xmlNewDocNode(suite->doc, NULL, BAD_CAST "properties",
		                      NULL);
		if (props == NULL)
			return (SR_ENOMEM);
		if (suite->children != NULL)
			xmlAddPrevSibling(suite->children, props);
		else
			xmlAddChild(suite, props);
	}
	for (int i = 0; rv == 0 && i < 8; i += 2) {
		p = xmlNewChild(props, NULL, BAD_CAST "property", NULL);
		rv = p != NULL ? set_prop(p, "name", kv[i]) : SR_ENOMEM;
		rv = rv == 0 ? set_prop(p, "value", kv[i + 1]) : rv;
	}
	return (rv);
}

static void
add_totals(struct junit *j, xmlNodePtr suite)
{
	double t = strtod((const char *) attr(suite, "time"), NULL);

	for (int i = 0; i < 4; i++) {
		long v =
		    strtol((const char *) attr(suite, total_keys[i]), NULL, 10);

		j->n[i] += v >= 0 && v <= INT_MAX ? v : 0;
	}
	if (isfinite(t) && t > 0)
		j->time += t;
}

/* Attributes of the stand-in suite and testcase: counts, time, and the
 * classname pytest would use ("tests/a.py" -> "tests.a"). */
static int
synth_attrs(xmlNodePtr suite, xmlNodePtr tc, const struct sr_file *f,
            const char *kind)
{
	static const char *const kinds[4] = {"", "failure", "error", "skipped"};
	const struct sr_attempt *a = sr_file_last(f);
	char t[32], *cls = strdup(f->path);
	size_t n = cls != NULL ? strlen(cls) : 0;
	int rv = cls != NULL ? set_prop(suite, "name", f->path) : SR_ENOMEM;

	snprintf(t, sizeof(t), "%.3f",
	         a != NULL && isfinite(a->duration_s) ? a->duration_s : 0.0);
	for (int i = 0; rv == 0 && i < 4; i++)
		rv = set_prop(suite, total_keys[i],
		              i == 0 || (kind && strcmp(kind, kinds[i]) == 0)
		                  ? "1"
		                  : "0");
	if (n > 3 && strcmp(cls + n - 3, ".py") == 0)
		cls[n - 3] = '\0';
	for (size_t i = 0; i < n; i++)
		cls[i] = cls[i] == '/' ? '.' : cls[i];
	if (rv == 0 && (rv = set_prop(suite, "time", t)) == 0 &&
	    (rv = set_prop(tc, "classname", cls)) == 0 &&
	    (rv = set_prop(tc, "name", "shardrun")) == 0)
		rv = set_prop(tc, "time", t);
	free(cls);
	return (rv);
}

/* A testsuite standing in for the report a file did not leave: its one
 * testcase gets <failure> (failed), <skipped> (never ran) or <error> with
 * a message and the output tail; a passed file gets none, or a
 * <system-out> note when its report was unreadable. */
static int
synth_suite(struct junit *j, const struct sr_file *f, int unreadable)
{
	static const char *const kinds[SR_FINAL_COUNT] = {
	    "skipped", NULL, "failure", NULL, "error", "error", "error"};
	const char *kind, *text;
	const struct sr_attempt *a = sr_file_last(f);
	xmlNodePtr suite, tc, el;
	char msg[1024];
	int rv;

	kind = (unsigned) f->final < SR_FINAL_COUNT ? kinds[f->final] : "error";
	suite = xmlNewChild(j->root, NULL, BAD_CAST "testsuite", NULL);
	if (suite == NULL ||
	    (tc = xmlNewChild(suite, NULL, BAD_CAST "testcase", NULL)) == NULL)
		return (SR_ENOMEM);
	if ((rv = synth_attrs(suite, tc, f, kind)) != 0 ||
	    (rv = add_properties(suite, f)) != 0)
		return (rv);
	add_totals(j, suite);
	sr_report_describe(f, unreadable, msg, sizeof(msg));
	if (kind == NULL && !unreadable)
		return (0);
	text = kind == NULL ? msg : a != NULL && a->tail != NULL ? a->tail : "";
	el = xmlNewChild(tc, NULL, BAD_CAST(kind ? kind : "system-out"), NULL);
	if (el == NULL || (rv = set_text(el, text)) != 0)
		return (el == NULL ? SR_ENOMEM : rv);
	return (kind != NULL ? set_prop(el, "message", msg) : 0);
}

/* A final testcase that has the classname and name of an earlier failure
 * (arg) gets <flakyFailure message type><stackTrace>text</stackTrace>. */
static int
final_case(xmlNodePtr tc, void *arg)
{
	xmlNodePtr fail = arg, ff;
	const xmlChar *type = attr(fail, "type");
	xmlChar *text;

	if (!xmlStrEqual(attr(tc, "classname"),
	                 attr(fail->parent, "classname")) ||
	    !xmlStrEqual(attr(tc, "name"), attr(fail->parent, "name")))
		return (0);
	if ((ff = xmlNewChild(tc, NULL, BAD_CAST "flakyFailure", NULL)) ==
	        NULL ||
	    xmlSetProp(ff, BAD_CAST "message", attr(fail, "message")) == NULL ||
	    xmlSetProp(ff, BAD_CAST "type", type[0] ? type : fail->name) ==
	        NULL)
		return (SR_ENOMEM);
	text = xmlNodeGetContent(fail);
	ff = xmlNewTextChild(ff, NULL, BAD_CAST "stackTrace",
	                     text != NULL ? text : BAD_CAST "");
	xmlFree(text);
	return (ff != NULL ? 0 : SR_ENOMEM);
}

/* A testcase of an earlier attempt: its failures, looked for in the
 * final suite (arg). */
static int
earlier_case(xmlNodePtr tc, void *arg)
{
	xmlNodePtr suite = arg;
	int rv = 0;

	for (xmlNodePtr c = tc->children; rv == 0 && c != NULL; c = c->next)
		if (sr_junit_is(c, "failure") || sr_junit_is(c, "error"))
			rv = sr_junit_visit(suite->children, "testcase",
			                    final_case, c);
	return (rv);
}

/* A flaky file's earlier failures, onto the copied final suite. */
static int
mark_flaky(xmlNodePtr suite, const struct sr_file *f)
{
	int rv = 0;

	if (f->final != SR_FINAL_FLAKY)
		return (0);
	for (size_t i = 0; rv == 0 && i + 1 < f->natt; i++) {
		xmlDocPtr doc = parse_junit(&f->att[i]);

		if (doc == NULL)
			continue;
		rv = sr_junit_visit(xmlDocGetRootElement(doc), "testcase",
		                    earlier_case, suite);
		xmlFreeDoc(doc);
	}
	return (rv);
}

struct copy_arg {
	struct junit *j;
	const struct sr_file *f;
	size_t copied;
};

static int
copy_suite(xmlNodePtr src, void *arg)
{
	struct copy_arg *ca = arg;
	xmlNodePtr copy = xmlDocCopyNode(src, ca->j->doc, 1);
	int rv;

	if (copy == NULL)
		return (SR_ENOMEM);
	xmlAddChild(ca->j->root, copy);
	ca->copied++;
	if ((rv = add_properties(copy, ca->f)) != 0 ||
	    (rv = mark_flaky(copy, ca->f)) != 0)
		return (rv);
	add_totals(ca->j, copy);
	return (0);
}

/* One file: its final attempt's suites when usable; a synthesized suite
 * when not, or when the file did not pass but its report shows no failure
 * (a crash or a timeout must never look green). */
static int
add_file(struct junit *j, const struct sr_file *f)
{
	const struct sr_attempt *a = sr_file_last(f);
	struct copy_arg ca = {j, f, 0};
	int final = f->final;
	long before = j->n[1] + j->n[2]; /* failures + errors */
	xmlDocPtr doc = NULL;
	int rv = 0, unreadable;

	if (final != SR_FINAL_PENDING)
		doc = parse_junit(a);
	if (doc != NULL) {
		rv = sr_junit_visit(xmlDocGetRootElement(doc), "testsuite",
		                    copy_suite, &ca);
		xmlFreeDoc(doc);
	}
	if (rv != 0 || (ca.copied > 0 && (!sr_report_is_bad(final) ||
	                                  j->n[1] + j->n[2] > before)))
		return (rv);
	unreadable = ca.copied == 0 && final != SR_FINAL_PENDING && a != NULL &&
	             a->junit != NULL && a->junit_len > 0;
	if (unreadable)
		sr_warn("%s: unreadable JUnit report", f->path);
	return (synth_suite(j, f, unreadable));
}

/* A split file: each part is reported as a file of its own would be,
 * through a view holding only that part's attempts. */
static int
add_parts(struct junit *j, const struct sr_file *f)
{
	struct sr_attempt *att = malloc((f->natt + 1) * sizeof(*att));
	int rv = att != NULL ? 0 : SR_ENOMEM;

	for (uint32_t p = 0; rv == 0 && p < f->parts->n; p++) {
		struct sr_file v = *f;

		v.att = att;
		v.natt = 0;
		v.parts = NULL;
		v.final = f->parts->final[p];
		for (size_t i = 0; i < f->natt; i++)
			if (f->att[i].part == p)
				att[v.natt++] = f->att[i];
		rv = add_file(j, &v);
	}
	free(att);
	return (rv);
}

static int
junit_write(struct junit *j, const char *path)
{
	xmlChar *mem = NULL;
	char v[32];
	int size = 0;
	int rv = 0;

	for (int i = 0; rv == 0 && i < 4; i++) {
		snprintf(v, sizeof(v), "%ld", j->n[i]);
		rv = set_prop(j->root, total_keys[i], v);
	}
	snprintf(v, sizeof(v), "%.3f", j->time);
	if (rv != 0 || (rv = set_prop(j->root, "time", v)) != 0)
		return (rv);
	xmlDocDumpFormatMemoryEnc(j->doc, &mem, &size, "UTF-8", 1);
	if (mem == NULL || size < 0)
		return (SR_ENOMEM);
	rv = sr_report_write_out(path, mem, (size_t) size);
	xmlFree(mem);
	return (rv);
}

int
sr_report_junit(const struct sr_suite *s, const struct sr_run_info *ri,
                const char *path)
{
	struct junit j;
	int rv;

	(void) ri;
	memset(&j, 0, sizeof(j));
	if ((j.doc = xmlNewDoc(BAD_CAST "1.0")) == NULL ||
	    (j.root = xmlNewDocNode(j.doc, NULL, BAD_CAST "testsuites",
	                            NULL)) == NULL) {
		xmlFreeDoc(j.doc);
		return (SR_ENOMEM);
	}
	xmlDocSetRootElement(j.doc, j.root);
	rv = set_prop(j.root, "name", "shardrun");
	for (size_t i = 0; rv == 0 && i < s->n; i++)
		rv = s->files[i].parts ? add_parts(&j, &s->files[i])
		                       : add_file(&j, &s->files[i]);
	if (rv == 0)
		rv = junit_write(&j, path);
	xmlFreeDoc(j.doc);
	return (rv);
}
