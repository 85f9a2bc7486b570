/*
 * test_collect.c - collect*.c: fast collection against fixture trees
 * built in temporary directories, the source scanner on strings, and
 * exact collection through the real pytest (Debian's /usr/bin/python3).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sr/err.h"
#include "sr/log.h"
#include "sr/util.h"

#include "collect.h"
#include "suite.h"

#define PYTHON "/usr/bin/python3"
/* A NULL-terminated list of paths. */
#define LIST(...) ((const char *const[]){__VA_ARGS__, NULL})

/* Write root/rel, creating its directories. */
static void
put(const char *root, const char *rel, const char *text)
{
	char path[4096];
	char *slash;
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", root, rel);
	if ((slash = strrchr(path, '/')) != NULL) {
		*slash = '\0';
		assert_int_equal(sr_mkdirs(path, 0755), 0);
		*slash = '/';
	}
	assert_non_null(f = fopen(path, "w"));
	fputs(text, f);
	fclose(f);
}

static void
rm(const char *root, const char *rel)
{
	char path[4096];

	snprintf(path, sizeof(path), "%s/%s", root, rel);
	assert_int_equal(unlink(path), 0);
}

static int
setup_root(void **state)
{
	char tmpl[] = "/tmp/sr-collect-test.XXXXXX";

	if (mkdtemp(tmpl) == NULL)
		return (-1);
	*state = strdup(tmpl);
	sr_log_set_level(SR_LOG_ERROR);
	return (*state == NULL ? -1 : 0);
}

static int
teardown_root(void **state)
{
	sr_rmtree(*state);
	free(*state);
	return (0);
}

/* Collect paths (NULL-terminated, or NULL for none) under root. */
static int
collect(const char *root, const char *const *paths, bool exact,
        struct sr_suite *s)
{
	struct sr_collect_opts o;
	struct sr_strv pv;
	int rv;

	assert_int_equal(sr_collect_opts_init(&o, root), 0);
	o.exact = exact;
	o.python = PYTHON;
	sr_strv_init(&pv);
	for (size_t i = 0; paths != NULL && paths[i] != NULL; i++)
		assert_int_equal(sr_strv_push(&pv, paths[i]), 0);
	sr_suite_init(s);
	rv = sr_collect(&o, &pv, s);
	sr_strv_free(&pv);
	sr_collect_opts_free(&o);
	return (rv);
}

static void
expect_files(const struct sr_suite *s, const char *const *want)
{
	size_t n = 0;

	while (want[n] != NULL)
		n++;
	for (size_t i = 0; i < s->n && i < n; i++)
		assert_string_equal(s->files[i].path, want[i]);
	assert_int_equal(s->n, n);
}

static void
collect_expect(const char *root, const char *const *paths,
               const char *const *want)
{
	struct sr_suite s;

	assert_int_equal(collect(root, paths, false, &s), 0);
	expect_files(&s, want);
	sr_suite_free(&s);
}

static const struct sr_file *
find(const struct sr_suite *s, const char *path)
{
	for (size_t i = 0; i < s->n; i++)
		if (strcmp(s->files[i].path, path) == 0)
			return (&s->files[i]);
	fail_msg("%s not collected", path);
	return (NULL);
}

#define T "def test_x():\n    pass\n"

/* Three test files at three depths: the fixture for the ini tests. */
static void
put_three(const char *root)
{
	put(root, "tests/test_a.py", T);
	put(root, "more/test_b.py", T);
	put(root, "other/test_c.py", T);
}

static void
test_default_rules(void **state)
{
	const char *r = *state;

	put(r, "test_a.py", T);
	put(r, "b_test.py", T);
	put(r, "helper.py", T);
	put(r, "testing.py", T);
	put(r, "sub/test_c.py", T);
	put(r, "sub/data.txt", "test");
	put(r, "sub/deep/test_d.py", "");
	collect_expect(r, NULL,
	               LIST("b_test.py", "sub/deep/test_d.py", "sub/test_c.py",
	                    "test_a.py"));
}

