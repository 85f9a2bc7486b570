/*
 * junit.c - pytest's JUnit XML reports: safe parsing, which file a
 * testcase belongs to, and dividing one session's report among its files.
 */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <libxml/parser.h>

#include "sr/err.h"
#include "sr/junit.h"

int
sr_junit_is(xmlNodePtr n, const char *name)
{
	return (n != NULL && n->type == XML_ELEMENT_NODE &&
	        xmlStrEqual(n->name, BAD_CAST name));
}

const char *
sr_junit_attr(xmlNodePtr n, const char *name)
{
	xmlAttrPtr a = xmlHasProp(n, BAD_CAST name);

	if (a == NULL || a->children == NULL ||
	    a->children->type != XML_TEXT_NODE || a->children->content == NULL)
		return ("");
	return ((const char *) a->children->content);
}

int
sr_junit_visit(xmlNodePtr n, const char *name, int (*fn)(xmlNodePtr, void *),
               void *arg)
{
	int rv = 0;

	for (; rv == 0 && n != NULL; n = n->next) {
		if (sr_junit_is(n, name))
			rv = fn(n, arg);
		else if (n->type == XML_ELEMENT_NODE)
			rv = sr_junit_visit(n->children, name, fn, arg);
	}
	return (rv);
}

xmlDocPtr
sr_junit_parse(const char *xml, size_t len)
{
	xmlDocPtr doc;
	xmlNodePtr root;

	if (xml == NULL || len == 0 || len > INT_MAX)
		return (NULL);
	doc = xmlReadMemory(xml, (int) len, NULL, NULL,
	                    XML_PARSE_NONET | XML_PARSE_NOERROR |
	                        XML_PARSE_NOWARNING);
	if (doc == NULL)
		return (NULL);
	root = xmlDocGetRootElement(doc);
	if (doc->intSubset != NULL || doc->extSubset != NULL ||
	    (!sr_junit_is(root, "testsuites") &&
	     !sr_junit_is(root, "testsuite"))) {
		xmlFreeDoc(doc);
		return (NULL);
	}
	return (doc);
}

/* pytest's dotted module path: "tests/sub/test_x.py" -> "tests.sub.test_x";
 * false when it does not fit. */
static bool
dotted(const char *path, char *mod, size_t sz)
{
	size_t n = strlen(path);

	if (n >= sz)
		return (false);
	memcpy(mod, path, n + 1);
	if (n > 3 && strcmp(mod + n - 3, ".py") == 0)
		mod[n - 3] = '\0';
	for (size_t i = 0; i < n; i++)
		mod[i] = mod[i] == '/' ? '.' : mod[i];
	return (true);
}

/* The longest tail of mod, cut at a dot, found in s as whole components
 * (and, when at_end, ending s): where it ends in s, its length in *len.
 * NULL when none is. */
static const char *
module_tail(const char *s, const char *mod, bool at_end, size_t *len)
{
	for (const char *suf = mod; suf != NULL;
	     suf = strchr(suf, '.') ? strchr(suf, '.') + 1 : NULL) {
		size_t n = strlen(suf);

		for (const char *p = strstr(s, suf); n > 0 && p != NULL;
		     p = strstr(p + 1, suf)) {
			if ((p == s || p[-1] == '.') &&
			    (p[n] == '\0' || (!at_end && p[n] == '.'))) {
				*len = n;
				return (p + n);
			}
		}
	}
	return (NULL);
}

/* What follows the module of path in classname, its length in *len; NULL
 * when classname does not name it. */
static const char *
in_classname(const char *path, const char *classname, size_t *len)
{
	char mod[PATH_MAX];

	if (classname[0] == '\0' || !dotted(path, mod, sizeof(mod)))
		return (NULL);
	return (module_tail(classname, mod, false, len));
}

