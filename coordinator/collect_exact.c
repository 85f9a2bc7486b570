/*
 * collect_exact.c - exact collection: asking pytest itself.
 *
 * pytest --collect-only runs with a small plugin of ours that writes, for
 * every item pytest kept, "SRITEM<TAB>nodeid<TAB>markers" to a file (a
 * file, not stdout: conftest prints cannot garble it). That sees markers
 * added by conftest hooks and plugins, and gives the test ids a long file
 * is split by.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sr/err.h"
#include "sr/log.h"
#include "sr/path.h"
#include "sr/util.h"

#include "collect.h"
#include "collect_exact.h"

#define MAX_ITEMS (1u << 30) /* the item list */

extern char **environ;

/* Exact collection: pytest's arguments before the root and the paths. */
static const char *const pytest_args[] = {
    "-m", "pytest",           "--collect-only", "-q", "-p", "no:cacheprovider",
    "-p", "shardrun_collect", "--rootdir",      NULL};

static const char plugin_src[] =
    "import os\n"
    "\n"
    "def pytest_collection_finish(session):\n"
    "    out = os.environ['SHARDRUN_COLLECT_OUT']\n"
    "    with open(out, 'w', encoding='utf-8', errors='backslashreplace') "
    "as f:\n"
    "        for item in session.items:\n"
    "            names = sorted({m.name for m in item.iter_markers()})\n"
    "            nodeid = ' '.join(item.nodeid.split('\\n'))\n"
    "            nodeid = nodeid.replace('\\t', ' ')\n"
    "            f.write('SRITEM\\t%s\\t%s\\n' % (nodeid, ','.join(names)))\n";

static int
make_tmpdir(char *dir, size_t dirsz)
{
	const char *tmp = getenv("TMPDIR");
	char path[PATH_MAX];
	int rv;

	if (tmp == NULL || tmp[0] == '\0')
		tmp = "/tmp";
	if (snprintf(dir, dirsz, "%s/shardrun-collect.XXXXXX", tmp) >=
	        (int) dirsz ||
	    mkdtemp(dir) == NULL) {
		sr_error("collect: cannot create a temporary directory in %s",
		         tmp);
		return (SR_EIO);
	}
	snprintf(path, sizeof(path), "%s/shardrun_collect.py", dir);
	if ((rv = sr_write_atomic(path, plugin_src, sizeof(plugin_src) - 1,
	                          0600)) != 0)
		(void) sr_rmtree(dir);
	return (rv);
}

/* The environment of the parent, with the plugin's directory on
 * PYTHONPATH and no bytecode written into the workspace. */
static int
exact_env(const char *dir, struct sr_strv *env)
{
	const char *old = getenv("PYTHONPATH");
	struct sr_buf b;
	int rv = 0;

	for (char **e = environ; rv == 0 && *e != NULL; e++)
		if (strncmp(*e, "PYTHONPATH=", 11) != 0 &&
		    strncmp(*e, "SHARDRUN_COLLECT_OUT=", 21) != 0 &&
		    strncmp(*e, "PYTHONDONTWRITEBYTECODE=", 24) != 0)
			rv = sr_strv_push(env, *e);
	sr_buf_init(&b);
	if (rv == 0)
		rv = sr_buf_printf(&b, "PYTHONPATH=%s%s%s", dir,
		                   old && *old ? ":" : "",
		                   old && *old ? old : "");
	if (rv == 0 && (rv = sr_strv_push(env, (char *) b.p)) == 0) {
		b.len = 0;
		rv = sr_buf_printf(&b, "SHARDRUN_COLLECT_OUT=%s/items", dir);
	}
	if (rv == 0 && (rv = sr_strv_push(env, (char *) b.p)) == 0)
		rv = sr_strv_push(env, "PYTHONDONTWRITEBYTECODE=1");
	sr_buf_free(&b);
	return (rv);
}

static const char *
python(const struct sr_collect_opts *o)
{
	return (o->python != NULL ? o->python : "python3");
}