static void
test_skipped_dirs(void **state)
{
	const char *r = *state;

	put(r, ".hidden/test_x.py", T);
	put(r, ".test_hidden.py", T);
	put(r, "__pycache__/test_x.py", T);
	put(r, "env/pyvenv.cfg", "home = /usr/bin\n");
	put(r, "env/lib/test_x.py", T);
	put(r, "node_modules/test_x.py", T);
	put(r, "build/test_x.py", T);
	put(r, "pkg.egg/test_x.py", T);
	put(r, "venv/test_x.py", T);
	put(r, "ok/test_ok.py", T);
	collect_expect(r, NULL, LIST("ok/test_ok.py"));
	/* named explicitly, a skipped directory is walked all the same */
	collect_expect(r, LIST("build"), LIST("build/test_x.py"));
}

static void
test_ini_pytest_ini(void **state)
{
	const char *r = *state;

	put_three(r);
	put(r, "pytest.ini",
	    "# comment\n[pytest]\ntestpaths = tests\n    more\n"
	    "; another comment\nminversion = 7.0\n");
	put(r, "tox.ini", "[pytest]\ntestpaths = other\n");
	collect_expect(r, NULL, LIST("more/test_b.py", "tests/test_a.py"));
}

static void
test_ini_pytest_ini_wins_without_section(void **state)
{
	const char *r = *state;

	put_three(r);
	put(r, "pytest.ini", "# empty on purpose\n");
	put(r, "tox.ini", "[pytest]\ntestpaths = other\n");
	collect_expect(
	    r, NULL,
	    LIST("more/test_b.py", "other/test_c.py", "tests/test_a.py"));
}

static void
test_ini_pyproject(void **state)
{
	const char *r = *state;

	put_three(r);
	put(r, "pyproject.toml",
	    "[project]\nname = \"x\"\ndependencies = [\n  \"a[b]\",\n]\n"
	    "description = \"\"\"multi\n[tool.pytest.ini_options]\n"
	    "\"\"\"\n\n"
	    "[tool.pytest.ini_options]\n"
	    "minversion = \"7.0\"\n"
	    "addopts = '-ra'\n"
	    "markers = [\"serial: not in parallel\", \"slow\"]\n"
	    "testpaths = [\n  \"tests\",  # the unit tests\n  'more',\n]\n"
	    "[tool.other]\ntestpaths = [\"other\"]\n");
	put(r, "tox.ini", "[pytest]\ntestpaths = other\n");
	collect_expect(r, NULL, LIST("more/test_b.py", "tests/test_a.py"));
}

static void
test_ini_pyproject_without_table(void **state)
{
	const char *r = *state;

	put_three(r);
	put(r, "pyproject.toml", "[tool.black]\nline-length = 79\n");
	put(r, "tox.ini",
	    "[tox]\nenvlist = py3\n[pytest]\ntestpaths = other\n");
	put(r, "setup.cfg", "[tool:pytest]\ntestpaths = tests\n");
	collect_expect(r, NULL, LIST("other/test_c.py"));
}

static void
test_ini_setup_cfg(void **state)
{
	const char *r = *state;

	put_three(r);
	put(r, "tox.ini", "[tox]\nenvlist = py3\n");
	put(r, "setup.cfg",
	    "[metadata]\nname = x\n\n[tool:pytest]\ntestpaths =\n"
	    "    tests\n    more\n[flake8]\nmax-line-length = 79\n");
	collect_expect(r, NULL, LIST("more/test_b.py", "tests/test_a.py"));
}

static void
test_testpaths_glob_and_fallback(void **state)
{
	const char *r = *state;

	put_three(r);
	put(r, "pytest.ini", "[pytest]\ntestpaths = t* mo?e\n");
	collect_expect(r, NULL, LIST("more/test_b.py", "tests/test_a.py"));
	put(r, "pytest.ini", "[pytest]\ntestpaths = nothere\n");
	collect_expect(
	    r, NULL,
	    LIST("more/test_b.py", "other/test_c.py", "tests/test_a.py"));
	/* explicit paths win over testpaths */
	put(r, "pytest.ini", "[pytest]\ntestpaths = tests\n");
	collect_expect(r, LIST("other"), LIST("other/test_c.py"));
}

