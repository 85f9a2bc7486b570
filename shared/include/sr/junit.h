/*
 * junit.h - reading pytest's JUnit XML reports: parsing them safely, which
 * test file a testcase belongs to, and dividing one session's report among
 * the files it ran (a bundle).
 *
 * JUnit names tests differently from pytest's node ids: pytest writes the
 * classname as the module's dotted path relative to its rootdir (which
 * need not be the workspace), maybe behind a --junitprefix, then the
 * classes; the name keeps its parameters. A module that failed to import
 * has one testcase with an empty classname and the dotted path as name.
 *
 * Reports come from test processes, so they are untrusted: no network, no
 * DTD, bounded by the caller's size limit. Pure functions; thread safe.
 */
#ifndef SR_JUNIT_H
#define SR_JUNIT_H

#include <stddef.h>

#include <libxml/tree.h>

/* A report parsed; NULL when malformed, with a DTD, or not rooted in
 * <testsuites> or <testsuite>. Free with xmlFreeDoc. */
xmlDocPtr sr_junit_parse(const char *xml, size_t len);
/* Whether n is the element called name. */
int sr_junit_is(xmlNodePtr n, const char *name);
/* An attribute's value, not copied; "" when absent. */
const char *sr_junit_attr(xmlNodePtr n, const char *name);
/* Call fn on every element called name among n, its siblings and their
 * descendants (not looking inside a match); stops at fn's first non-zero
 * return, which it returns. */
int sr_junit_visit(xmlNodePtr n, const char *name,
                   int (*fn)(xmlNodePtr, void *), void *arg);

/* How much of the module of `path` ("tests/a/test_x.py") the testcase
 * names: the length of the longest tail of its dotted path ("tests.a.test_x",
 * "a.test_x", "test_x") found as whole components in classname (or, when
 * the classname names none - a module's own entry, whose classname is empty
 * or only a --junitprefix - ending name). 0: not this file's. *rest
 * (optional) receives what follows the module ("" or ".TestC..."). */
size_t sr_junit_match(const char *path, const char *classname, const char *name,
                      const char **rest);

/* The test id of a testcase of the file at path, without the path:
 * "TestC::test_y[1]" for "tests/test_x.py::TestC::test_y[1]" (malloc'd).
 * SR_ENOENT when the testcase is not the file's. */
int sr_junit_test_id(const char *path, const char *classname, const char *name,
                     char **id);

/* One file's share of a bundle's report. */
struct sr_junit_share {
	char *xml; /* a report of only its testcases; NULL: none */
	size_t len;
	unsigned tests; /* its testcases */
	unsigned bad;   /* those with <failure> or <error> */
	double time_s;  /* the sum of their times */
};

/*
 * Divide the report of one session over the files paths[0..n) among them:
 * each testcase goes to the file whose module it names most fully. Fills
 * shares[0..n) (free them with sr_junit_shares_free, also on failure).
 * SR_EINVAL when the report is unusable or a failing testcase belongs to
 * none of the files (then no file can be judged by it).
 */
int sr_junit_divide(const char *xml, size_t len, char *const *paths, size_t n,
                    struct sr_junit_share *shares);
void sr_junit_shares_free(struct sr_junit_share *shares, size_t n);

#endif /* SR_JUNIT_H */
