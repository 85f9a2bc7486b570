/*
 * profile.c - command templates, exit-code tables, reproduction commands,
 * shell-like word splitting and the search for a usable Python.
 *
 * A template is parsed once, at construction, into an argv; placeholders are
 * substituted per attempt without a shell ever seeing the result, so a file
 * name with spaces or quotes is one argument and nothing more. The only
 * input from the wire is the file list, and a file that starts with '-' is
 * refused: it would be read as an option by the test runner.
 *
 * Every builder here works on a local copy and hands it over at the end,
 * so an out-parameter is untouched when a call fails.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shardrun.pb-c.h"

#include "sr/err.h"
#include "sr/log.h"
#include "sr/profile.h"
#include "sr/util.h"

extern char **environ;

#define OC_PASSED   SHARDRUN__OUTCOME__PASSED
#define OC_FAILED   SHARDRUN__OUTCOME__FAILED
#define OC_NO_TESTS SHARDRUN__OUTCOME__NO_TESTS
#define OC_ERROR    SHARDRUN__OUTCOME__ERROR

#define REPRO_JUNIT "/tmp/junit.xml"
#define REPRO_TMP   "/tmp"

/* Values for the placeholders of one expansion; NULL means unavailable. */
struct subst {
	const char *file;
	const char *junit;
	const char *tmp;
	const char *python;
};

static void
strv_truncate(struct sr_strv *sv, size_t n)
{
	while (sv->n > n)
		free(sv->v[--sv->n]);
	if (sv->v != NULL)
		sv->v[sv->n] = NULL;
}

/* Move every string of src to the end of out; src is freed either way. */
static int
strv_append(struct sr_strv *out, struct sr_strv *src)
{
	size_t n0 = out->n;
	int rv = 0;

	if (out->n == 0) {
		sr_strv_free(out);
		*out = *src;
		sr_strv_init(src);
		return (0);
	}
	for (size_t i = 0; rv == 0 && i < src->n; i++)
		rv = sr_strv_push(out, src->v[i]);
	if (rv != 0)
		strv_truncate(out, n0);
	sr_strv_free(src);
	return (rv);
}

static bool
strv_has_substr(const struct sr_strv *sv, const char *needle)
{
	for (size_t i = 0; i < sv->n; i++)
		if (strstr(sv->v[i], needle) != NULL)
			return (true);
	return (false);
}

static bool
is_blank(char c)
{
	return (c == ' ' || c == '\t' || c == '\n' || c == '\r');
}

static int
scan_single(const char **sp, struct sr_buf *w)
{
	const char *s = *sp + 1;
	const char *q = strchr(s, '\'');

	if (q == NULL)
		return (SR_EINVAL);
	*sp = q + 1;
	return (sr_buf_append(w, s, (size_t) (q - s)));
}

/* Inside "...", a backslash escapes only $ ` " \ and newline (POSIX). */
static int
scan_double(const char **sp, struct sr_buf *w)
{
	const char *s = *sp + 1;
	int rv = 0;

	for (; rv == 0 && *s != '"'; s++) {
		if (*s == '\0')
			return (SR_EINVAL);
		if (s[0] == '\\' && s[1] == '\n') {
			s++;
			continue;
		}
		if (s[0] == '\\' && s[1] != '\0' && strchr("$`\"\\", s[1]))
			s++;
		rv = sr_buf_append(w, s, 1);
	}
	*sp = s + 1;
	return (rv);
}

/* One quoted section, escaped character or plain character of a word. */
static int
scan_part(const char **sp, struct sr_buf *w)
{
	const char *s = *sp;

	if (*s == '\'')
		return (scan_single(sp, w));
	if (*s == '"')
		return (scan_double(sp, w));
	if (*s == '\\') {
		if (s[1] == '\0')
			return (SR_EINVAL);
		*sp = s + 2;
		return (sr_buf_append(w, s + 1, 1));
	}
	*sp = s + 1;
	return (sr_buf_append(w, s, 1));
}

