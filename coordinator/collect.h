/*
 * collect.h - finding a suite's test files (the pytest profile).
 *
 * Fast collection (the default) reads files without importing them:
 *   - directories are walked by pytest's default rules: files matching
 *     python_files (default "test_*.py" and "*_test.py"); hidden
 *     directories, __pycache__, venvs and norecursedirs defaults skipped;
 *   - with no PATH given, testpaths from the ini file is used, else ".";
 *   - the ini file is the first of pytest.ini, pyproject.toml
 *     ([tool.pytest.ini_options]), tox.ini ([pytest]), setup.cfg
 *     ([tool:pytest]) in the workspace root that has a pytest section;
 *     testpaths and python_files are honoured there;
 *   - a file is in the serial group when a test, class or the module is
 *     marked with one of the serial marker names (pytest.mark.NAME in a
 *     decorator or in a pytestmark assignment); exclusive likewise;
 *   - ntests counts "def test*" functions (top level and in Test* classes);
 *     parametrisation is not expanded.
 * Exact collection (--collect pytest) asks pytest itself
 * (`python -m pytest --collect-only -q`) for test ids and uses a small
 * plugin to read the markers pytest actually applied, conftest hooks
 * included.
 * Explicit file arguments are always taken as they are, whatever their name.
 *
 * Ownership: results go into the caller's suite; options are borrowed.
 */
#ifndef SR_COLLECT_H
#define SR_COLLECT_H

#include <stdbool.h>

#include "sr/util.h"
#include "suite.h"

/* How often each top-level module is imported by the scanned files (one
 * count per file), for the fork server's preload list. */
struct sr_imports {
	struct sr_strv names;
	unsigned *counts;
	size_t files; /* files scanned */
};

struct sr_collect_opts {
	const char *root;                 /* workspace root (cwd) */
	struct sr_strv serial_markers;    /* default serial, parallel_unsafe,
	                                     no_parallel */
	struct sr_strv exclusive_markers; /* default exclusive */
	bool exact;                       /* --collect pytest */
	const char *python;               /* interpreter for exact collection */
	struct sr_imports *imports; /* optional: counted by fast collection */
	double timeout_s; /* exact collection: give up after (0: never) */
};

/* Defaults for the marker lists; free with sr_collect_opts_free. */
int sr_collect_opts_init(struct sr_collect_opts *o, const char *root);
void sr_collect_opts_free(struct sr_collect_opts *o);

/*
 * Collect the given paths (relative to root; may be files or directories;
 * none means testpaths or "."). A path that does not exist is an error
 * (SR_ENOENT, logged with its name). Files come out sorted by path, each
 * once.
 */
int sr_collect(const struct sr_collect_opts *o, const struct sr_strv *paths,
               struct sr_suite *out);

/* Collection for the generic profile: directories are walked and every
 * regular file is taken; files are taken as they are. */
int sr_collect_generic(const char *root, const struct sr_strv *paths,
                       struct sr_suite *out);

/*
 * How many pytest configurations the suite's files span: files whose
 * directories have the same conftest.py and ini files along them (up to
 * root) are parsed alike, and a slot's fork server keeps one parsed
 * configuration per such set. A plain conftest.py (no pytest_ hook, no
 * plugin list, no "import *", nothing importable beside it but test
 * files: fixtures only) does not count: the server loads it the way
 * pytest loads the conftests of directories it walks into, while
 * collecting. Numbers them too: each file's config is its
 * configuration's (1, 2, ...), 0 past the first SR_CONFIGURATIONS_MAX.
 */
#define SR_CONFIGURATIONS_MAX 255
unsigned sr_collect_configurations(const char *root, struct sr_suite *s);

void sr_imports_init(struct sr_imports *im);
void sr_imports_free(struct sr_imports *im);
/* Modules imported by at least `share` of the files (and two of them),
 * most imported first, at most max, pytest itself excluded. */
int sr_imports_frequent(const struct sr_imports *im, double share, size_t max,
                        struct sr_strv *out);

/* Parse one Python source for markers and test count (exposed for tests). */
int sr_scan_python(const char *src, const struct sr_collect_opts *o,
                   bool *serial, bool *exclusive, unsigned *ntests);

#endif /* SR_COLLECT_H */
