/*
 * collect.c - finding a suite's test files: by reading them (fast
 * collection, the default) or by asking pytest (exact collection).
 *
 * Fast collection reads the part of pytest's configuration that decides
 * which files exist (testpaths, python_files, norecursedirs), walks the
 * directories the way pytest does, and scans each file's text for test
 * functions and markers. It never imports user code, so what conftest
 * hooks and plugins do stays invisible to it; exact collection is there
 * for suites that depend on that, at the price of one pytest start.
 *
 * Everything found goes into a private suite first and reaches the
 * caller's suite only when the whole collection succeeded.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <glob.h>
#include <limits.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sr/err.h"
#include "sr/log.h"
#include "sr/path.h"
#include "sr/util.h"

#include "collect.h"
#include "collect_cfg.h"
#include "collect_exact.h"

#define MAX_SOURCE (16u << 20) /* larger files are listed, not scanned */

extern char **environ;

static const char *const serial_default[] = {"serial", "parallel_unsafe",
                                             "no_parallel", NULL};

int
sr_collect_opts_init(struct sr_collect_opts *o, const char *root)
{
	struct sr_collect_opts n = {.root = root, .python = "python3"};
	int rv;

	sr_strv_init(&n.serial_markers);
	sr_strv_init(&n.exclusive_markers);
	if ((rv = sr_strv_push_all(&n.serial_markers, serial_default)) != 0 ||
	    (rv = sr_strv_push(&n.exclusive_markers, "exclusive")) != 0) {
		sr_collect_opts_free(&n);
		return (rv);
	}
	*o = n;
	return (0);
}

void
sr_collect_opts_free(struct sr_collect_opts *o)
{
	sr_strv_free(&o->serial_markers);
	sr_strv_free(&o->exclusive_markers);
}

/*
 * Paths. A user-given path is normalised ("./", "." parts and "//"
 * dropped); ".." is refused, as it is on the agents. A path made of "."
 * parts only is the root itself, ".".
 */
int
sr_collect_normalize(const char *in, char *out, size_t outsz)
{
	if (in[strspn(in, "./")] == '\0' && strstr(in, "..") == NULL) {
		snprintf(out, outsz, ".");
		return (0);
	}
	return (sr_path_normalize(in, out, outsz));
}

/* The walk: the workspace's real path, and a path buffer that grows and
 * shrinks with the recursion ("real/rel"). */
struct walk {
	const struct sr_pycfg *cfg; /* NULL: every file (generic profile) */
	struct sr_strv *out;        /* relative paths found */
	char real[PATH_MAX];
	size_t rootlen;
	char path[PATH_MAX];
};

/* A directory on the way down, to notice symbolic-link loops. */
struct anc {
	dev_t dev;
	ino_t ino;
	const struct anc *up;
};

static int
walk_init(struct walk *w, const char *root)
{
	struct stat st;

	memset(w, 0, sizeof(*w));
	if (root == NULL)
		root = ".";
	errno = 0;
	if (realpath(root, w->real) == NULL || stat(w->real, &st) != 0 ||
	    !S_ISDIR(st.st_mode)) {
		sr_error("workspace %s: %s", root,
		         errno ? strerror(errno) : "not a directory");
		return (errno == ENOENT ? SR_ENOENT
		        : errno         ? SR_EIO
		                        : SR_EINVAL);
	}
	w->rootlen = strlen(w->real);
	return (0);
}

/* w->path = real/rel; its length, 0 if too long. */
static size_t
set_path(struct walk *w, const char *rel)
{
	int n;

	if (strcmp(rel, ".") == 0)
		n = snprintf(w->path, sizeof(w->path), "%s", w->real);
	else
		n = snprintf(w->path, sizeof(w->path), "%s/%s", w->real, rel);
	return (n > 0 && (size_t) n < sizeof(w->path) ? (size_t) n : 0);
}

/* Does w->path, links resolved, stay inside the workspace? */
static bool
inside(const struct walk *w)
{
	char res[PATH_MAX];

	return (sr_path_resolve(w->real, w->path + w->rootlen + 1, res,
	                        sizeof(res)) == 0);
}