static int
end_word(struct sr_strv *words, struct sr_buf *w)
{
	int rv =
	    sr_strv_pushn(words, w->p != NULL ? (char *) w->p : "", w->len);

	w->len = 0;
	return (rv);
}

int
sr_split_words(const char *s, struct sr_strv *out)
{
	struct sr_strv words;
	struct sr_buf w;
	bool inword = false;
	int rv = 0;

	sr_strv_init(&words);
	sr_buf_init(&w);
	while (rv == 0 && *s != '\0') {
		if (s[0] == '\\' && s[1] == '\n') { /* line continuation */
			s += 2;
		} else if (is_blank(*s)) {
			if (inword)
				rv = end_word(&words, &w);
			inword = false;
			s++;
		} else {
			inword = true;
			rv = scan_part(&s, &w);
		}
	}
	if (rv == 0 && inword)
		rv = end_word(&words, &w);
	sr_buf_free(&w);
	if (rv != 0) {
		sr_strv_free(&words);
		return (rv);
	}
	return (strv_append(out, &words));
}

static const struct {
	const char *name;
	int outcome;
} map_names[] = {
    {"passed", OC_PASSED},     {"failed", OC_FAILED},
    {"no_tests", OC_NO_TESTS}, {"transient", SR_EXIT_TRANSIENT},
    {"error", OC_ERROR},
};

static void
trim(const char **s, size_t *n)
{
	while (*n > 0 && is_blank(**s)) {
		(*s)++;
		(*n)--;
	}
	while (*n > 0 && is_blank((*s)[*n - 1]))
		(*n)--;
}

static int
map_outcome(const char *s, size_t n, int *outcome)
{
	for (size_t i = 0; i < sizeof(map_names) / sizeof(map_names[0]); i++) {
		if (strlen(map_names[i].name) == n &&
		    memcmp(map_names[i].name, s, n) == 0) {
			*outcome = map_names[i].outcome;
			return (0);
		}
	}
	return (SR_EINVAL);
}

/* "*" is -1; otherwise a decimal exit code 0..255. */
static int
map_code(const char *s, size_t n, int *code)
{
	int v = 0;

	if (n == 1 && s[0] == '*') {
		*code = -1;
		return (0);
	}
	if (n == 0 || n > 3)
		return (SR_EINVAL);
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return (SR_EINVAL);
		v = v * 10 + (s[i] - '0');
	}
	if (v > 255)
		return (SR_EINVAL);
	*code = v;
	return (0);
}

static bool
map_has(const struct sr_profile *p, int code)
{
	for (size_t i = 0; i < p->nmap; i++)
		if (p->map[i].code == code)
			return (true);
	return (false);
}

/*
 * One "CODE=OUTCOME" entry; *star records whether "*" was given, *why says
 * what is wrong with a refused entry.
 */
static int
map_entry(struct sr_profile *p, const char *s, size_t n, bool *star,
          const char **why)
{
	const char *eq = memchr(s, '=', n);
	size_t kn, vn;
	const char *v;
	int code, outcome;

	if (eq == NULL)
		return (SR_EINVAL);
	kn = (size_t) (eq - s);
	v = eq + 1;
	vn = n - kn - 1;
	trim(&s, &kn);
	trim(&v, &vn);
	if (map_code(s, kn, &code) != 0 || map_outcome(v, vn, &outcome) != 0)
		return (SR_EINVAL);
	*why = "given twice";
	if (code < 0) {
		if (*star)
			return (SR_EINVAL);
		*star = true;
		p->other = outcome;
		return (0);
	}
	if (map_has(p, code))
		return (SR_EINVAL);
	*why = "too many entries";
	if (p->nmap == SR_PROFILE_MAXMAP)
		return (SR_ETOOBIG);
	p->map[p->nmap].code = code;
	p->map[p->nmap++].outcome = outcome;
	return (0);
}