static int
exact_argv(const struct sr_collect_opts *o, const char *real,
           const struct sr_strv *args, struct sr_strv *argv)
{
	char arg[PATH_MAX + 2];
	int rv;

	if ((rv = sr_strv_push(argv, python(o))) != 0 ||
	    (rv = sr_strv_push_all(argv, pytest_args)) != 0 ||
	    (rv = sr_strv_push(argv, real)) != 0)
		return (rv);
	for (size_t i = 0; rv == 0 && i < args->n; i++) {
		/* a file named "-x.py" must not read as an option */
		snprintf(arg, sizeof(arg), "%s%s",
		         args->v[i][0] == '-' ? "./" : "", args->v[i]);
		rv = sr_strv_push(argv, arg);
	}
	return (rv);
}

/* Start pytest on argv with its output in log; *pid its process. */
static int
spawn_logged(char *const argv[], char *const envp[], const char *cwd,
             const char *log, pid_t *pid)
{
	posix_spawn_file_actions_t fa;
	int rv;

	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, log,
	                                 O_WRONLY | O_CREAT | O_TRUNC, 0600);
	posix_spawn_file_actions_adddup2(&fa, 1, 2);
	posix_spawn_file_actions_addchdir_np(&fa, cwd);
	rv = posix_spawnp(pid, argv[0], &fa, NULL, argv, envp);
	posix_spawn_file_actions_destroy(&fa);
	if (rv != 0) {
		sr_error("collect: cannot run %s: %s", argv[0], strerror(rv));
		return (SR_EIO);
	}
	return (0);
}

int
sr_collect_start(const struct sr_collect_opts *o, const char *real,
                 const struct sr_strv *args, struct sr_collect_job *j)
{
	struct sr_strv argv, env;
	char log[PATH_MAX];
	int rv;

	j->pid = -1;
	j->timeout_s = o->timeout_s;
	j->end = sr_now() + o->timeout_s;
	if ((rv = make_tmpdir(j->dir, sizeof(j->dir))) != 0)
		return (rv);
	sr_strv_init(&argv);
	sr_strv_init(&env);
	snprintf(log, sizeof(log), "%s/log", j->dir);
	if ((rv = exact_argv(o, real, args, &argv)) == 0 &&
	    (rv = exact_env(j->dir, &env)) == 0)
		rv = spawn_logged(argv.v, env.v, real, log, &j->pid);
	sr_strv_free(&argv);
	sr_strv_free(&env);
	if (rv != 0)
		(void) sr_rmtree(j->dir);
	return (rv);
}

/* Wait for the job's pytest to end (it has not been waited for). */
static void
wait_end(struct sr_collect_job *j)
{
	while (waitpid(j->pid, &j->status, 0) < 0 && errno == EINTR)
		;
	j->pid = -1;
}

static void
kill_wait(struct sr_collect_job *j)
{
	if (j->pid > 0) {
		kill(j->pid, SIGKILL);
		wait_end(j);
	}
}

int
sr_collect_poll(struct sr_collect_job *j, bool *done)
{
	pid_t w;

	*done = j->pid <= 0; /* ended: never waitpid(-1) */
	if (*done)
		return (0);
	while ((w = waitpid(j->pid, &j->status, WNOHANG)) < 0 && errno == EINTR)
		;
	if (w < 0) {
		j->pid = -1; /* not ours to wait for, or gone: never kill it */
		return (SR_EIO);
	}
	if (w == j->pid) {
		*done = true;
		j->pid = -1;
		return (0);
	}
	if (j->timeout_s > 0 && sr_now() >= j->end) {
		kill_wait(j);
		sr_warn("collect: pytest took longer than %.1fs, stopped",
		        j->timeout_s);
		return (SR_ETIMEOUT);
	}
	return (0);
}

void
sr_collect_cancel(struct sr_collect_job *j)
{
	kill_wait(j);
	(void) sr_rmtree(j->dir);
}

/* Whether pytest's collection ended well; says why not. */
static int
exact_status(const struct sr_collect_job *j)
{
	int st = j->status;
	char log[PATH_MAX], *tail = NULL;

	if (WIFEXITED(st) && (WEXITSTATUS(st) == 0 || WEXITSTATUS(st) == 5))
		return (0); /* 5: no tests collected, an empty suite */
	snprintf(log, sizeof(log), "%s/log", j->dir);
	(void) sr_read_tail(log, 1500, &tail, NULL);
	sr_error("collect: pytest --collect-only failed (%s %d); its output "
	         "ends with:\n%s",
	         WIFEXITED(st) ? "exit" : "signal",
	         WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st),
	         tail ? tail : "");
	free(tail);
	return (SR_EIO);
}