static int
arg_error(const char *arg, int rv)
{
	if (rv == SR_ENOENT)
		sr_error("%s: no such file or directory", arg);
	else if (rv == SR_EPATH)
		sr_error("%s: refused: leaves the workspace (\"..\" or a "
		         "link) or is not a plain path",
		         arg);
	else
		sr_error("%s: %s", arg, sr_strerror(rv));
	return (rv);
}

/* A path named by the user (or testpaths): relative to the root or
 * absolute below it, present, not escaping. rel gets its normal form. */
static int
resolve_arg(struct walk *w, const char *arg, char *rel, size_t relsz)
{
	char norm[PATH_MAX], res[PATH_MAX];
	const char *a = arg;
	int rv;

	if (strstr(arg, "::") != NULL) {
		sr_error("%s: test ids are not supported, name files", arg);
		return (SR_EINVAL);
	}
	if (arg[0] == '/') {
		if (strncmp(arg, w->real, w->rootlen) != 0 ||
		    (arg[w->rootlen] != '/' && arg[w->rootlen] != '\0')) {
			sr_error("%s: outside the workspace %s", arg, w->real);
			return (SR_EPATH);
		}
		for (a = arg + w->rootlen; *a == '/'; a++)
			;
	}
	if ((rv = sr_collect_normalize(a, norm, sizeof(norm))) == 0 &&
	    strcmp(norm, ".") != 0)
		rv = sr_path_resolve(w->real, norm, res, sizeof(res));
	if (rv == 0 && strlen(norm) >= relsz)
		rv = SR_ETOOBIG;
	if (rv != 0)
		return (arg_error(arg, rv));
	memcpy(rel, norm, strlen(norm) + 1);
	return (0);
}

static int
user_args(struct walk *w, const struct sr_strv *paths, struct sr_strv *args)
{
	char rel[PATH_MAX];
	int rv = 0;

	for (size_t i = 0; paths != NULL && rv == 0 && i < paths->n; i++)
		if ((rv = resolve_arg(w, paths->v[i], rel, sizeof(rel))) == 0)
			rv = sr_strv_push(args, rel);
	return (rv);
}

/* testpaths are globs relative to the root; none matching means ".". */
static int
testpath_args(struct walk *w, const struct sr_pycfg *c, struct sr_strv *args)
{
	char pat[PATH_MAX * 2], rel[PATH_MAX];
	int rv = 0;

	for (size_t i = 0; rv == 0 && i < c->testpaths.n; i++) {
		size_t n = 0;
		glob_t g;

		for (const char *r = w->real; *r != '\0' && n < PATH_MAX; r++) {
			if (strchr("*?[\\", *r) != NULL)
				pat[n++] = '\\';
			pat[n++] = *r;
		}
		snprintf(pat + n, sizeof(pat) - n, "/%s", c->testpaths.v[i]);
		if (glob(pat, 0, NULL, &g) != 0)
			continue;
		for (size_t j = 0; rv == 0 && j < g.gl_pathc; j++)
			if ((rv = resolve_arg(w, g.gl_pathv[j], rel,
			                      sizeof(rel))) == 0)
				rv = sr_strv_push(args, rel);
		globfree(&g);
	}
	if (rv == 0 && args->n == 0 && c->testpaths.n > 0)
		sr_warn("%s: no files found in testpaths; collecting from "
		        "the workspace root instead",
		        c->file);
	return (rv);
}

/*
 * The walk. pytest's rules: hidden names, __pycache__, norecursedirs and
 * virtualenvs are not entered; files match python_files (pytest's
 * fnmatch_ex: a pattern without '/' matches the base name, one with '/'
 * the end of the path).
 */
static bool
match_any(const struct sr_strv *pats, const char *name, const char *path)
{
	char buf[PATH_MAX];

	for (size_t i = 0; i < pats->n; i++) {
		const char *pat = pats->v[i];

		if (strchr(pat, '/') == NULL) {
			if (fnmatch(pat, name, FNM_NOESCAPE) == 0)
				return (true);
			continue;
		}
		if (pat[0] != '/' &&
		    snprintf(buf, sizeof(buf), "*/%s", pat) < (int) sizeof(buf))
			pat = buf;
		if (fnmatch(pat, path, FNM_NOESCAPE) == 0)
			return (true);
	}
	return (false);
}

