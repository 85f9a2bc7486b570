/*
 * test_path.c - sr_path_check, sr_path_normalize, sr_path_resolve.
 *
 * The resolve tests build a scratch tree under a temporary directory:
 *
 *   ws/a.py  ws/sub/b.py  ws2/x.py  outside/secret.py
 *   ws/link_in -> sub/b.py         ws/link_dir -> sub
 *   ws/self -> .                   ws/link_out -> ../outside/secret.py
 *   ws/dir_out -> ../outside       ws/link_ws2 -> ../ws2
 *   ws/abs_ws2 -> <base>/ws2/x.py  ws/dangling -> /nonexistent/zzz
 *   ws/loop -> loop
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sr/err.h"
#include "sr/path.h"
#include "sr/util.h"

static char base[512]; /* realpath of the scratch directory */
static char ws[600];   /* base/ws, the workspace root */

static void
mkfile(const char *rel)
{
	char p[PATH_MAX];
	FILE *f;

	snprintf(p, sizeof(p), "%s/%s", base, rel);
	assert_non_null(f = fopen(p, "w"));
	fclose(f);
}

static void
mklink(const char *target, const char *rel)
{
	char p[PATH_MAX];

	snprintf(p, sizeof(p), "%s/%s", base, rel);
	assert_int_equal(symlink(target, p), 0);
}

static int
setup(void **state)
{
	char tmpl[] = "/tmp/sr_test_path.XXXXXX";
	char abs[PATH_MAX];
	static const char *const dirs[] = {"ws", "ws/sub", "ws2", "outside"};

	(void) state;
	if (mkdtemp(tmpl) == NULL || realpath(tmpl, abs) == NULL ||
	    strlen(abs) >= sizeof(base))
		return (-1);
	memcpy(base, abs, strlen(abs) + 1);
	snprintf(ws, sizeof(ws), "%s/ws", base);
	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		snprintf(abs, sizeof(abs), "%s/%s", base, dirs[i]);
		if (mkdir(abs, 0755) != 0)
			return (-1);
	}
	mkfile("ws/a.py");
	mkfile("ws/sub/b.py");
	mkfile("ws2/x.py");
	mkfile("outside/secret.py");
	mklink("sub/b.py", "ws/link_in");
	mklink("sub", "ws/link_dir");
	mklink(".", "ws/self");
	mklink("../outside/secret.py", "ws/link_out");
	mklink("../outside", "ws/dir_out");
	mklink("../ws2", "ws/link_ws2");
	snprintf(abs, sizeof(abs), "%s/ws2/x.py", base);
	mklink(abs, "ws/abs_ws2");
	mklink("/nonexistent/zzz", "ws/dangling");
	mklink("loop", "ws/loop");
	return (0);
}

static int
teardown(void **state)
{
	(void) state;
	return (sr_rmtree(base) == 0 ? 0 : -1);
}

static void
test_check_accepts(void **state)
{
	static const char *const ok[] = {
	    "a.py",           "tests/unit/test_x.py",
	    ".hidden",        "..foo",
	    "a..b",           "a/.x/b",
	    "t\xc3\xa9st.py", "with space.py",
	    "-dash.py"};

	(void) state;
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
		assert_int_equal(sr_path_check(ok[i]), 0);
}

static void
test_check_refuses(void **state)
{
	static const char *const bad[] = {
	    "",       "/",    "/etc/passwd", "..",          "../x",
	    "a/../b", "a/..", ".",           "./a",         "a/.",
	    "a/./b",  "a//b", "a/",          "//a",         "a\nb",
	    "a\tb",   "a\rb", "a\x7f",       "\x1b[31m.py", "a\x01"};

	(void) state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(sr_path_check(bad[i]), SR_EPATH);
	assert_int_equal(sr_path_check(NULL), SR_EPATH);
}

static void
test_check_length(void **state)
{
	char *p = malloc(PATH_MAX + 1);

	(void) state;
	assert_non_null(p);
	memset(p, 'a', PATH_MAX);
	p[PATH_MAX] = '\0';
	assert_int_equal(sr_path_check(p), SR_EPATH);
	p[PATH_MAX - 1] = '\0'; /* length PATH_MAX - 1 */
	assert_int_equal(sr_path_check(p), 0);
	free(p);
}

static void
expect_norm(const char *in, const char *want)
{
	char out[PATH_MAX];

	assert_int_equal(sr_path_normalize(in, out, sizeof(out)), 0);
	assert_string_equal(out, want);
}

static void
test_normalize(void **state)
{
	static const char *const bad[] = {"",       ".",    "./",   "..",
	                                  "a/../b", "a/..", "/abs", "//a",
	                                  "a\nb",   "./.."};
	char out[8] = "keep";

	(void) state;
	expect_norm("a", "a");
	expect_norm("./a", "a");
	expect_norm("././a/", "a");
	expect_norm("a//b", "a/b");
	expect_norm("a/./b/", "a/b");
	expect_norm("a/b///c//", "a/b/c");
	expect_norm(".hidden/./x", ".hidden/x");
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(sr_path_normalize(bad[i], out, sizeof(out)),
		                 SR_EPATH);
		assert_string_equal(out, "keep");
	}
	assert_int_equal(sr_path_normalize("abcdefgh", out, sizeof(out)),
	                 SR_ETOOBIG);
	assert_string_equal(out, "keep");
	assert_int_equal(sr_path_normalize("abcdefg", out, sizeof(out)), 0);
	assert_string_equal(out, "abcdefg");
}

