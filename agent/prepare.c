/*
 * prepare.c - a fleet agent readies its workspace for a run.
 *
 * `--prepare 'git -C {workspace} fetch origin {commit}'` (repeatable) names
 * commands run in order, without a shell, when a run arrives for a commit
 * other than the checked-out one; {commit} and {workspace} are substituted.
 * They run through the spawner like attempts (their own process tree,
 * killed if the agent goes), while the agent keeps heartbeating; the
 * workspace check follows, so a preparation that did not produce the run's
 * files is still refused. A checkout cannot change under another run's
 * feet: a run needing another commit is refused while one is served.
 */
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "agent_int.h"
#include "sr/err.h"
#include "sr/fingerprint.h"
#include "sr/log.h"
#include "sr/util.h"

static bool
commit_ok(const char *c)
{
	return (strlen(c) == 40 && strspn(c, "0123456789abcdefABCDEF") == 40);
}

static bool
other_runs(const struct agent *a, const struct session *s)
{
	for (const struct session *o = a->sessions; o != NULL; o = o->next)
		if (o != s && !o->over &&
		    (o->welcomed || o->checking || o->preparing))
			return (true);
	return (false);
}

/* One word of a template with its placeholders filled in. */
static int
fill(const char *word, const char *commit, const char *ws, struct sr_buf *b)
{
	int rv = 0;

	while (*word != '\0' && rv == 0) {
		if (strncmp(word, "{commit}", 8) == 0) {
			rv = sr_buf_append(b, commit, strlen(commit));
			word += 8;
		} else if (strncmp(word, "{workspace}", 11) == 0) {
			rv = sr_buf_append(b, ws, strlen(ws));
			word += 11;
		} else {
			rv = sr_buf_append(b, word++, 1);
		}
	}
	return (rv);
}

static int
build_argv(const struct agent *a, const char *tmpl, const char *commit,
           struct sr_strv *argv)
{
	struct sr_strv words;
	int rv;

	sr_strv_init(&words);
	if ((rv = sr_split_words(tmpl, &words)) == 0 && words.n == 0)
		rv = SR_EINVAL;
	for (size_t i = 0; rv == 0 && i < words.n; i++) {
		struct sr_buf b;

		sr_buf_init(&b);
		if ((rv = fill(words.v[i], commit, a->cfg->workspace, &b)) == 0)
			rv = sr_strv_push(argv, b.p ? (char *) b.p : "");
		sr_buf_free(&b);
	}
	sr_strv_free(&words);
	return (rv);
}

static void
log_path(const struct agent *a, char *out, size_t n)
{
	snprintf(out, n, "%s/prepare.log", a->tmp_root);
}

static int
run_step(struct agent *a, struct session *s)
{
	struct sr_spawn_req req = {0};
	struct sr_strv argv;
	char log[PATH_MAX + 16];
	int rv;

	sr_strv_init(&argv);
	log_path(a, log, sizeof(log));
	if ((rv = build_argv(a, a->cfg->prepare.v[s->prep_step], s->prep_commit,
	                     &argv)) == 0) {
		sr_info("preparing the workspace: %s",
		        a->cfg->prepare.v[s->prep_step]);
		s->prep_id = a->next_spawn_id++;
		s->prep_deadline = sr_now() + a->cfg->prepare_timeout_s;
		s->prep_killed = false;
		req.id = s->prep_id;
		req.lane = 0;
		req.argv = (const char *const *) argv.v;
		req.envp = (const char *const *) a->env.v;
		req.cwd = a->cfg->workspace;
		req.log = log;
		rv = sr_spawner_spawn(a->cfg->spawner, &req);
	}
	sr_strv_free(&argv);
	return (rv);
}

int
sr_ag_prepare(struct agent *a, struct session *s, const char *commit)
{
	char mine[41];

	if (a->cfg->prepare.n == 0 || !commit_ok(commit) ||
	    (sr_git_commit(a->cfg->workspace, mine) == 0 &&
	     strcmp(mine, commit) == 0))
		return (SR_EAGAIN);
	if (other_runs(a, s)) {
		sr_ag_refuse(a, s,
		             "busy with another run; cannot check out another "
		             "commit under it",
		             commit);
		return (SR_EAGAIN);
	}
	snprintf(s->prep_commit, sizeof(s->prep_commit), "%s", commit);
	s->prep_step = 0;
	s->preparing = true;
	if (run_step(a, s) != 0) {
		s->preparing = false;
		sr_ag_refuse(a, s, "cannot run the prepare command", NULL);
		return (SR_EAGAIN);
	}
	return (0);
}

/* A prepare command that hangs (a fetch from a server that stopped
 * answering) must not hold the run: kill it when its time is up; its exit
 * then refuses the run. */
void
sr_ag_prepare_tick(struct agent *a, struct session *s, double now)
{
	if (!s->preparing || s->prep_killed || now < s->prep_deadline)
		return;
	sr_warn("the prepare command ran out of time (%.0f s): killing it",
	        a->cfg->prepare_timeout_s);
	s->prep_killed = true;
	(void) sr_spawner_kill(a->cfg->spawner, s->prep_id, SIGKILL);
}

void
sr_ag_prepare_exit(struct agent *a, struct session *s,
                   const struct sr_spawn_ev *ev)
{
	char why[PATH_MAX + 4200];
	char log[PATH_MAX + 16];
	char *tail = NULL;

	if (ev->err == 0 && WIFEXITED(ev->status) &&
	    WEXITSTATUS(ev->status) == 0) {
		if (++s->prep_step < a->cfg->prepare.n && run_step(a, s) == 0)
			return;
		s->preparing = false;
		if (s->prep_step == a->cfg->prepare.n) {
			s->checking = true; /* now check what it produced */
			sr_ag_check_step(a, s);
			return;
		}
	}
	s->preparing = false;
	log_path(a, log, sizeof(log));
	(void) sr_read_tail(log, 4000, &tail, NULL);
	snprintf(why, sizeof(why), "the prepare command %s (%s): %s%s",
	         s->prep_killed ? "timed out" : "failed",
	         a->cfg->prepare
	             .v[s->prep_step < a->cfg->prepare.n ? s->prep_step : 0],
	         ev->err ? "could not start: " : "", tail != NULL ? tail : "");
	free(tail);
	sr_ag_refuse(a, s, why, NULL);
}