static bool
skip_dir(const struct walk *w, const char *name)
{
	char venv[PATH_MAX];

	if (strcmp(name, "__pycache__") == 0 ||
	    match_any(&w->cfg->norecurse, name, w->path))
		return (true);
	if (snprintf(venv, sizeof(venv), "%s/pyvenv.cfg", w->path) <
	        (int) sizeof(venv) &&
	    access(venv, F_OK) == 0) {
		sr_debug("collect: %s is a virtualenv, skipped", w->path);
		return (true);
	}
	return (false);
}

static int walk_dir(struct walk *w, size_t len, const struct anc *up);

static int
walk_entry(struct walk *w, size_t len, const char *name, const struct anc *me)
{
	const char *rel = w->path + w->rootlen + 1;
	size_t nlen = strlen(name);
	struct stat st;

	if (len + 1 + nlen >= sizeof(w->path)) {
		sr_warn("collect: %s/%s: path too long, skipped", w->path,
		        name);
		return (0);
	}
	w->path[len] = '/';
	memcpy(w->path + len + 1, name, nlen + 1);
	if (lstat(w->path, &st) != 0)
		return (0);
	if (S_ISLNK(st.st_mode) && (stat(w->path, &st) != 0 || !inside(w))) {
		sr_debug("collect: %s: dangling or outside, skipped", rel);
		return (0);
	}
	if (S_ISDIR(st.st_mode)) {
		if (w->cfg != NULL && skip_dir(w, name))
			return (0);
		return (walk_dir(w, len + 1 + nlen, me));
	}
	if (!S_ISREG(st.st_mode) ||
	    (w->cfg != NULL &&
	     !match_any(&w->cfg->python_files, name, w->path)))
		return (0);
	return (sr_strv_push(w->out, rel));
}

static int
walk_dir(struct walk *w, size_t len, const struct anc *up)
{
	struct sr_strv names;
	struct dirent *de;
	struct stat st;
	struct anc me;
	DIR *d;
	int rv = 0;

	w->path[len] = '\0';
	if (stat(w->path, &st) != 0)
		return (0);
	for (const struct anc *a = up; a != NULL; a = a->up)
		if (a->dev == st.st_dev && a->ino == st.st_ino)
			return (0); /* a symbolic link back up: a loop */
	me = (struct anc){st.st_dev, st.st_ino, up};
	if ((d = opendir(w->path)) == NULL) {
		sr_warn("collect: %s: %s, skipped", w->path, strerror(errno));
		return (0);
	}
	sr_strv_init(&names);
	while (rv == 0 && (de = readdir(d)) != NULL)
		if (de->d_name[0] != '.')
			rv = sr_strv_push(&names, de->d_name);
	closedir(d);
	for (size_t i = 0; rv == 0 && i < names.n; i++)
		rv = walk_entry(w, len, names.v[i], &me);
	w->path[len] = '\0';
	sr_strv_free(&names);
	return (rv);
}

/* Directories are walked; a file named by the user is taken as it is. */
static int
walk_args(struct walk *w, const struct sr_strv *args)
{
	int rv = 0;

	for (size_t i = 0; rv == 0 && i < args->n; i++) {
		size_t len = set_path(w, args->v[i]);
		struct stat st;

		if (len == 0 || stat(w->path, &st) != 0)
			return (SR_ENOENT);
		if (S_ISDIR(st.st_mode))
			rv = walk_dir(w, len, NULL);
		else
			rv = sr_strv_push(w->out, args->v[i]);
	}
	return (rv);
}

static int
cmp_str(const void *a, const void *b)
{
	return (strcmp(*(char *const *) a, *(char *const *) b));
}