static void
expect_ok(const char *rel, const char *want_below_base)
{
	char out[PATH_MAX];
	char want[PATH_MAX];

	snprintf(want, sizeof(want), "%s/%s", base, want_below_base);
	assert_int_equal(sr_path_resolve(ws, rel, out, sizeof(out)), 0);
	assert_string_equal(out, want);
}

static void
expect_err(const char *root, const char *rel, int err)
{
	char out[16] = "untouched";

	assert_int_equal(sr_path_resolve(root, rel, out, sizeof(out)), err);
	assert_string_equal(out, "untouched");
}

static void
test_resolve_inside(void **state)
{
	(void) state;
	expect_ok("a.py", "ws/a.py");
	expect_ok("sub/b.py", "ws/sub/b.py");
	expect_ok("sub", "ws/sub");
	expect_ok("link_in", "ws/sub/b.py");
	expect_ok("link_dir/b.py", "ws/sub/b.py");
	expect_ok("self", "ws"); /* the root itself is allowed */
	expect_ok("self/self/a.py", "ws/a.py");
}

static void
test_resolve_escapes(void **state)
{
	(void) state;
	expect_err(ws, "../ws2/x.py", SR_EPATH);
	expect_err(ws, "/etc/passwd", SR_EPATH);
	expect_err(ws, "sub/../a.py", SR_EPATH);
	expect_err(ws, "a\nb", SR_EPATH);
	expect_err(ws, "sub//b.py", SR_EPATH);
	expect_err(ws, "./a.py", SR_EPATH);
	expect_err(ws, "sub/", SR_EPATH);
	expect_err(ws, "link_out", SR_EPATH);
	expect_err(ws, "dir_out/secret.py", SR_EPATH);
	expect_err(ws, "dir_out", SR_EPATH);
	expect_err(ws, "loop", SR_EPATH);
}

/* /ws must not accept a path that resolves into /ws2. */
static void
test_resolve_prefix_trick(void **state)
{
	(void) state;
	expect_err(ws, "link_ws2/x.py", SR_EPATH);
	expect_err(ws, "link_ws2", SR_EPATH);
	expect_err(ws, "abs_ws2", SR_EPATH);
}

static void
test_resolve_missing(void **state)
{
	(void) state;
	expect_err(ws, "missing.py", SR_ENOENT);
	expect_err(ws, "sub/missing.py", SR_ENOENT);
	expect_err(ws, "nodir/missing.py", SR_ENOENT);
	expect_err(ws, "a.py/x", SR_ENOENT);
	expect_err(ws, "link_dir/missing.py", SR_ENOENT);
	/* Missing below a link that leads out is an escape, not a miss. */
	expect_err(ws, "dir_out/missing.py", SR_EPATH);
	/* A dangling link's target cannot be checked: refused. */
	expect_err(ws, "dangling", SR_EPATH);
	expect_err(ws, "dangling/x", SR_EPATH);
}

static void
test_resolve_roots(void **state)
{
	char root[PATH_MAX + 2];
	char out[PATH_MAX];
	char small[8] = "keep";
	char want[PATH_MAX];

	(void) state;
	/* root "/" : everything absolute is inside. */
	snprintf(want, sizeof(want), "%s/ws/a.py", base);
	assert_int_equal(sr_path_resolve("/", want + 1, out, sizeof(out)), 0);
	assert_string_equal(out, want);
	/* A trailing slash on the root changes nothing. */
	snprintf(root, sizeof(root), "%s/", ws);
	assert_int_equal(sr_path_resolve(root, "a.py", out, sizeof(out)), 0);
	assert_string_equal(out, want);
	expect_err(root, "link_ws2/x.py", SR_EPATH);
	/* The sibling workspace does not see into ws either. */
	snprintf(root, sizeof(root), "%s/ws2", base);
	expect_err(root, "x.py/../../ws/a.py", SR_EPATH);
	assert_int_equal(sr_path_resolve(ws, "a.py", small, sizeof(small)),
	                 SR_ETOOBIG);
	assert_string_equal(small, "keep");
	expect_err("relative/root", "a.py", SR_EINVAL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_check_accepts),
	    cmocka_unit_test(test_check_refuses),
	    cmocka_unit_test(test_check_length),
	    cmocka_unit_test(test_normalize),
	    cmocka_unit_test(test_resolve_inside),
	    cmocka_unit_test(test_resolve_escapes),
	    cmocka_unit_test(test_resolve_prefix_trick),
	    cmocka_unit_test(test_resolve_missing),
	    cmocka_unit_test(test_resolve_roots),
	};

	if (sr_init("test") != 0)
		return (1);
	return (cmocka_run_group_tests(tests, setup, teardown));
}