static void
test_python_files(void **state)
{
	const char *r = *state;

	put(r, "check_a.py", T);
	put(r, "b_spec.py", T);
	put(r, "test_c.py", T);
	put(r, "sub/x_spec.py", T);
	put(r, "pytest.ini",
	    "[pytest]\npython_files = check_*.py\n  *_spec.py\n");
	collect_expect(r, NULL,
	               LIST("b_spec.py", "check_a.py", "sub/x_spec.py"));
	rm(r, "pytest.ini");
	put(r, "pyproject.toml",
	    "[tool.pytest.ini_options]\npython_files = \"check_*.py\"\n");
	collect_expect(r, NULL, LIST("check_a.py"));
	/* a pattern with '/' matches the end of the path */
	put(r, "pyproject.toml",
	    "[tool.pytest.ini_options]\npython_files = [\"sub/*.py\"]\n");
	collect_expect(r, NULL, LIST("sub/x_spec.py"));
}

static void
test_norecursedirs(void **state)
{
	const char *r = *state;

	put(r, "build/test_b.py", T);
	put(r, "skipme/test_s.py", T);
	put(r, "test_a.py", T);
	put(r, "tox.ini", "[pytest]\nnorecursedirs = skip*\n");
	collect_expect(r, NULL, LIST("build/test_b.py", "test_a.py"));
}

static void
test_explicit_file(void **state)
{
	const char *r = *state;
	char abs[4200];

	put(r, "helper.py", T);
	put(r, ".hidden/check.py", T);
	put(r, "tests/test_a.py", T);
	collect_expect(r, LIST("helper.py", ".hidden/check.py"),
	               LIST(".hidden/check.py", "helper.py"));
	snprintf(abs, sizeof(abs), "%s/tests/test_a.py", r);
	collect_expect(r, LIST(abs), LIST("tests/test_a.py"));
}

/* Collect one path; on failure the suite must be left empty. */
static int
collect1(const char *root, const char *path, bool exact)
{
	struct sr_suite s;
	int rv = collect(root, LIST(path), exact, &s);

	if (rv != 0)
		assert_int_equal(s.n, 0);
	sr_suite_free(&s);
	return (rv);
}

static void
test_bad_paths(void **state)
{
	const char *r = *state;
	struct sr_suite s;
	char link[4200];

	put(r, "test_a.py", T);
	snprintf(link, sizeof(link), "%s/out", r);
	assert_int_equal(symlink("/etc", link), 0);
	sr_log_set_level(-1); /* the errors are expected */
	assert_int_equal(collect(r, LIST("test_a.py", "nope.py"), false, &s),
	                 SR_ENOENT);
	assert_int_equal(s.n, 0);
	assert_int_equal(collect1(r, "nope", true), SR_ENOENT);
	assert_int_equal(collect1(r, "../x", false), SR_EPATH);
	assert_int_equal(collect1(r, "./test_a.py/..", false), SR_EPATH);
	assert_int_equal(collect1(r, "/etc", false), SR_EPATH);
	assert_int_equal(collect1(r, "out/hostname", false), SR_EPATH);
	assert_int_equal(collect1(r, "test_a.py::test_x", false), SR_EINVAL);
	sr_log_set_level(SR_LOG_ERROR);
}

/* A configuration file cut at every byte: never a crash or an error. */
static void
test_truncated_config(void **state)
{
	static const char *const texts[][2] = {
	    {"pyproject.toml",
	     "[x]\na = {b = [1, 'x]'], c = \"\"\"q\"\"\"}\n"
	     "[tool.pytest.ini_options]\ntestpaths = [\"tests\", # c\n"
	     "  'more', [\"n\"]]\npython_files = \"test_*.py\\tx_*.py\"\n"},
	    {"setup.cfg", "[tool:pytest]\ntestpaths = tests\n  more\n"
	                  "python_files: test_*.py ; x\n[other]\n"},
	};
	const char *r = *state;
	char buf[512];

	put(r, "tests/test_a.py", T);
	sr_log_set_level(-1);
	for (size_t t = 0; t < 2; t++) {
		for (size_t n = 0; n <= strlen(texts[t][1]); n++) {
			snprintf(buf, sizeof(buf), "%.*s", (int) n,
			         texts[t][1]);
			put(r, texts[t][0], buf);
			assert_int_equal(collect1(r, ".", false), 0);
		}
		rm(r, texts[t][0]);
	}
	sr_log_set_level(SR_LOG_ERROR);
}