/* One "SRITEM<TAB>nodeid<TAB>markers" line. */
static int
exact_item(const struct sr_collect_opts *o, char *line, struct sr_suite *s,
           struct sr_strv *ids)
{
	char *id = line + 7, *marks, *sep, *save, rel[PATH_MAX];
	struct sr_file *f;
	size_t idx;
	int rv;

	if (strncmp(line, "SRITEM\t", 7) != 0 ||
	    (marks = strchr(id, '\t')) == NULL)
		return (0);
	*marks++ = '\0';
	if (ids != NULL && (rv = sr_strv_push(ids, id)) != 0)
		return (rv);
	if ((sep = strstr(id, "::")) != NULL)
		*sep = '\0';
	if (sr_collect_normalize(id, rel, sizeof(rel)) != 0 ||
	    strcmp(rel, ".") == 0) {
		sr_warn("collect: %s is outside the workspace, skipped", id);
		return (0);
	}
	if (s->n == 0 || strcmp(s->files[s->n - 1].path, rel) != 0)
		if ((rv = sr_suite_add(s, rel, &idx)) != 0)
			return (rv);
	f = &s->files[s->n - 1];
	f->ntests++;
	for (char *m = strtok_r(marks, ",", &save); m != NULL;
	     m = strtok_r(NULL, ",", &save)) {
		f->serial |= sr_strv_contains(&o->serial_markers, m);
		f->exclusive |= sr_strv_contains(&o->exclusive_markers, m);
	}
	return (0);
}

/* Sorted: fold the entries of one file (items need not come in file
 * order) into one. */
static void
fold_files(struct sr_suite *s)
{
	size_t j = 0;

	sr_suite_sort(s);
	for (size_t i = 0; i < s->n; i++) {
		struct sr_file *prev = j > 0 ? &s->files[j - 1] : NULL;

		if (prev == NULL || strcmp(prev->path, s->files[i].path) != 0) {
			s->files[j++] = s->files[i];
			continue;
		}
		prev->ntests += s->files[i].ntests;
		prev->serial |= s->files[i].serial;
		prev->exclusive |= s->files[i].exclusive;
	}
	s->n = j;
}

static int
exact_parse(const struct sr_collect_opts *o, const char *dir,
            struct sr_suite *s, struct sr_strv *ids)
{
	char path[PATH_MAX], *text, *save;
	size_t len;
	int rv;

	snprintf(path, sizeof(path), "%s/items", dir);
	if ((rv = sr_read_file(path, MAX_ITEMS, &text, &len)) != 0) {
		sr_error("collect: no item list from pytest (%s)",
		         sr_strerror(rv));
		return (rv == SR_ENOENT ? SR_EIO : rv);
	}
	text[len] = '\0'; /* empty when pytest found nothing */
	for (char *l = strtok_r(text, "\n", &save); rv == 0 && l != NULL;
	     l = strtok_r(NULL, "\n", &save))
		rv = exact_item(o, l, s, ids);
	free(text);
	if (rv == 0)
		fold_files(s);
	return (rv);
}

int
sr_collect_finish(const struct sr_collect_opts *o, struct sr_collect_job *j,
                  struct sr_suite *out, struct sr_strv *ids)
{
	int rv;

	if ((rv = exact_status(j)) == 0)
		rv = exact_parse(o, j->dir, out, ids);
	(void) sr_rmtree(j->dir);
	return (rv);
}

int
sr_collect_pytest(const struct sr_collect_opts *o, const char *real,
                  const struct sr_strv *args, struct sr_suite *out,
                  struct sr_strv *ids)
{
	struct sr_collect_job j;
	bool done = false;
	int rv;

	if ((rv = sr_collect_start(o, real, args, &j)) != 0)
		return (rv);
	if (o->timeout_s <= 0)
		wait_end(&j); /* nothing to stop it for: no polling */
	while ((rv = sr_collect_poll(&j, &done)) == 0 && !done)
		usleep(10000);
	if (rv != 0) {
		sr_collect_cancel(&j);
		return (rv);
	}
	return (sr_collect_finish(o, &j, out, ids));
}