size_t
sr_junit_match(const char *path, const char *classname, const char *name,
               const char **rest)
{
	char mod[PATH_MAX];
	size_t len = 0;
	const char *r = NULL;

	if (!dotted(path, mod, sizeof(mod)))
		return (0);
	if (classname[0] != '\0')
		r = module_tail(classname, mod, false, &len);
	/* A module's own entry (a collection error, a module-level skip):
	 * the classname is empty, or only a --junitprefix. */
	if (r == NULL && name[0] != '\0')
		r = module_tail(name, mod, true, &len);
	if (r == NULL)
		return (0);
	if (rest != NULL)
		*rest = r;
	return (len);
}

int
sr_junit_test_id(const char *path, const char *classname, const char *name,
                 char **id)
{
	size_t len;
	const char *rest = in_classname(path, classname, &len);
	char *out, *o;

	if (name[0] == '\0' || rest == NULL)
		return (SR_ENOENT);
	/* Each "." of the classes becomes "::", and one more before name. */
	if ((out = malloc(2 * strlen(rest) + strlen(name) + 3)) == NULL)
		return (SR_ENOMEM);
	o = out;
	for (const char *c = rest; *c != '\0'; c++) {
		if (*c != '.') {
			*o++ = *c;
		} else if (c > rest) {
			memcpy(o, "::", 2);
			o += 2;
		}
	}
	if (rest[0] != '\0') {
		memcpy(o, "::", 2);
		o += 2;
	}
	strcpy(o, name);
	*id = out;
	return (0);
}

/* ---- dividing a bundle's report ---- */

struct divide {
	char *const *paths;
	size_t n;
	xmlDocPtr *docs;    /* per file, made at its first testcase */
	xmlNodePtr *suites; /* per file: the <testsuite> of its report */
	unsigned *counts;   /* per file: failures, errors, skipped */
	struct sr_junit_share *shares;
	xmlNodePtr model; /* the session's <testsuite>, for its attributes */
};

/* The file a testcase belongs to, or -1. */
static long
owner(const struct divide *d, xmlNodePtr tc)
{
	const char *cls = sr_junit_attr(tc, "classname");
	const char *name = sr_junit_attr(tc, "name");
	size_t best = 0;
	long who = -1;

	for (size_t i = 0; i < d->n; i++) {
		size_t m = sr_junit_match(d->paths[i], cls, name, NULL);

		if (m > best) {
			best = m;
			who = (long) i;
		}
	}
	return (who);
}

static bool
has_child(xmlNodePtr tc, const char *name)
{
	for (xmlNodePtr c = tc->children; c != NULL; c = c->next)
		if (sr_junit_is(c, name))
			return (true);
	return (false);
}

/* The file's own report: <testsuites><testsuite name hostname timestamp>. */
static xmlNodePtr
share_suite(struct divide *d, size_t i)
{
	static const char *const keep[] = {"name", "hostname", "timestamp"};
	xmlDocPtr doc;
	xmlNodePtr root, suite;

	if (d->suites[i] != NULL)
		return (d->suites[i]);
	if ((doc = xmlNewDoc(BAD_CAST "1.0")) == NULL)
		return (NULL);
	d->docs[i] = doc;
	root = xmlNewDocNode(doc, NULL, BAD_CAST "testsuites", NULL);
	if (root == NULL)
		return (NULL);
	xmlDocSetRootElement(doc, root);
	if ((suite = xmlNewChild(root, NULL, BAD_CAST "testsuite", NULL)) ==
	    NULL)
		return (NULL);
	for (size_t k = 0; d->model != NULL && k < 3; k++)
		if (sr_junit_attr(d->model, keep[k])[0] != '\0' &&
		    xmlSetProp(suite, BAD_CAST keep[k],
		               BAD_CAST sr_junit_attr(d->model, keep[k])) ==
		        NULL)
			return (NULL);
	d->suites[i] = suite;
	return (suite);
}