static void
test_sort_dedup(void **state)
{
	const char *r = *state;

	put(r, "tests/test_b.py", T);
	put(r, "tests/test_a.py", T);
	put(r, "tests/sub/test_c.py", T);
	collect_expect(
	    r,
	    LIST("tests/test_b.py", "tests", "./tests/test_a.py", "tests/",
	         "tests//sub/./test_c.py", "."),
	    LIST("tests/sub/test_c.py", "tests/test_a.py", "tests/test_b.py"));
}

static void
test_symlinks(void **state)
{
	const char *r = *state;
	char path[4200];

	put(r, "a/test_a.py", T);
	snprintf(path, sizeof(path), "%s/a/loop", r);
	assert_int_equal(symlink("..", path), 0);
	snprintf(path, sizeof(path), "%s/a/outside", r);
	assert_int_equal(symlink("/usr/lib", path), 0);
	snprintf(path, sizeof(path), "%s/test_link.py", r);
	assert_int_equal(symlink("a/test_a.py", path), 0);
	collect_expect(r, NULL, LIST("a/test_a.py", "test_link.py"));
}

static void
test_appends_sorted(void **state)
{
	const char *r = *state;
	struct sr_attempt a = {.exit_code = 0};
	struct sr_collect_opts o;
	struct sr_suite s;
	size_t idx;

	put(r, "test_b.py", T);
	put(r, "test_d.py", T);
	assert_int_equal(sr_collect_opts_init(&o, r), 0);
	sr_suite_init(&s);
	assert_int_equal(sr_suite_add(&s, "test_d.py", &idx), 0);
	assert_int_equal(sr_file_add_attempt(&s.files[idx], &a), 0);
	assert_int_equal(sr_suite_add(&s, "test_c.py", &idx), 0);
	assert_int_equal(sr_collect(&o, NULL, &s), 0);
	/* appended, sorted, and what the suite had is not added twice */
	expect_files(&s, LIST("test_b.py", "test_c.py", "test_d.py"));
	assert_int_equal(s.files[2].natt, 1);
	sr_suite_free(&s);
	sr_collect_opts_free(&o);
}

/* Capture what the module logs while collecting. */
static char *
collect_logged(const char *root, int level)
{
	char path[4200], *text = NULL;
	struct sr_suite s;
	int fd, saved;

	snprintf(path, sizeof(path), "%s.log", root);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	saved = dup(2);
	dup2(fd, 2);
	sr_log_set_level(level);
	assert_int_equal(collect(root, NULL, false, &s), 0);
	sr_log_set_level(SR_LOG_ERROR);
	dup2(saved, 2);
	close(saved);
	close(fd);
	sr_suite_free(&s);
	assert_int_equal(sr_read_file(path, 1 << 20, &text, NULL), 0);
	unlink(path);
	return (text);
}

static void
test_logs(void **state)
{
	const char *r = *state;
	char *log;

	put(r, "tests/test_a.py", T);
	put(r, "setup.cfg",
	    "[tool:pytest]\npython_classes = Check\npython_functions = check\n"
	    "addopts = -ra --ignore=tests/x tests\nmarkers = serial\n");
	log = collect_logged(r, SR_LOG_INFO);
	assert_non_null(strstr(log, "configuration from"));
	assert_non_null(strstr(log, "setup.cfg"));
	assert_non_null(strstr(log, "python_classes is not honoured"));
	assert_non_null(strstr(log, "python_functions is not honoured"));
	assert_non_null(strstr(log, "addopts '--ignore=tests/x'"));
	assert_non_null(strstr(log, "addopts 'tests'"));
	assert_null(strstr(log, "'-ra'"));
	assert_null(strstr(log, "markers"));
	free(log);
}

/* sr_scan_python on a string with the default marker lists. */
static void
scan(const char *src, bool want_serial, bool want_excl, unsigned want_n)
{
	struct sr_collect_opts o;
	bool serial = !want_serial, excl = !want_excl;
	unsigned n = 12345;

	assert_int_equal(sr_collect_opts_init(&o, "."), 0);
	assert_int_equal(sr_scan_python(src, &o, &serial, &excl, &n), 0);
	sr_collect_opts_free(&o);
	if (serial != want_serial || excl != want_excl || n != want_n)
		fail_msg("serial %d excl %d n %u for:\n%s", serial, excl, n,
		         src);
}