/*
 * Parse "CODE=OUTCOME,..." into p. The defaults (0=passed, *=failed) hold
 * for whatever the spec does not mention, so "4=transient" alone keeps 0
 * passing. A code or "*" given twice, an empty entry (",,", a trailing
 * comma), an unknown outcome or a code outside 0..255 is refused.
 */
static int
parse_exitmap(struct sr_profile *p, const char *spec)
{
	bool star = false;
	const char *why;
	size_t n;
	int rv;

	p->nmap = 0;
	p->other = OC_FAILED;
	for (const char *s = spec; s != NULL && *spec != '\0'; s += n + 1) {
		n = strcspn(s, ",");
		why = "want CODE=OUTCOME, CODE 0-255 or *, OUTCOME one of "
		      "passed failed no_tests transient error";
		if ((rv = map_entry(p, s, n, &star, &why)) != 0) {
			sr_error("exit map \"%s\": entry \"%.*s\": %s", spec,
			         (int) n, s, why);
			return (rv);
		}
		if (s[n] == '\0')
			break;
	}
	if (!map_has(p, 0)) {
		if (p->nmap == SR_PROFILE_MAXMAP) {
			sr_error("exit map \"%s\": no room for 0=passed", spec);
			return (SR_ETOOBIG);
		}
		p->map[p->nmap].code = 0;
		p->map[p->nmap++].outcome = OC_PASSED;
	}
	return (0);
}

static void
profile_init(struct sr_profile *p, const char *name)
{
	memset(p, 0, sizeof(*p));
	snprintf(p->name, sizeof(p->name), "%s", name);
	sr_strv_init(&p->argv);
	p->other = OC_FAILED;
}

int
sr_profile_pytest(struct sr_profile *p, const char *python)
{
	static const char tmpl[] = "{python} -m pytest -q -p no:cacheprovider "
	                           "--junitxml={junit} {file}";
	static const struct sr_exitmap map[] = {
	    {0, OC_PASSED}, {1, OC_FAILED},         {2, OC_ERROR},
	    {3, OC_ERROR},  {4, SR_EXIT_TRANSIENT}, {5, OC_NO_TESTS}};
	struct sr_profile np;
	char found[sizeof(np.python)];
	char why[1024];
	int rv;

	if (python == NULL) {
		rv = sr_find_python(found, sizeof(found), why, sizeof(why));
		if (rv != 0) {
			sr_error("pytest profile: %s", why);
			return (rv);
		}
		python = found;
	}
	if (python[0] == '\0' || strlen(python) >= sizeof(np.python))
		return (SR_EINVAL);
	profile_init(&np, "pytest");
	snprintf(np.python, sizeof(np.python), "%s", python);
	if ((rv = sr_split_words(tmpl, &np.argv)) != 0)
		return (rv);
	memcpy(np.map, map, sizeof(map));
	np.nmap = sizeof(map) / sizeof(map[0]);
	np.other = OC_ERROR;
	np.junit = true;
	*p = np;
	return (0);
}

static int
check_template(const struct sr_profile *p, const char *tmpl)
{
	if (p->argv.n == 0) {
		sr_error("generic profile: empty command template");
		return (SR_EINVAL);
	}
	if (!strv_has_substr(&p->argv, "{file}")) {
		sr_error("generic profile: template \"%s\" must contain {file}",
		         tmpl);
		return (SR_EINVAL);
	}
	if (strv_has_substr(&p->argv, "{python}")) {
		sr_error("generic profile: {python} belongs to the pytest "
		         "profile; name the interpreter in the template");
		return (SR_EINVAL);
	}
	return (0);
}

int
sr_profile_generic(struct sr_profile *p, const char *tmpl, const char *exitmap)
{
	struct sr_profile np;
	int rv;

	if (tmpl == NULL)
		return (SR_EINVAL);
	profile_init(&np, "generic");
	if ((rv = sr_split_words(tmpl, &np.argv)) != 0) {
		sr_error("generic profile: cannot split \"%s\": unterminated "
		         "quote or trailing backslash",
		         tmpl);
		return (rv);
	}
	if ((rv = check_template(&np, tmpl)) != 0 ||
	    (rv = parse_exitmap(&np, exitmap)) != 0) {
		sr_strv_free(&np.argv);
		return (rv);
	}
	np.junit = strv_has_substr(&np.argv, "{junit}");
	*p = np;
	return (0);
}