static void
sort_unique(struct sr_strv *sv)
{
	size_t j = 0;

	if (sv->n == 0)
		return;
	qsort(sv->v, sv->n, sizeof(sv->v[0]), cmp_str);
	for (size_t i = 0; i < sv->n; i++) {
		if (j > 0 && strcmp(sv->v[j - 1], sv->v[i]) == 0)
			free(sv->v[i]);
		else
			sv->v[j++] = sv->v[i];
	}
	sv->n = j;
	sv->v[j] = NULL;
}

static int
scan_file(const struct sr_collect_opts *o, struct walk *w, const char *rel,
          struct sr_suite *s)
{
	bool serial = false, excl = false;
	unsigned n = 0;
	char *src;
	size_t idx, len;
	int rv;

	set_path(w, rel);
	if ((rv = sr_read_file(w->path, MAX_SOURCE, &src, &len)) == 0) {
		src[len] = '\0'; /* util.c leaves an empty file unterminated */
		rv = sr_scan_python(src, o, &serial, &excl, &n);
		free(src);
	} else if (rv != SR_ENOMEM) {
		sr_warn("collect: %s: %s, not scanned", rel, sr_strerror(rv));
		rv = 0;
	}
	if (rv != 0 || (rv = sr_suite_add(s, rel, &idx)) != 0)
		return (rv);
	s->files[idx].ntests = n;
	s->files[idx].serial = serial;
	s->files[idx].exclusive = excl;
	return (0);
}

/*
 * Exact collection: pytest --collect-only with a plugin of ours that
 * writes, for every item pytest kept, "SRITEM<TAB>nodeid<TAB>markers" to
 * a file (a file, not stdout: conftest prints cannot garble it). All
 * output of pytest goes to a log whose tail is shown when it fails.
 */
static int
collect_exact(const struct sr_collect_opts *o, struct walk *w,
              const struct sr_strv *paths, struct sr_suite *out)
{
	struct sr_strv args;
	int rv;

	sr_strv_init(&args);
	/* no paths: pytest reads its own testpaths, as it would */
	if ((rv = user_args(w, paths, &args)) == 0) {
		sr_info("collect: asking pytest (%s)",
		        o->python != NULL ? o->python : "python3");
		rv = sr_collect_pytest(o, w->real, &args, out, NULL);
	}
	sr_strv_free(&args);
	return (rv);
}

static int
collect_fast(const struct sr_collect_opts *o, struct walk *w,
             const struct sr_strv *paths, struct sr_suite *out)
{
	struct sr_strv args, files;
	struct sr_pycfg c;
	int rv;

	if ((rv = sr_pycfg_load(&c, w->real)) != 0)
		return (rv);
	sr_strv_init(&args);
	sr_strv_init(&files);
	w->cfg = &c;
	w->out = &files;
	if ((rv = user_args(w, paths, &args)) == 0 && args.n == 0)
		rv = testpath_args(w, &c, &args);
	if (rv == 0 && args.n == 0)
		rv = sr_strv_push(&args, ".");
	if (rv == 0 && (rv = walk_args(w, &args)) == 0)
		sort_unique(&files);
	for (size_t i = 0; rv == 0 && i < files.n; i++)
		rv = scan_file(o, w, files.v[i], out);
	sr_strv_free(&files);
	sr_strv_free(&args);
	sr_pycfg_free(&c);
	return (rv);
}

static int
cmp_path(const void *a, const void *b)
{
	return (strcmp(((const struct sr_file *) a)->path,
	               ((const struct sr_file *) b)->path));
}

/* Move the files of in to out, but for those out already has (their paths
 * copied into out's pool); sorted. in is left empty. */
static int
suite_append(struct sr_suite *out, struct sr_suite *in)
{
	size_t had = out->n;
	int rv = 0;

	if (out->n + in->n > out->cap) {
		size_t cap = out->n + in->n;
		struct sr_file *nf = realloc(out->files, cap * sizeof(*nf));

		if (nf == NULL)
			return (SR_ENOMEM);
		out->files = nf;
		out->cap = cap;
	}
	sr_suite_sort(out);
	for (size_t i = 0; i < in->n && rv == 0; i++) {
		struct sr_file f = in->files[i]; /* no attempts, no parts yet */

		if (had > 0 && bsearch(&f, out->files, had, sizeof(*out->files),
		                       cmp_path) != NULL)
			continue;
		if ((f.path = sr_strpool_add(&out->paths, f.path)) == NULL)
			rv = SR_ENOMEM;
		else
			out->files[out->n++] = f;
	}
	in->n = 0;
	sr_suite_sort(out);
	return (rv);
}