static void
test_scan_module_markers(void **state)
{
	(void) state;
	scan("import pytest\npytestmark = pytest.mark.serial\n" T, true, false,
	     1);
	scan("import pytest\n\npytestmark = [pytest.mark.slow, "
	     "pytest.mark.no_parallel(reason='x')]\n" T,
	     true, false, 1);
	scan("pytestmark = [\n    pytest.mark.slow,\n"
	     "    pytest.mark.parallel_unsafe,\n]\n" T,
	     true, false, 1);
	scan("pytestmark = [pytest.mark.slow, pytest.mark.skipif(True)]\n" T,
	     false, false, 1);
	scan("pytestmark = pytest.mark.exclusive\n", false, true, 0);
}

static void
test_scan_class_and_function_markers(void **state)
{
	(void) state;
	scan("import pytest\n\n@pytest.mark.parallel_unsafe\nclass TestA:\n"
	     "    def test_x(self):\n        pass\n\n"
	     "    def test_y(self):\n        pass\n\n"
	     "    def helper(self):\n        pass\n",
	     true, false, 2);
	scan("@pytest.mark.serial()\ndef test_a():\n    pass\n", true, false,
	     1);
	scan("@pytest.mark.slow\n@pytest.mark.serial\nasync def test_a():\n"
	     "    pass\n",
	     true, false, 1);
	scan("class TestA:\n    @pytest.mark.serial\n    def test_x(self):\n"
	     "        pass\n",
	     true, false, 1);
	scan("class TestA:\n    pytestmark = pytest.mark.no_parallel\n"
	     "    def test_x(self):\n        pass\n",
	     true, false, 1);
	scan("@pytest.mark.parametrize('x', [1, pytest.param(2, "
	     "marks=pytest.mark.serial)])\ndef test_a(x):\n    pass\n",
	     true, false, 1);
	/* a marked helper or fixture is not a marked test */
	scan("@pytest.mark.serial\ndef helper():\n    pass\n" T, false, false,
	     1);
	/* mark.NAME only after "from pytest import mark" */
	scan("from pytest import fixture, mark\n\n@mark.serial\n" T, true,
	     false, 1);
	scan("import mylib\n\n@mylib.mark.serial\n@mark.serial\n" T, false,
	     false, 1);
	scan("@pytest.mark.exclusive\nclass TestPerf:\n"
	     "    def test_x(self): pass\n",
	     false, true, 1);
}

static void
test_scan_configured_markers(void **state)
{
	struct sr_collect_opts o;
	bool serial, excl;
	unsigned n;

	(void) state;
	assert_int_equal(sr_collect_opts_init(&o, "."), 0);
	sr_strv_free(&o.serial_markers);
	assert_int_equal(sr_strv_push(&o.serial_markers, "db"), 0);
	assert_int_equal(sr_strv_push(&o.exclusive_markers, "perf"), 0);
	assert_int_equal(
	    sr_scan_python("@pytest.mark.db\n" T, &o, &serial, &excl, &n), 0);
	assert_true(serial);
	assert_false(excl);
	assert_int_equal(
	    sr_scan_python("@pytest.mark.serial\n" T, &o, &serial, &excl, &n),
	    0);
	assert_false(serial);
	assert_int_equal(sr_scan_python("pytestmark = pytest.mark.perf\n", &o,
	                                &serial, &excl, &n),
	                 0);
	assert_true(excl);
	sr_collect_opts_free(&o);
}

static void
test_scan_comments_and_strings(void **state)
{
	(void) state;
	scan("# @pytest.mark.serial\n"
	     "'''\n@pytest.mark.serial\npytestmark = pytest.mark.serial\n"
	     "def test_in_docstring():\n'''\n"
	     "def test_a():\n"
	     "    \"\"\"pytest.mark.serial\n    def test_no(): \"\"\"\n"
	     "    x = 'pytest.mark.serial'  # pytest.mark.serial\n"
	     "    y = \"it's \\\" pytest.mark.serial\"\n",
	     false, false, 1);
	scan("@pytest.mark.skip(reason=\"pytest.mark.serial\")\n" T, false,
	     false, 1);
	scan("x = r'\\'' # pytestmark = pytest.mark.serial\n" T, false, false,
	     1);
	scan("S = \"\"\"\npytestmark = pytest.mark.serial\n\"\"\"\n", false,
	     false, 0);
}