void
sr_profile_free(struct sr_profile *p)
{
	sr_strv_free(&p->argv);
	p->nmap = 0;
}

int
sr_profile_classify(const struct sr_profile *p, int exit_code)
{
	for (size_t i = 0; i < p->nmap; i++)
		if (p->map[i].code == exit_code)
			return (p->map[i].outcome);
	return (p->other);
}

/* Substitute the placeholders of word w into b (appended). */
static int
subst_word(const char *w, const struct subst *sb, struct sr_buf *b)
{
	static const char *const keys[] = {"{file}", "{junit}", "{tmp}",
	                                   "{python}"};
	const char *vals[] = {sb->file, sb->junit, sb->tmp, sb->python};
	int rv = 0;

	while (rv == 0 && *w != '\0') {
		size_t i, k = sizeof(keys) / sizeof(keys[0]);

		for (i = 0; *w == '{' && i < k; i++)
			if (strncmp(w, keys[i], strlen(keys[i])) == 0)
				break;
		if (*w != '{' || i == k) {
			rv = sr_buf_append(b, w++, 1);
			continue;
		}
		if (vals[i] == NULL || vals[i][0] == '\0')
			return (SR_EINVAL); /* e.g. {junit} but no path given */
		rv = sr_buf_append(b, vals[i], strlen(vals[i]));
		w += strlen(keys[i]);
	}
	return (rv);
}

static int
push_subst(struct sr_strv *av, const char *w, const struct subst *sb)
{
	struct sr_buf b;
	int rv;

	sr_buf_init(&b);
	if ((rv = subst_word(w, sb, &b)) == 0)
		rv = sr_strv_pushn(av, b.p != NULL ? (char *) b.p : "", b.len);
	sr_buf_free(&b);
	return (rv);
}

/*
 * An argument that is exactly "{file}" becomes one argument per file; any
 * other argument containing {file} is repeated once per file (so
 * "--test={file}" gives "--test=a --test=b").
 */
static int
expand_word(struct sr_strv *av, const char *w, const struct sr_strv *files,
            struct subst sb)
{
	int rv = 0;

	if (strcmp(w, "{file}") == 0) {
		for (size_t i = 0; rv == 0 && i < files->n; i++)
			rv = sr_strv_push(av, files->v[i]);
		return (rv);
	}
	if (strstr(w, "{file}") == NULL)
		return (push_subst(av, w, &sb));
	for (size_t i = 0; rv == 0 && i < files->n; i++) {
		sb.file = files->v[i];
		rv = push_subst(av, w, &sb);
	}
	return (rv);
}

static int
check_files(const struct sr_strv *files)
{
	if (files == NULL || files->n == 0)
		return (SR_EINVAL);
	for (size_t i = 0; i < files->n; i++) {
		if (files->v[i][0] == '\0')
			return (SR_EINVAL);
		if (files->v[i][0] == '-') {
			sr_error("refusing file argument \"%s\": it would be "
			         "read as an option",
			         files->v[i]);
			return (SR_EPATH);
		}
	}
	return (0);
}

int
sr_profile_argv(const struct sr_profile *p, const struct sr_strv *files,
                const char *junit, const char *tmp, struct sr_strv *out)
{
	struct subst sb = {NULL, junit, tmp, p->python};
	struct sr_strv av;
	int rv;

	if ((rv = check_files(files)) != 0)
		return (rv);
	sr_strv_init(&av);
	for (size_t i = 0; i < p->argv.n; i++) {
		if ((rv = expand_word(&av, p->argv.v[i], files, sb)) != 0) {
			sr_strv_free(&av);
			return (rv);
		}
	}
	return (strv_append(out, &av));
}