static int
each_case(xmlNodePtr tc, void *arg)
{
	struct divide *d = arg;
	long who = owner(d, tc);
	bool failure = has_child(tc, "failure");
	bool error = has_child(tc, "error");
	struct sr_junit_share *sh;
	xmlNodePtr suite;
	const char *ts = sr_junit_attr(tc, "time");
	char *end;
	double t = strtod(ts, &end);

	if (who < 0)
		return (failure || error ? SR_EINVAL : 0);
	if ((suite = share_suite(d, (size_t) who)) == NULL ||
	    xmlAddChild(suite, xmlDocCopyNode(tc, d->docs[who], 1)) == NULL)
		return (SR_ENOMEM);
	sh = &d->shares[who];
	sh->tests++;
	sh->bad += failure || error;
	d->counts[3 * who] += failure;
	d->counts[3 * who + 1] += error;
	d->counts[3 * who + 2] += has_child(tc, "skipped");
	if (end != ts && *end == '\0' && isfinite(t) && t > 0)
		sh->time_s += t;
	return (0);
}

static int
set_count(xmlNodePtr n, const char *key, unsigned v)
{
	char s[24];

	snprintf(s, sizeof(s), "%u", v);
	return (xmlSetProp(n, BAD_CAST key, BAD_CAST s) != NULL ? 0
	                                                        : SR_ENOMEM);
}

/* Totals onto file i's suite, then its report as text. */
static int
share_finish(struct divide *d, size_t i)
{
	struct sr_junit_share *sh = &d->shares[i];
	xmlNodePtr suite = d->suites[i];
	xmlChar *mem = NULL;
	char t[32];
	int size = 0;
	int rv;

	if (suite == NULL)
		return (0);
	snprintf(t, sizeof(t), "%.3f", sh->time_s);
	if ((rv = set_count(suite, "errors", d->counts[3 * i + 1])) != 0 ||
	    (rv = set_count(suite, "failures", d->counts[3 * i])) != 0 ||
	    (rv = set_count(suite, "skipped", d->counts[3 * i + 2])) != 0 ||
	    (rv = set_count(suite, "tests", sh->tests)) != 0)
		return (rv);
	if (xmlSetProp(suite, BAD_CAST "time", BAD_CAST t) == NULL)
		return (SR_ENOMEM);
	xmlDocDumpMemoryEnc(d->docs[i], &mem, &size, "UTF-8");
	if (mem == NULL || size <= 0 ||
	    (sh->xml = malloc((size_t) size)) == NULL) {
		xmlFree(mem);
		return (SR_ENOMEM);
	}
	memcpy(sh->xml, mem, (size_t) size);
	sh->len = (size_t) size;
	xmlFree(mem);
	return (0);
}

static int
find_model(xmlNodePtr suite, void *arg)
{
	*(xmlNodePtr *) arg = suite;
	return (1); /* the first is enough */
}

int
sr_junit_divide(const char *xml, size_t len, char *const *paths, size_t n,
                struct sr_junit_share *shares)
{
	struct divide d = {paths, n, NULL, NULL, NULL, shares, NULL};
	xmlDocPtr doc = sr_junit_parse(xml, len);
	int rv = doc != NULL ? 0 : SR_EINVAL;

	memset(shares, 0, n * sizeof(*shares));
	d.docs = calloc(n ? n : 1, sizeof(*d.docs));
	d.suites = calloc(n ? n : 1, sizeof(*d.suites));
	d.counts = calloc(n ? 3 * n : 1, sizeof(*d.counts));
	if (rv == 0 && (d.docs == NULL || d.suites == NULL || d.counts == NULL))
		rv = SR_ENOMEM;
	if (rv == 0) {
		(void) sr_junit_visit(xmlDocGetRootElement(doc), "testsuite",
		                      find_model, &d.model);
		rv = sr_junit_visit(xmlDocGetRootElement(doc), "testcase",
		                    each_case, &d);
	}
	for (size_t i = 0; rv == 0 && i < n; i++)
		rv = share_finish(&d, i);
	for (size_t i = 0; d.docs != NULL && i < n; i++)
		xmlFreeDoc(d.docs[i]);
	free(d.docs);
	free(d.suites);
	free(d.counts);
	xmlFreeDoc(doc);
	return (rv);
}

void
sr_junit_shares_free(struct sr_junit_share *shares, size_t n)
{
	for (size_t i = 0; shares != NULL && i < n; i++) {
		free(shares[i].xml);
		shares[i].xml = NULL;
		shares[i].len = 0;
	}
}