static void
test_scan_counts(void **state)
{
	(void) state;
	scan(
	    "import pytest\n\n"
	    "def test_one():\n    def test_nested():\n        pass\n\n"
	    "async def test_two():\n    pass\n\n"
	    "def testing():\n    pass\n\n"
	    "def helper_test():\n    pass\n\n"
	    "def test_multi(a,\n               b):\n    pass\n\n"
	    "class TestA:\n"
	    "    '''doc'''\n"
	    "    def test_m1(self):\n        pass\n"
	    "    # a comment at column 0 inside the class\n"
	    "# another\n"
	    "    async def test_m2(self):\n        pass\n"
	    "    def setup_method(self):\n        pass\n\n"
	    "class Helper:\n    def test_not_collected(self):\n        pass\n\n"
	    "def \\\n    test_continued():\n    pass\n"
	    "class TestTabs:\n\tdef test_t(self):\n\t\tpass\n",
	    false, false, 8);
	scan("", false, false, 0);
	scan("\xef\xbb\xbf" T, false, false, 1);
	scan("def test_unterminated():\n    x = 'abc\n" T, false, false, 2);
}

static void
test_scan_in_suite(void **state)
{
	const char *r = *state;
	const struct sr_file *f;
	struct sr_suite s;

	put(r, "test_serial.py",
	    "import pytest\npytestmark = pytest.mark.serial\n" T T);
	put(r, "test_excl.py", "@pytest.mark.exclusive\n" T);
	put(r, "test_plain.py", "class TestX:\n    def test_a(self): pass\n" T);
	assert_int_equal(collect(r, NULL, false, &s), 0);
	assert_int_equal(s.n, 3);
	f = find(&s, "test_serial.py");
	assert_true(f->serial && !f->exclusive && f->ntests == 2);
	f = find(&s, "test_excl.py");
	assert_true(!f->serial && f->exclusive && f->ntests == 1);
	f = find(&s, "test_plain.py");
	assert_true(!f->serial && !f->exclusive && f->ntests == 2);
	sr_suite_free(&s);
}

static void
test_generic(void **state)
{
	const char *r = *state;
	struct sr_suite s;
	struct sr_strv pv;

	put(r, "a.sh", "true\n");
	put(r, "sub/b.txt", "x\n");
	put(r, "sub/.x", "x\n");
	put(r, ".git/config", "x\n");
	put(r, "__pycache__/c.pyc", "x\n");
	sr_suite_init(&s);
	assert_int_equal(sr_collect_generic(r, NULL, &s), 0);
	expect_files(&s, LIST("__pycache__/c.pyc", "a.sh", "sub/b.txt"));
	sr_suite_free(&s);
	sr_strv_init(&pv);
	assert_int_equal(sr_strv_push(&pv, "sub/.x"), 0);
	assert_int_equal(sr_strv_push(&pv, "./a.sh"), 0);
	assert_int_equal(sr_collect_generic(r, &pv, &s), 0);
	expect_files(&s, LIST("a.sh", "sub/.x"));
	sr_suite_free(&s);
	sr_strv_free(&pv);
}

static bool
have_pytest(void)
{
	return (access(PYTHON, X_OK) == 0 &&
	        system(PYTHON " -c 'import pytest' >/dev/null 2>&1") == 0);
}

static void
test_exact(void **state)
{
	const char *r = *state;
	const struct sr_file *f;
	struct sr_suite s;

	if (!have_pytest())
		skip();
	put(r, "tests/conftest.py",
	    "import pytest\n\n\n"
	    "def pytest_collection_modifyitems(config, items):\n"
	    "    for item in items:\n"
	    "        if item.nodeid.startswith('tests/test_hooked.py'):\n"
	    "            item.add_marker(pytest.mark.serial)\n");
	put(r, "tests/test_hooked.py",
	    "import pytest\n\n\n@pytest.mark.parametrize('x', [1, 2])\n"
	    "def test_p(x):\n    pass\n\n\n" T);
	put(r, "tests/test_plain.py",
	    "class TestA:\n    def test_m(self):\n        pass\n\n\n" T);
	put(r, "pytest.ini", "[pytest]\ntestpaths = tests\n");

	assert_int_equal(collect(r, NULL, false, &s), 0);
	f = find(&s, "tests/test_hooked.py");
	assert_false(f->serial); /* the hook is invisible to fast collection */
	assert_int_equal(f->ntests, 2);
	sr_suite_free(&s);

	assert_int_equal(collect(r, NULL, true, &s), 0);
	expect_files(&s, LIST("tests/test_hooked.py", "tests/test_plain.py"));
	f = find(&s, "tests/test_hooked.py");
	assert_true(f->serial);
	assert_false(f->exclusive);
	assert_int_equal(f->ntests, 3); /* parametrisation expanded */
	f = find(&s, "tests/test_plain.py");
	assert_false(f->serial);
	assert_int_equal(f->ntests, 2);
	sr_suite_free(&s);

	assert_int_equal(collect1(r, "tests/test_plain.py", true), 0);
}