static bool
shell_safe(const char *s)
{
	static const char ok[] = "abcdefghijklmnopqrstuvwxyz"
	                         "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	                         "0123456789@%+=:,./-_";

	return (s[0] != '\0' && s[strspn(s, ok)] == '\0');
}

/* Append s as one shell word: as is when safe, else in single quotes. */
static int
append_quoted(struct sr_buf *b, const char *s)
{
	int rv;

	if (b->len > 0 && (rv = sr_buf_append(b, " ", 1)) != 0)
		return (rv);
	if (shell_safe(s))
		return (sr_buf_append(b, s, strlen(s)));
	if ((rv = sr_buf_append(b, "'", 1)) != 0)
		return (rv);
	for (; rv == 0 && *s != '\0'; s++) {
		if (*s == '\'')
			rv = sr_buf_append(b, "'\\''", 4);
		else
			rv = sr_buf_append(b, s, 1);
	}
	return (rv != 0 ? rv : sr_buf_append(b, "'", 1));
}

/*
 * The generic template with the file filled in. An option carrying the
 * report path ("--junitxml={junit}") is dropped, being of use only to
 * shardrun; any other {junit} or {tmp} points into /tmp so the command
 * still runs.
 */
static int
repro_generic(const struct sr_profile *p, const char *file, struct sr_buf *b)
{
	struct subst sb = {file, REPRO_JUNIT, REPRO_TMP, NULL};
	struct sr_buf w;
	int rv = 0;

	sr_buf_init(&w);
	for (size_t i = 0; rv == 0 && i < p->argv.n; i++) {
		const char *a = p->argv.v[i];

		if (a[0] == '-' && strstr(a, "{junit}") != NULL)
			continue;
		w.len = 0;
		if ((rv = subst_word(a, &sb, &w)) == 0)
			rv = append_quoted(b, w.p != NULL ? (char *) w.p : "");
	}
	sr_buf_free(&w);
	return (rv);
}

int
sr_profile_repro(const struct sr_profile *p, const char *file,
                 struct sr_buf *out)
{
	struct sr_buf b;
	int rv;

	if (file == NULL || file[0] == '\0')
		return (SR_EINVAL);
	sr_buf_init(&b);
	if (strcmp(p->name, "pytest") == 0) {
		if ((rv = append_quoted(&b, p->python)) == 0 &&
		    (rv = sr_buf_append(&b, " -m pytest", 10)) == 0)
			rv = append_quoted(&b, file);
	} else {
		rv = repro_generic(p, file, &b);
	}
	if (rv == 0)
		rv = sr_buf_append(out, b.p, b.len);
	sr_buf_free(&b);
	return (rv);
}

static bool
is_executable(const char *path)
{
	struct stat st;

	return (stat(path, &st) == 0 && S_ISREG(st.st_mode) &&
	        access(path, X_OK) == 0);
}

/*
 * Look name up in $PATH like execvp would, except that empty and relative
 * entries are skipped: the current directory is never searched.
 */
static int
search_path(const char *name, char *out, size_t outsz)
{
	const char *env = getenv("PATH");
	const char *s = env != NULL && *env != '\0' ? env : "/usr/bin:/bin";

	for (; *s != '\0'; s += (s[0] == ':')) {
		size_t n = strcspn(s, ":");
		char cand[PATH_MAX];
		int len =
		    snprintf(cand, sizeof(cand), "%.*s/%s", (int) n, s, name);

		s += n;
		if (n == 0 || cand[0] != '/' || len < 0 ||
		    (size_t) len >= sizeof(cand) || (size_t) len >= outsz)
			continue;
		if (is_executable(cand)) {
			memcpy(out, cand, (size_t) len + 1);
			return (0);
		}
	}
	return (SR_ENOENT);
}

/*
 * Ask path, with no shell and no output, whether it can import pytest.
 * find_spec looks the package up without importing it: ~25 ms instead of
 * ~0.25 s on every run. A pytest that is there but broken still fails
 * every file with its own message.
 */