int
sr_collect(const struct sr_collect_opts *o, const struct sr_strv *paths,
           struct sr_suite *out)
{
	struct sr_suite tmp;
	struct walk w;
	int rv;

	if ((rv = walk_init(&w, o->root)) != 0)
		return (rv);
	sr_suite_init(&tmp);
	if (o->exact)
		rv = collect_exact(o, &w, paths, &tmp);
	else
		rv = collect_fast(o, &w, paths, &tmp);
	if (rv == 0)
		rv = suite_append(out, &tmp);
	sr_suite_free(&tmp);
	return (rv);
}

int
sr_collect_generic(const char *root, const struct sr_strv *paths,
                   struct sr_suite *out)
{
	struct sr_strv args, files;
	struct sr_suite tmp;
	struct walk w;
	size_t idx;
	int rv;

	if ((rv = walk_init(&w, root)) != 0)
		return (rv);
	sr_strv_init(&args);
	sr_strv_init(&files);
	sr_suite_init(&tmp);
	w.out = &files;
	if ((rv = user_args(&w, paths, &args)) == 0 && args.n == 0)
		rv = sr_strv_push(&args, ".");
	if (rv == 0 && (rv = walk_args(&w, &args)) == 0)
		sort_unique(&files);
	for (size_t i = 0; rv == 0 && i < files.n; i++)
		rv = sr_suite_add(&tmp, files.v[i], &idx);
	if (rv == 0)
		rv = suite_append(out, &tmp);
	sr_suite_free(&tmp);
	sr_strv_free(&files);
	sr_strv_free(&args);
	return (rv);
}

/*
 * The files pytest's configuration depends on in a directory: a fork
 * server parses files alike when the same ones lie along their
 * directories (agent/forkserver.py, SETUP_FILES), leaving out a plain
 * conftest.py.
 */
static const char *const setup_files[] = {
    "conftest.py", "pytest.ini", ".pytest.ini", "pyproject.toml",
    "tox.ini",     "setup.cfg",  "setup.py",    NULL};

/* Whether the entry name of directory dir is a module other than a
 * conftest or a test file (test_*.py, *_test.py), or a package. */
static bool
importable(const char *dir, const char *name)
{
	char p[PATH_MAX];
	struct stat sb;
	size_t n = strlen(name);

	if (n >= 3 && strcmp(name + n - 3, ".py") == 0)
		return (strcmp(name, "conftest.py") != 0 &&
		        strncmp(name, "test_", 5) != 0 &&
		        !(n >= 8 && strcmp(name + n - 8, "_test.py") == 0));
	return (snprintf(p, sizeof(p), "%s/%s/__init__.py", dir, name) <
	            (int) sizeof(p) &&
	        stat(p, &sb) == 0 && S_ISREG(sb.st_mode));
}

/* Whether the conftest.py at path is plain: names no pytest_ hook or
 * plugin list, imports nothing with "*", and nothing beside it is
 * importable but test files (agent/forkserver.py, plain_conftest).
 * Unreadable is not plain. */
static bool
plain_conftest(const char *path)
{
	char dir[PATH_MAX];
	char *src;
	size_t len;
	bool plain;
	DIR *d;
	struct dirent *e;

	if (sr_read_file(path, MAX_SOURCE, &src, &len) != 0)
		return (false);
	plain = memmem(src, len, "pytest_", 7) == NULL &&
	        memmem(src, len, "import *", 8) == NULL;
	free(src);
	snprintf(dir, sizeof(dir), "%.*s", (int) (strrchr(path, '/') - path),
	         path);
	if (!plain || (d = opendir(dir)) == NULL)
		return (false);
	while (plain && (e = readdir(d)) != NULL)
		plain = e->d_name[0] == '.' || !importable(dir, e->d_name);
	closedir(d);
	return (plain);
}