static void
test_exact_errors(void **state)
{
	const char *r = *state;
	struct sr_suite s;

	if (!have_pytest())
		skip();
	put(r, "empty/README", "no tests here\n");
	assert_int_equal(collect(r, LIST("empty"), true, &s), 0);
	assert_int_equal(s.n, 0); /* pytest exit 5: an empty suite */
	put(r, "test_broken.py", "def test_x(:\n");
	sr_log_set_level(-1);
	assert_int_equal(collect(r, NULL, true, &s), SR_EIO);
	sr_log_set_level(SR_LOG_ERROR);
	assert_int_equal(s.n, 0);
}

/* Files are parsed alike where the same setup files lie along their
 * directories: a directory without any of its own shares its parent's
 * configuration, one with a conftest.py or an ini file has its own. */
/* The configurations the files under r span once path holds text. */
static unsigned
configurations_with(const char *r, const char *path, const char *text)
{
	struct sr_suite s;
	unsigned n;

	put(r, path, text);
	assert_int_equal(collect(r, NULL, false, &s), 0);
	n = sr_collect_configurations(r, &s);
	sr_suite_free(&s);
	return (n);
}

static void
test_configurations(void **state)
{
	const char *r = *state;
	struct sr_suite s;

	put(r, "pytest.ini", "[pytest]\n");
	put(r, "test_top.py", T);
	put(r, "tests/plain/test_a.py", T);
	put(r, "tests/plain/deeper/test_b.py", T);
	assert_int_equal(collect(r, NULL, false, &s), 0);
	assert_int_equal(s.n, 3);
	assert_int_equal(sr_collect_configurations(r, &s), 1);
	sr_suite_free(&s);

	put(r, "tests/own/conftest.py",
	    "def pytest_report_header():\n"
	    "    return 'own'\n");
	put(r, "tests/own/test_c.py", T);
	put(r, "tests/own/sub/test_d.py", T); /* under own's conftest too */
	put(r, "tests/ini/tox.ini", "[pytest]\n");
	put(r, "tests/ini/test_e.py", T);
	assert_int_equal(collect(r, NULL, false, &s), 0);
	assert_int_equal(s.n, 6);
	assert_int_equal(sr_collect_configurations(r, &s), 3);
	/* Numbered in path order, a file's the one of its nearest setup. */
	assert_int_equal(find(&s, "test_top.py")->config, 1);
	assert_int_equal(find(&s, "tests/ini/test_e.py")->config, 2);
	assert_int_equal(find(&s, "tests/own/sub/test_d.py")->config, 3);
	assert_int_equal(find(&s, "tests/own/test_c.py")->config, 3);
	assert_int_equal(find(&s, "tests/plain/deeper/test_b.py")->config, 1);
	sr_suite_free(&s);

	/* A directory named like a setup file is not one. */
	rm(r, "tests/ini/tox.ini");
	put(r, "tests/ini/setup.py/README", "a directory\n");
	assert_int_equal(collect(r, NULL, false, &s), 0);
	assert_int_equal(sr_collect_configurations(r, &s), 2);
	sr_suite_free(&s);

	/* A plain conftest (fixtures only) decides nothing pytest parses:
	 * one that names a hook or a plugin list, or imports with "*",
	 * does. */
	assert_int_equal(
	    configurations_with(r, "tests/own/conftest.py",
	                        "import pytest\n\n@pytest.fixture\n"
	                        "def x():\n    return 1\n"),
	    1);
	assert_int_equal(configurations_with(r, "tests/own/conftest.py",
	                                     "pytest_plugins = ['p']\n"),
	                 2);
	assert_int_equal(configurations_with(r, "tests/own/conftest.py",
	                                     "from helpers import *\n"),
	                 2);
	/* Nor one beside which something is importable but test files: a
	 * helper module, a package, or an __init__.py making its directory
	 * one. */
	put(r, "tests/own/conftest.py", "X = 1\n");
	assert_int_equal(configurations_with(r, "tests/own/test_x_test.py", T),
	                 1);
	assert_int_equal(
	    configurations_with(r, "tests/own/helpers.py", "X = 1\n"), 2);
	rm(r, "tests/own/helpers.py");
	assert_int_equal(
	    configurations_with(r, "tests/own/utils/__init__.py", ""), 2);
	rm(r, "tests/own/utils/__init__.py");
	assert_int_equal(configurations_with(r, "tests/own/__init__.py", ""),
	                 2);
}