static int
imports_pytest(const char *path, char *reason, size_t rsz)
{
	char *const argv[] = {(char *) path, "-c",
	                      "import importlib.util as u, sys; "
	                      "sys.exit(u.find_spec('pytest') is None)",
	                      NULL};
	posix_spawn_file_actions_t fa;
	pid_t pid, w;
	int status, rv;

	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, 1, 2);
	rv = posix_spawn(&pid, path, &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (rv != 0) {
		snprintf(reason, rsz, "cannot execute (%s)", strerror(rv));
		return (SR_ENOENT);
	}
	while ((w = waitpid(pid, &status, 0)) < 0 && errno == EINTR)
		;
	if (w < 0) {
		snprintf(reason, rsz, "cannot wait for it (%s)",
		         strerror(errno));
		return (SR_EIO);
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return (0);
	if (WIFEXITED(status))
		snprintf(reason, rsz, "cannot import pytest (exit status %d)",
		         WEXITSTATUS(status));
	else
		snprintf(reason, rsz, "cannot import pytest (killed by SIG%s)",
		         sr_signame(WTERMSIG(status)));
	return (SR_ENOENT);
}

/* Locate cmd (a path, or a name searched in $PATH) and check it. */
static int
try_python(const char *cmd, char *found, size_t fsz, char *reason, size_t rsz)
{
	if (strchr(cmd, '/') == NULL) {
		if (search_path(cmd, found, fsz) != 0) {
			snprintf(reason, rsz, "not found in PATH");
			return (SR_ENOENT);
		}
	} else if (!is_executable(cmd) || strlen(cmd) >= fsz) {
		snprintf(reason, rsz, "not an executable file");
		return (SR_ENOENT);
	} else {
		memcpy(found, cmd, strlen(cmd) + 1);
	}
	return (imports_pytest(found, reason, rsz));
}

static int
give_python(const char *found, char *out, size_t outsz)
{
	if (strlen(found) >= outsz)
		return (SR_ETOOBIG);
	memcpy(out, found, strlen(found) + 1);
	return (0);
}

static void set_why(char *why, size_t whysz, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
set_why(char *why, size_t whysz, const char *fmt, ...)
{
	va_list ap;

	if (why == NULL || whysz == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(why, whysz, fmt, ap);
	va_end(ap);
}

int
sr_find_python(char *out, size_t outsz, char *why, size_t whysz)
{
	const char *env = getenv("SHARDRUN_PYTHON");
	char found[PATH_MAX], onpath[PATH_MAX] = "";
	char r1[256], r2[256];

	if (env != NULL && env[0] != '\0') {
		if (try_python(env, found, sizeof(found), r1, sizeof(r1)) == 0)
			return (give_python(found, out, outsz));
		set_why(
		    why, whysz,
		    "SHARDRUN_PYTHON=%s: %s; point it at an interpreter that "
		    "has pytest, or unset it",
		    env, r1);
		return (SR_ENOENT);
	}
	if (try_python("python3", onpath, sizeof(onpath), r1, sizeof(r1)) == 0)
		return (give_python(onpath, out, outsz));
	if (strcmp(onpath, "/usr/bin/python3") == 0)
		snprintf(r2, sizeof(r2), "same as above");
	else if (try_python("/usr/bin/python3", found, sizeof(found), r2,
	                    sizeof(r2)) == 0)
		return (give_python(found, out, outsz));
	set_why(
	    why, whysz,
	    "no Python that can import pytest: tried python3 on PATH%s%s: %s; "
	    "/usr/bin/python3: %s; install python3-pytest or set "
	    "SHARDRUN_PYTHON",
	    onpath[0] ? " = " : "", onpath, r1, r2);
	return (SR_ENOENT);
}

const char *
sr_outcome_name(int outcome)
{
	static const char *const names[] = {"none",     "passed",  "failed",
	                                    "no_tests", "crashed", "timeout",
	                                    "missing",  "error",   "refused"};

	if (outcome < 0 || (size_t) outcome >= sizeof(names) / sizeof(names[0]))
		return ("unknown");
	return (names[outcome]);
}