static bool
has_setup_file(const char *root, const char *dir)
{
	char p[PATH_MAX];
	struct stat sb;

	for (size_t i = 0; setup_files[i] != NULL; i++) {
		int n = snprintf(p, sizeof(p), "%s/%s%s%s", root, dir,
		                 dir[0] ? "/" : "", setup_files[i]);

		if (n > 0 && (size_t) n < sizeof(p) && stat(p, &sb) == 0 &&
		    S_ISREG(sb.st_mode) &&
		    (strcmp(setup_files[i], "conftest.py") != 0 ||
		     !plain_conftest(p)))
			return (true);
	}
	return (false);
}

/* What one walk up (nearest_setup) found: the directories it checked and
 * whether each holds a setup file. The next walk reads the last one's:
 * in path order a directory's siblings come next, and share its
 * ancestors. */
#define SETUP_MEMO_MAX 64

struct setup_memo {
	struct sr_strv dirs;
	bool has[SETUP_MEMO_MAX];
};

static bool
memo_has_setup(const struct setup_memo *last, struct setup_memo *now,
               const char *root, const char *dir)
{
	size_t i = 0;
	bool has;

	while (i < last->dirs.n && strcmp(last->dirs.v[i], dir) != 0)
		i++;
	has = i < last->dirs.n ? last->has[i] : has_setup_file(root, dir);
	if (now->dirs.n < SETUP_MEMO_MAX && sr_strv_push(&now->dirs, dir) == 0)
		now->has[now->dirs.n - 1] = has;
	return (has);
}

/* The nearest directory from dir up to the root ("") that holds a setup
 * file, the root if none does: directories with the same one have the
 * same setup files along them. dir is cut down to it in place; memo[0]
 * holds the last walk's checks, then this one's. */
static void
nearest_setup(const char *root, char *dir, struct setup_memo memo[2])
{
	while (dir[0] != '\0' &&
	       !memo_has_setup(&memo[0], &memo[1], root, dir)) {
		char *slash = strrchr(dir, '/');

		*(slash != NULL ? slash : dir) = '\0';
	}
	sr_strv_free(&memo[0].dirs);
	memo[0] = memo[1];
	sr_strv_init(&memo[1].dirs);
}

/* The number of dir among seen (1, 2, ...), added if new; 0 once seen is
 * full. */
static uint8_t
configuration_number(struct sr_strv *seen, const char *dir)
{
	for (size_t i = 0; i < seen->n; i++)
		if (strcmp(seen->v[i], dir) == 0)
			return ((uint8_t) (i + 1));
	if (seen->n >= SR_CONFIGURATIONS_MAX || sr_strv_push(seen, dir) != 0)
		return (0);
	return ((uint8_t) seen->n);
}

unsigned
sr_collect_configurations(const char *root, struct sr_suite *s)
{
	char dir[PATH_MAX], prev[PATH_MAX] = "";
	struct setup_memo memo[2];
	struct sr_strv seen;
	uint8_t number = 0;
	unsigned n;

	sr_strv_init(&seen);
	sr_strv_init(&memo[0].dirs);
	sr_strv_init(&memo[1].dirs);
	for (size_t i = 0; i < s->n; i++) {
		const char *p = s->files[i].path;
		const char *slash = strrchr(p, '/');

		snprintf(dir, sizeof(dir), "%.*s",
		         slash != NULL ? (int) (slash - p) : 0, p);
		if (i == 0 || strcmp(dir, prev) != 0) {
			/* else the previous file's number, reused: in path
			 * order a directory's files mostly come together. */
			memcpy(prev, dir, sizeof(prev));
			nearest_setup(root, dir, memo);
			number = configuration_number(&seen, dir);
		}
		s->files[i].config = number;
	}
	n = (unsigned) seen.n;
	sr_strv_free(&seen);
	sr_strv_free(&memo[0].dirs);
	return (n);
}