/* Sibling directories share the checks of their ancestors (a walk up
 * reads the last walk's): each still gets its own nearest setup, on
 * either side of a directory that has one. */
static void
test_configurations_of_siblings(void **state)
{
	const char *r = *state;
	struct sr_suite s;

	put(r, "pytest.ini", "[pytest]\n");
	put(r, "tests/a/one/test_1.py", T);
	put(r, "tests/a/two/test_2.py", T);
	put(r, "tests/b/conftest.py",
	    "def pytest_report_header():\n"
	    "    return 'b'\n");
	put(r, "tests/b/one/test_3.py", T);
	put(r, "tests/b/two/deeper/test_4.py", T);
	put(r, "tests/c/one/test_5.py", T);
	put(r, "tests/c/setup.cfg", "[tool:pytest]\n");
	put(r, "tests/c/two/test_6.py", T);
	put(r, "tests/d/test_7.py", T);
	assert_int_equal(collect(r, NULL, false, &s), 0);
	assert_int_equal(s.n, 7);
	assert_int_equal(sr_collect_configurations(r, &s), 3);
	assert_int_equal(find(&s, "tests/a/one/test_1.py")->config, 1);
	assert_int_equal(find(&s, "tests/a/two/test_2.py")->config, 1);
	assert_int_equal(find(&s, "tests/b/one/test_3.py")->config, 2);
	assert_int_equal(find(&s, "tests/b/two/deeper/test_4.py")->config, 2);
	assert_int_equal(find(&s, "tests/c/one/test_5.py")->config, 3);
	assert_int_equal(find(&s, "tests/c/two/test_6.py")->config, 3);
	assert_int_equal(find(&s, "tests/d/test_7.py")->config, 1);
	sr_suite_free(&s);
}

#define ROOT_TEST(f)                                                           \
	cmocka_unit_test_setup_teardown(f, setup_root, teardown_root)

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    ROOT_TEST(test_default_rules),
	    ROOT_TEST(test_skipped_dirs),
	    ROOT_TEST(test_ini_pytest_ini),
	    ROOT_TEST(test_ini_pytest_ini_wins_without_section),
	    ROOT_TEST(test_ini_pyproject),
	    ROOT_TEST(test_ini_pyproject_without_table),
	    ROOT_TEST(test_ini_setup_cfg),
	    ROOT_TEST(test_testpaths_glob_and_fallback),
	    ROOT_TEST(test_python_files),
	    ROOT_TEST(test_norecursedirs),
	    ROOT_TEST(test_explicit_file),
	    ROOT_TEST(test_bad_paths),
	    ROOT_TEST(test_truncated_config),
	    ROOT_TEST(test_sort_dedup),
	    ROOT_TEST(test_symlinks),
	    ROOT_TEST(test_appends_sorted),
	    ROOT_TEST(test_logs),
	    cmocka_unit_test(test_scan_module_markers),
	    cmocka_unit_test(test_scan_class_and_function_markers),
	    cmocka_unit_test(test_scan_configured_markers),
	    cmocka_unit_test(test_scan_comments_and_strings),
	    cmocka_unit_test(test_scan_counts),
	    ROOT_TEST(test_scan_in_suite),
	    ROOT_TEST(test_generic),
	    ROOT_TEST(test_exact),
	    ROOT_TEST(test_exact_errors),
	    ROOT_TEST(test_configurations),
	    ROOT_TEST(test_configurations_of_siblings),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
