/*
 * slot.c - running one unit's files on one slot: spawn, timeout, classify,
 * transient retries, result.
 */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "slot.h"
#include "sr/err.h"
#include "sr/log.h"
#include "sr/path.h"
#include "sr/util.h"

#define TAIL_BYTES    4096
#define JUNIT_MAX     (4u * 1024u * 1024u)
#define CHECKS        3 /* failed stats before a file counts as missing */
#define CHECK_SPACE_S 0.1
#define BACKOFF_MAX_S 8.0
#define FS_WAIT_S     60.0 /* longest wait for a fork server to be ready */

static void advance(struct sr_slot *s, const struct sr_slot_env *e);
static void try_file(struct sr_slot *s, const struct sr_slot_env *e);

static const char *
cur_file(const struct sr_slot *s)
{
	return (s->files.v[s->idx]);
}

int
sr_slot_assign(struct sr_slot *s, const struct sr_slot_env *e,
               const Shardrun__Assignment *a, const struct sr_slot_run *run,
               double received)
{
	int rv = 0;

	sr_strv_init(&s->files);
	sr_strv_init(&s->selectors);
	for (size_t i = 0; i < a->n_files && rv == 0; i++)
		rv = sr_strv_push(&s->files, a->files[i]);
	for (size_t i = 0; i < a->n_selectors && rv == 0; i++)
		rv = sr_strv_push(&s->selectors, a->selectors[i]);
	if (rv != 0 || s->files.n == 0) {
		sr_strv_free(&s->files);
		sr_strv_free(&s->selectors);
		return (rv ? rv : SR_EPROTO);
	}
	s->run = run;
	s->busy = true;
	s->unit = a->unit;
	s->attempt = a->attempt;
	s->exclusive = a->exclusive;
	s->bundle = a->bundle && s->files.n > 1 && s->selectors.n == 0 &&
	            strcmp(e->cfg->profile->name, "pytest") == 0;
	s->timeout_s = a->timeout_ms / 1000.0;
	s->kill_grace_s = a->kill_grace_ms > 0 ? a->kill_grace_ms / 1000.0
	                                       : e->cfg->kill_grace_s;
	s->idx = 0;
	s->unit_t0 = received;
	s->cancelled = false;
	s->phase = PHASE_IDLE;
	advance(s, e);
	return (0);
}

void
sr_slot_release(struct sr_slot *s)
{
	sr_strv_free(&s->files);
	sr_strv_free(&s->selectors);
	s->busy = false;
	s->owner = NULL;
	s->phase = PHASE_IDLE;
}

static void
read_outputs(const struct sr_slot *s, Shardrun__Result *r, char **tail,
             char **junit)
{
	char path[PATH_MAX + 32];
	size_t len;

	*tail = NULL;
	*junit = NULL;
	snprintf(path, sizeof(path), "%s/output.log", s->dir);
	if (sr_read_tail(path, TAIL_BYTES, tail, &len) == 0) {
		r->output_tail.data = (uint8_t *) *tail;
		r->output_tail.len = len;
	}
	snprintf(path, sizeof(path), "%s/junit.xml", s->dir);
	if (sr_read_file(path, JUNIT_MAX, junit, &len) == 0) {
		r->junit_xml.data = (uint8_t *) *junit;
		r->junit_xml.len = len;
	}
}

/* The current file is over: report it and move on. */
static void
finish(struct sr_slot *s, const struct sr_slot_env *e, int outcome,
       int exit_code, int sig, const char *msg, long rss)
{
	Shardrun__Result r = SHARDRUN__RESULT__INIT;
	double now = s->ended > 0 ? s->ended : sr_now();
	char *tail;
	char *junit;

	r.unit = s->unit;
	r.attempt = s->attempt;
	r.index = (uint32_t) s->idx;
	r.file = (char *) cur_file(s);
	r.outcome = outcome;
	r.exit_code = exit_code;
	r.signal = (uint32_t) sig;
	r.tries = s->tries;
	r.start_us = (uint64_t) ((s->started - s->unit_t0) * 1e6);
	r.duration_us = (uint64_t) ((now - s->started) * 1e6);
	r.message = (char *) (msg ? msg : "");
	r.slot = s->index;
	r.peak_rss_kb = (uint64_t) (rss > 0 ? rss : 0);
	if (!s->bundle && s->parse_s < now - s->started)
		r.parse_us = (uint64_t) (s->parse_s * 1e6);
	s->parse_s = 0;
	read_outputs(s, &r, &tail, &junit);
	if (s->tries == 0)
		r.start_us = r.duration_us = 0;
	if (s->bundle)
		sr_bundle_report(s, e, &r);
	else
		e->done(e->arg, s, &r);
	free(tail);
	free(junit);
	s->phase = PHASE_IDLE;
	s->ended = 0;
	s->idx = s->bundle ? s->files.n : s->idx + 1;
}

/*
 * Start the next file, and go on while files end at once (a refused path, a
 * spawn failure): a loop, not recursion, so a long serial unit of such
 * files cannot exhaust the stack. Every entry point calls it last.
 */
static void
advance(struct sr_slot *s, const struct sr_slot_env *e)
{
	while (s->busy && !s->cancelled && s->phase == PHASE_IDLE) {
		if (s->idx >= s->files.n) {
			e->done(e->arg, s, NULL); /* the unit is over */
			return;
		}
		s->tries = 0;
		s->transient = 0;
		s->first_start = s->started = sr_now();
		try_file(s, e);
	}
}

static int
add_env(struct sr_strv *env, const char *key, const char *val)
{
	struct sr_buf b;
	int rv;

	sr_buf_init(&b);
	if ((rv = sr_buf_printf(&b, "%s=%s", key, val)) == 0)
		rv = sr_strv_push(env, (char *) b.p);
	sr_buf_free(&b);
	return (rv);
}

/* What a try's command line and environment are made of: the slot's
 * current file, or a queued unit's first (a chained try). */
struct try_spec {
	const struct sr_slot_run *run;
	const char *dir; /* the try's directory: log, JUnit, tmp */
	const char *file;
	const struct sr_strv *files; /* a bundle's; NULL: one file */
	const struct sr_strv *selectors;
	uint32_t attempt;
	unsigned index; /* the slot's */
};

static struct try_spec
slot_spec(const struct sr_slot *s)
{
	struct try_spec t = {s->run,        s->dir,     cur_file(s), NULL,
	                     &s->selectors, s->attempt, s->index};

	if (s->bundle)
		t.files = &s->files;
	return (t);
}

static int
build_env(const struct try_spec *s, const struct sr_slot_env *e,
          const char *tmp, struct sr_strv *env)
{
	char num[32];
	int rv = 0;

	for (size_t i = 0; i < e->base_env->n && rv == 0; i++)
		if (strncmp(e->base_env->v[i], "TMPDIR=", 7) != 0)
			rv = sr_strv_push(env, e->base_env->v[i]);
	if (rv == 0)
		rv = add_env(env, "TMPDIR", tmp);
	if (rv == 0)
		rv = add_env(env, "SHARDRUN_RUN_ID", s->run->run_id);
	if (rv == 0) /* a bundle's first file */
		rv = add_env(env, "SHARDRUN_FILE", s->file);
	snprintf(num, sizeof(num), "%u", s->attempt);
	if (rv == 0)
		rv = add_env(env, "SHARDRUN_ATTEMPT", num);
	snprintf(num, sizeof(num), "%u", s->index);
	if (rv == 0)
		rv = add_env(env, "SHARDRUN_SLOT", num);
	if (rv == 0)
		rv = add_env(env, "SHARDRUN_TMP", tmp);
	return (rv);
}

static bool
dir_empty(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *de;
	bool empty = true;

	if (d == NULL)
		return (false);
	while (empty && (de = readdir(d)) != NULL)
		empty = strcmp(de->d_name, ".") == 0 ||
		        strcmp(de->d_name, "..") == 0;
	closedir(d);
	return (empty);
}

/*
 * Each slot keeps three directories (log, JUnit report, private tmp): one
 * for the running try, the others for tries chained behind it (spare_dir
 * picks). A try clears its directory instead of making a new one:
 * creating and removing directories is a measurable share of a short
 * file's cost.
 */
static const char *const dir_suffix[] = {"", ".b", ".c"};

/* Make dir ready for a try: its tmp there and empty, no JUnit report. */
static int
clear_dir(const char *dir, char *tmp, size_t tmpsz)
{
	char junit[PATH_MAX + 16];

	if (snprintf(tmp, tmpsz, "%s/tmp", dir) >= (int) tmpsz)
		return (SR_ETOOBIG);
	snprintf(junit, sizeof(junit), "%s/junit.xml", dir);
	(void) unlink(junit);
	if (dir_empty(tmp)) /* there, and as the last attempt left it */
		return (0);
	(void) sr_rmtree(tmp);
	return (sr_mkdirs(tmp, 0700));
}

/* A plain try runs where the slot's last try ran. */
static int
make_dirs(struct sr_slot *s, const struct sr_slot_env *e, char *tmp,
          size_t tmpsz)
{
	if (s->dir[0] == 0 &&
	    snprintf(s->dir, sizeof(s->dir), "%s/slot-%u", e->tmp_root,
	             s->index) >= (int) sizeof(s->dir)) {
		s->dir[0] = 0;
		return (SR_ETOOBIG);
	}
	return (clear_dir(s->dir, tmp, tmpsz));
}

static int
make_dirs_only(struct sr_slot *s, const struct sr_slot_env *e)
{
	char tmp[PATH_MAX];

	return (make_dirs(s, e, tmp, sizeof(tmp)));
}

static int
build_argv(const struct try_spec *s, const struct sr_slot_env *e,
           const char *tmp, struct sr_strv *argv)
{
	struct sr_strv one;
	char junit[PATH_MAX + 16];
	int rv;

	snprintf(junit, sizeof(junit), "%s/junit.xml", s->dir);
	sr_strv_init(&one);
	if (s->selectors->n > 0 || s->files != NULL)
		return (sr_profile_argv(e->cfg->profile,
		                        s->files ? s->files : s->selectors,
		                        junit, tmp, argv));
	if ((rv = sr_strv_push(&one, s->file)) == 0)
		rv = sr_profile_argv(e->cfg->profile, &one, junit, tmp, argv);
	sr_strv_free(&one);
	return (rv);
}

static bool
fs_wanted_for(const struct sr_slot_run *run, const struct sr_slot_env *e)
{
	return (run->forkserver &&
	        strcmp(e->cfg->profile->name, "pytest") == 0);
}

static bool
fs_wanted(const struct sr_slot *s, const struct sr_slot_env *e)
{
	return (fs_wanted_for(s->run, e));
}

/* pytest's own arguments: what follows "-m pytest" in the argv. */
static bool
pytest_args(const struct sr_strv *argv, struct sr_strv *args)
{
	for (size_t i = 0; i + 1 < argv->n; i++) {
		if (strcmp(argv->v[i], "-m") != 0 ||
		    strcmp(argv->v[i + 1], "pytest") != 0)
			continue;
		for (size_t k = i + 2; k < argv->n; k++)
			if (sr_strv_push(args, argv->v[k]) != 0)
				return (false);
		return (true);
	}
	return (false);
}

static void
fs_start(struct sr_slot *s, const struct sr_slot_env *e)
{
	struct sr_strv env;
	struct sr_fs_start st;

	sr_strv_init(&env);
	for (size_t i = 0; i < e->base_env->n; i++)
		(void) sr_strv_push(&env, e->base_env->v[i]);
	if (sr_spawner_pidns(e->cfg->spawner))
		(void) sr_strv_push(&env, "SHARDRUN_PIDNS=1");
	st.sp = e->cfg->spawner;
	st.spawn_id = (*e->next_spawn_id)++;
	st.dir = s->dir;
	st.python = e->cfg->profile->python;
	st.workspace = e->cfg->workspace;
	st.preload = &s->run->preload;
	st.dirs = &s->run->dirs;
	st.front = s->run->front;
	st.env = &env;
	st.pidns = sr_spawner_pidns(e->cfg->spawner);
	s->fs_run = s->run;
	s->fs_waited_out = false;
	if (sr_forksrv_start(&s->fs, &st) != 0)
		sr_warn("slot %u: cannot start the fork server", s->index);
	sr_strv_free(&env);
}

/*
 * Hand the try to the slot's fork server when the run wants one and it is
 * ready; start one (for the next file) when there is none for this run.
 */
static bool
fs_launch(struct sr_slot *s, const struct sr_slot_env *e,
          const struct sr_strv *argv, const struct sr_strv *env,
          const char *log)
{
	struct sr_strv args;
	struct sr_strv one;
	struct sr_fs_run r = {&args, &s->selectors, e->cfg->workspace, log,
	                      env};
	bool ok;

	if (!fs_wanted(s, e) || s->fs_run != s->run ||
	    s->fs.state != SR_FS_READY)
		return (false);
	sr_strv_init(&args);
	sr_strv_init(&one);
	if (s->bundle)
		r.files = &s->files;
	else if (s->selectors.n == 0)
		r.files = &one;
	ok = (r.files != &one || sr_strv_push(&one, cur_file(s)) == 0) &&
	     pytest_args(argv, &args) && sr_forksrv_run(&s->fs, &r) == 0;
	sr_strv_free(&args);
	sr_strv_free(&one);
	return (ok);
}

static int
spawn(struct sr_slot *s, const struct sr_slot_env *e, bool plain)
{
	struct sr_spawn_req req = {0};
	struct sr_strv argv;
	struct sr_strv env;
	struct try_spec t;
	char tmp[PATH_MAX];
	char log[PATH_MAX + 16];
	int rv;

	sr_strv_init(&argv);
	sr_strv_init(&env);
	s->via_fs = false;
	t = slot_spec(s);
	if ((rv = make_dirs(s, e, tmp, sizeof(tmp))) == 0 &&
	    (rv = build_argv(&t, e, tmp, &argv)) == 0 &&
	    (rv = build_env(&t, e, tmp, &env)) == 0) {
		snprintf(log, sizeof(log), "%s/output.log", s->dir);
		if (!plain && fs_launch(s, e, &argv, &env, log)) {
			s->via_fs = true;
			s->spawn_id = 0;
		} else {
			s->spawn_id = (*e->next_spawn_id)++;
			req.id = s->spawn_id;
			req.lane = s->index + 1;
			req.argv = (const char *const *) argv.v;
			req.envp = (const char *const *) env.v;
			req.cwd = e->cfg->workspace;
			req.log = log;
			rv = sr_spawner_spawn(e->cfg->spawner, &req);
		}
	}
	sr_strv_free(&argv);
	sr_strv_free(&env);
	return (rv);
}

/*
 * While the run's fork server warms up, the file waits for it rather than
 * starting plainly: a plain start pays the same imports the server is
 * paying, and then every later file would too. Bounded by FS_WAIT_S.
 */
static bool
fs_should_wait(struct sr_slot *s, const struct sr_slot_env *e)
{
	if (!fs_wanted(s, e) || s->fs_waited_out)
		return (false);
	if (s->fs_run != s->run)
		sr_slot_fs_stop(s, NULL);
	if (s->fs.state == SR_FS_OFF && make_dirs_only(s, e) == 0)
		fs_start(s, e);
	if (s->fs.state != SR_FS_STARTING)
		return (false);
	if (s->phase != PHASE_FS_WAIT) {
		s->phase = PHASE_FS_WAIT;
		s->next_at = sr_now() + FS_WAIT_S;
	}
	return (true);
}

/* A bundle whose files are not all there and inside the workspace is not
 * run: each of its files runs alone, where absence and refusal are judged
 * file by file. */
static bool
bundle_absent(struct sr_slot *s, const struct sr_slot_env *e)
{
	char abs[PATH_MAX];
	char msg[PATH_MAX + 96];

	for (size_t i = 0; s->bundle && i < s->files.n; i++) {
		if (sr_path_resolve(e->cfg->workspace, s->files.v[i], abs,
		                    sizeof(abs)) == 0)
			continue;
		snprintf(msg, sizeof(msg),
		         "%s is missing or refused: the bundle's files run "
		         "alone",
		         s->files.v[i]);
		finish(s, e, SHARDRUN__OUTCOME__ERROR, -1, 0, msg, 0);
		return (true);
	}
	return (false);
}

/* ---- tries chained behind the running one ---- */

/* Kill the chained tries from ahead[from] on (the spawner drops those not
 * started) and forget them. */
static void
ahead_cancel(struct sr_slot *s, const struct sr_slot_env *e, unsigned from)
{
	for (unsigned i = from; i < s->nahead; i++)
		(void) sr_spawner_kill(e->cfg->spawner, s->ahead[i].id,
		                       SIGKILL);
	if (from < s->nahead)
		s->nahead = from;
}

void
sr_slot_hold_mask(const struct sr_profile *p, uint8_t hold[32])
{
	memset(hold, 0, 32);
	for (int c = 0; c < 256; c++)
		if (sr_profile_classify(p, c) == SR_EXIT_TRANSIENT)
			hold[c / 8] |= (uint8_t) (1u << (c % 8));
}

/* A directory neither the running try nor a chained one uses. */
static int
spare_dir(const struct sr_slot *s, const struct sr_slot_env *e, char *dir)
{
	for (size_t k = 0; k < sizeof(dir_suffix) / sizeof(dir_suffix[0]);
	     k++) {
		bool used;

		if (snprintf(dir, PATH_MAX, "%s/slot-%u%s", e->tmp_root,
		             s->index, dir_suffix[k]) >= PATH_MAX)
			return (SR_ETOOBIG);
		used = strcmp(dir, s->dir) == 0;
		for (unsigned i = 0; i < s->nahead && !used; i++)
			used = strcmp(dir, s->ahead[i].dir) == 0;
		if (!used)
			return (0);
	}
	return (SR_EAGAIN);
}

/* Chain the first file of a (queued as n) behind the try `after`. */
static int
chain_spawn(struct sr_slot *s, const struct sr_slot_env *e,
            const Shardrun__Assignment *a, const struct sr_slot_next *n,
            uint64_t after)
{
	struct sr_spawn_req req = {0};
	struct sr_slot_ahead *h = &s->ahead[s->nahead];
	struct sr_strv sel;
	struct sr_strv argv;
	struct sr_strv env;
	char tmp[PATH_MAX];
	char log[PATH_MAX + 16];
	struct try_spec t = {n->run, h->dir,     a->files[0], NULL,
	                     &sel,   a->attempt, s->index};
	int rv = 0;

	sr_strv_init(&sel);
	sr_strv_init(&argv);
	sr_strv_init(&env);
	for (size_t i = 0; i < a->n_selectors && rv == 0; i++)
		rv = sr_strv_push(&sel, a->selectors[i]);
	if (rv == 0 && (rv = spare_dir(s, e, h->dir)) == 0 &&
	    (rv = clear_dir(h->dir, tmp, sizeof(tmp))) == 0 &&
	    (rv = build_argv(&t, e, tmp, &argv)) == 0 &&
	    (rv = build_env(&t, e, tmp, &env)) == 0) {
		snprintf(log, sizeof(log), "%s/output.log", h->dir);
		req.id = (*e->next_spawn_id)++;
		req.lane = s->index + 1;
		req.argv = (const char *const *) argv.v;
		req.envp = (const char *const *) env.v;
		req.cwd = e->cfg->workspace;
		req.log = log;
		req.after = after;
		memcpy(req.hold, e->hold, sizeof(req.hold));
		if ((rv = sr_spawner_spawn(e->cfg->spawner, &req)) == 0) {
			h->id = req.id;
			h->after = after;
			h->owner = n->owner;
			h->unit = n->unit;
			h->attempt = n->attempt;
			h->whole = a->n_files == 1;
			s->nahead++;
		}
	}
	sr_strv_free(&sel);
	sr_strv_free(&argv);
	sr_strv_free(&env);
	return (rv);
}

/* Chain queued unit next[nahead]'s first file, where it would start the
 * plain way too: not a bundle, not through a fork server, not exclusive,
 * its path inside the workspace. */
static bool
chain_one(struct sr_slot *s, const struct sr_slot_env *e)
{
	const struct sr_slot_next *n = &s->next[s->nahead];
	uint64_t after =
	    s->nahead > 0 ? s->ahead[s->nahead - 1].id : s->spawn_id;
	Shardrun__Assignment *a;
	char abs[PATH_MAX];
	bool ok;

	if ((a = shardrun__assignment__unpack(NULL, n->len, n->packed)) == NULL)
		return (false);
	ok = a->n_files > 0 && !a->exclusive &&
	     !(a->bundle && a->n_files > 1) && !fs_wanted_for(n->run, e) &&
	     sr_path_resolve(e->cfg->workspace, a->files[0], abs,
	                     sizeof(abs)) == 0 &&
	     chain_spawn(s, e, a, n, after) == 0;
	shardrun__assignment__free_unpacked(a, NULL);
	return (ok);
}

/* While a plain try runs its unit's last file, keep the next queued units'
 * first files chained behind it, SR_SLOT_CHAIN deep. */
static void
chain_next(struct sr_slot *s, const struct sr_slot_env *e)
{
	if (!s->busy || s->cancelled || s->phase != PHASE_RUNNING ||
	    s->via_fs || s->spawn_id == 0 || s->signalled ||
	    (!s->bundle && s->idx + 1 < s->files.n))
		return;
	while (s->nahead < SR_SLOT_CHAIN && s->nahead < s->nnext &&
	       (s->nahead == 0 || s->ahead[s->nahead - 1].whole) &&
	       chain_one(s, e))
		;
}

/* The try about to start was chained behind the last one, which has
 * ended: the spawner has started it. Take it over. Chained tries for any
 * other unit are not wanted any more. */
static bool
adopt_ahead(struct sr_slot *s, const struct sr_slot_env *e, uint64_t *after)
{
	struct sr_slot_ahead *h = &s->ahead[0];

	if (s->nahead == 0)
		return (false);
	if (h->owner != s->owner || h->unit != s->unit ||
	    h->attempt != s->attempt || s->idx != 0 || s->tries != 0) {
		ahead_cancel(s, e, 0);
		return (false);
	}
	s->spawn_id = h->id;
	*after = h->after;
	memcpy(s->dir, h->dir, sizeof(s->dir));
	s->via_fs = false;
	memmove(&s->ahead[0], &s->ahead[1],
	        (--s->nahead) * sizeof(s->ahead[0]));
	return (true);
}

static void
begin_try(struct sr_slot *s)
{
	s->tries++;
	s->started = sr_now();
	s->ended = 0;
	s->signalled = false;
	s->deadline = s->timeout_s > 0 ? s->started + s->timeout_s : 0;
	s->kill_at = 0;
}

static void
try_file(struct sr_slot *s, const struct sr_slot_env *e)
{
	char abs[PATH_MAX];
	uint64_t after;
	int rv;

	if (adopt_ahead(s, e, &after)) {
		begin_try(s);
		/* It started when the try it followed ended: its deadline
		 * counts from there. */
		if (after == s->last_id && s->last_end > 0 &&
		    s->last_end < s->started) {
			s->started = s->last_end;
			if (s->deadline > 0)
				s->deadline = s->started + s->timeout_s;
		}
		s->phase = PHASE_RUNNING;
		chain_next(s, e);
		return;
	}
	if (bundle_absent(s, e))
		return;
	rv = sr_path_resolve(e->cfg->workspace, cur_file(s), abs, sizeof(abs));
	if (rv == SR_ENOENT) {
		s->phase = PHASE_CHECKING;
		s->checks = 1;
		s->last_exit = -1;
		s->next_at = sr_now() + CHECK_SPACE_S;
		return;
	}
	if (rv != 0) {
		finish(s, e, SHARDRUN__OUTCOME__REFUSED, -1, 0,
		       "path refused: not a normalised relative path inside "
		       "the workspace",
		       0);
		return;
	}
	if (fs_should_wait(s, e))
		return;
	begin_try(s);
	if ((rv = spawn(s, e, s->fs_waited_out)) != 0) {
		finish(s, e, SHARDRUN__OUTCOME__ERROR, -1, 0,
		       "could not hand the attempt to the spawner", 0);
		return;
	}
	s->phase = PHASE_RUNNING;
	chain_next(s, e);
}

void
sr_slot_on_dropped(struct sr_slot *s, const struct sr_slot_env *e, uint64_t id)
{
	for (unsigned i = 0; i < s->nahead; i++)
		if (s->ahead[i].id == id) { /* and those behind it */
			s->nahead = i;
			return;
		}
	/* Taken over before the word came that it never started (the try
	 * before it had ended before the chain reached the spawner): start
	 * it now. */
	if (!s->busy || s->phase != PHASE_RUNNING || s->via_fs ||
	    s->spawn_id != id)
		return;
	if (s->cancelled) { /* killed meanwhile: there is nothing to wait for */
		sr_slot_release(s);
		return;
	}
	s->tries--;
	try_file(s, e);
	advance(s, e);
}

/* A transient exit (pytest's 4): judge presence over spaced checks. */
static void
on_transient(struct sr_slot *s, int code)
{
	s->phase = PHASE_CHECKING;
	s->checks = 0;
	s->last_exit = code;
	s->next_at = sr_now();
}

static void
on_present(struct sr_slot *s, const struct sr_slot_env *e)
{
	char msg[160];
	double wait;

	if (s->last_exit < 0) {
		try_file(s, e);
		return;
	}
	if (s->transient >= e->cfg->transient_retries) {
		snprintf(
		    msg, sizeof(msg),
		    "exit %d (usage error) persisted over %u tries although "
		    "the file is present",
		    s->last_exit, s->tries);
		finish(s, e, SHARDRUN__OUTCOME__ERROR, s->last_exit, 0, msg, 0);
		return;
	}
	wait = e->cfg->backoff_s * (double) (1u << s->transient);
	s->transient++;
	s->phase = PHASE_BACKOFF;
	s->next_at = sr_now() + (wait < BACKOFF_MAX_S ? wait : BACKOFF_MAX_S);
	sr_info("%s: exit %d with the file present; retry %u in %.1fs",
	        cur_file(s), s->last_exit, s->transient, s->next_at - sr_now());
}

static void
check_presence(struct sr_slot *s, const struct sr_slot_env *e)
{
	char abs[PATH_MAX];
	char msg[PATH_MAX + 64];

	if (sr_path_resolve(e->cfg->workspace, cur_file(s), abs, sizeof(abs)) ==
	    0) {
		on_present(s, e);
		return;
	}
	if (++s->checks < CHECKS) {
		s->next_at = sr_now() + CHECK_SPACE_S;
		return;
	}
	snprintf(msg, sizeof(msg), "file not found: %s", cur_file(s));
	finish(s, e, SHARDRUN__OUTCOME__MISSING, s->last_exit, 0, msg, 0);
}

void
sr_slot_on_exit(struct sr_slot *s, const struct sr_slot_env *e,
                const struct sr_spawn_ev *ev)
{
	char msg[256];
	int st = ev->status;

	if (s->cancelled) {
		sr_slot_release(s);
		return;
	}
	if (ev->started > 0) { /* the spawner's times: a chained try was
		                  started before the slot took it over */
		s->started = ev->started;
		s->ended = ev->ended;
		s->last_id = ev->id;
		s->last_end = ev->ended;
	}
	if (ev->err != 0) {
		snprintf(msg, sizeof(msg), "cannot start %s: %s",
		         e->cfg->profile->argv.v[0], strerror(ev->err));
		finish(s, e, SHARDRUN__OUTCOME__ERROR, -1, 0, msg, 0);
	} else if (s->signalled) {
		snprintf(msg, sizeof(msg), "timeout after %.0fs", s->timeout_s);
		finish(s, e, SHARDRUN__OUTCOME__TIMEOUT,
		       WIFEXITED(st) ? WEXITSTATUS(st) : -1,
		       WIFSIGNALED(st) ? WTERMSIG(st) : 0, msg,
		       ev->peak_rss_kb);
	} else if (WIFSIGNALED(st)) {
		snprintf(msg, sizeof(msg), "killed by SIG%s",
		         sr_signame(WTERMSIG(st)));
		finish(s, e, SHARDRUN__OUTCOME__CRASHED, -1, WTERMSIG(st), msg,
		       ev->peak_rss_kb);
	} else {
		int code = WEXITSTATUS(st);
		int out = sr_profile_classify(e->cfg->profile, code);

		if (out == SR_EXIT_TRANSIENT)
			on_transient(s, code);
		else
			finish(s, e, out, code, 0, NULL, ev->peak_rss_kb);
	}
	advance(s, e);
}

/* Signal the current try's whole process tree. */
static void
signal_try(struct sr_slot *s, const struct sr_slot_env *e, int sig)
{
	if (s->via_fs)
		(void) sr_forksrv_signal(&s->fs, sig);
	else
		(void) sr_spawner_kill(e->cfg->spawner, s->spawn_id, sig);
}

void
sr_slot_tick(struct sr_slot *s, const struct sr_slot_env *e, double now)
{
	if (!s->busy)
		return;
	switch (s->phase) {
	case PHASE_RUNNING:
		if (s->deadline > 0 && now >= s->deadline && !s->signalled) {
			sr_info("%s: timeout after %.0fs, terminating",
			        cur_file(s), s->timeout_s);
			s->signalled = true;
			s->kill_at = now + s->kill_grace_s;
			signal_try(s, e, SIGTERM);
		} else if (s->kill_at > 0 && now >= s->kill_at) {
			s->kill_at = 0;
			signal_try(s, e, SIGKILL);
		}
		break;
	case PHASE_CHECKING:
		if (now >= s->next_at)
			check_presence(s, e);
		break;
	case PHASE_BACKOFF:
		if (now >= s->next_at)
			try_file(s, e);
		break;
	case PHASE_FS_WAIT:
		if (now >= s->next_at) {
			sr_info("slot %u: fork server not ready after %.0fs; "
			        "spawning plainly",
			        s->index, FS_WAIT_S);
			s->fs_waited_out = true;
			try_file(s, e);
		}
		break;
	default:
		break;
	}
	advance(s, e);
}

void
sr_slot_abort(struct sr_slot *s, const struct sr_slot_env *e)
{
	if (!s->busy)
		return;
	if (s->phase == PHASE_RUNNING && s->via_fs) {
		/* The server goes with its child; no exit will be reported. */
		sr_forksrv_stop(&s->fs);
		sr_slot_release(s);
		return;
	}
	if (s->phase == PHASE_RUNNING) {
		s->cancelled = true;
		signal_try(s, e, SIGKILL);
		return; /* released when the exit arrives */
	}
	sr_slot_release(s);
}

int
sr_slot_enqueue(struct sr_slot *s, const struct sr_slot_env *e,
                const Shardrun__Assignment *a, void *owner,
                const struct sr_slot_run *run)
{
	struct sr_slot_next *n;

	if (s->nnext == SR_SLOT_QUEUE)
		return (SR_EAGAIN);
	n = &s->next[s->nnext];
	n->len = shardrun__assignment__get_packed_size(a);
	if ((n->packed = malloc(n->len ? n->len : 1)) == NULL)
		return (SR_ENOMEM);
	shardrun__assignment__pack(a, n->packed);
	n->owner = owner;
	n->unit = a->unit;
	n->attempt = a->attempt;
	n->received = sr_now();
	n->run = run;
	s->nnext++;
	chain_next(s, e);
	return (0);
}

static void
drop_at(struct sr_slot *s, unsigned i)
{
	free(s->next[i].packed);
	memmove(&s->next[i], &s->next[i + 1],
	        (s->nnext - i - 1) * sizeof(s->next[0]));
	s->nnext--;
}

bool
sr_slot_start_next(struct sr_slot *s, const struct sr_slot_env *e)
{
	while (!s->busy && s->nnext > 0) {
		struct sr_slot_next n = s->next[0];
		Shardrun__Assignment *a;

		s->next[0].packed = NULL;
		drop_at(s, 0);
		a = shardrun__assignment__unpack(NULL, n.len, n.packed);
		free(n.packed);
		if (a == NULL)
			continue;
		s->owner = n.owner;
		if (sr_slot_assign(s, e, a, n.run, n.received) != 0)
			s->owner = NULL;
		shardrun__assignment__free_unpacked(a, NULL);
	}
	if (!s->busy)
		ahead_cancel(s, e, 0); /* its unit could not be taken */
	return (s->busy);
}

void
sr_slot_drop_queued(struct sr_slot *s, const struct sr_slot_env *e,
                    const void *owner, uint32_t unit, uint32_t attempt)
{
	for (unsigned i = 0; i < s->nnext;) {
		struct sr_slot_next *n = &s->next[i];

		if ((owner != NULL && n->owner != owner) ||
		    (unit != 0 && (n->unit != unit || n->attempt != attempt))) {
			i++;
			continue;
		}
		ahead_cancel(s, e, i); /* ahead[k] is next[k]'s */
		drop_at(s, i);
	}
}

/* The server could not fork for this try: run it the plain way. */
static void
fs_fallback(struct sr_slot *s, const struct sr_slot_env *e, const char *why)
{
	sr_info("slot %u: fork server unusable (%s); spawning instead",
	        s->index, why);
	sr_forksrv_stop(&s->fs);
	s->fs.state = SR_FS_DEAD; /* for the rest of this run (fs_run) */
	if (s->busy && s->phase == PHASE_FS_WAIT)
		try_file(s, e);
	else if (s->busy && s->phase == PHASE_RUNNING && s->via_fs &&
	         spawn(s, e, true) != 0)
		finish(s, e, SHARDRUN__OUTCOME__ERROR, -1, 0,
		       "could not hand the attempt to the spawner", 0);
}

void
sr_slot_fs_event(struct sr_slot *s, const struct sr_slot_env *e)
{
	struct sr_fs_ev ev;
	struct sr_spawn_ev sev = {0};
	bool running = s->busy && s->phase == PHASE_RUNNING && s->via_fs;

	while (sr_forksrv_read(&s->fs, &ev) == 0) {
		bool waiting = s->busy && s->phase == PHASE_FS_WAIT;

		if (ev.type == SR_FS_EV_READY) {
			s->fs_waited_out = false;
			if (waiting)
				try_file(s, e);
		} else if (ev.type == SR_FS_EV_NOFORK) {
			fs_fallback(s, e, ev.why);
		} else if (ev.type == SR_FS_EV_STATUS && running) {
			sev.status = ev.status;
			s->parse_s = ev.parse_s; /* finish() takes it */
			sr_slot_on_exit(s, e, &sev);
			s->parse_s = 0; /* a transient exit: retried */
		} else if (ev.type == SR_FS_EV_GONE) {
			/* Killed by us for a timeout or a cancel: start another
			 * for the next file; died by itself: not again. */
			bool ours = ev.status == 1 ||
			            (running && (s->signalled || s->cancelled));

			sr_forksrv_stop(&s->fs);
			s->fs.state = ours ? SR_FS_OFF : SR_FS_DEAD;
			if (waiting)
				try_file(s, e); /* spawns plainly */
			if (running) {
				sev.status = SIGKILL; /* a wait status */
				sr_slot_on_exit(s, e, &sev);
			}
			break;
		}
		running = s->busy && s->phase == PHASE_RUNNING && s->via_fs;
	}
	advance(s, e);
}

void
sr_slot_fs_stop(struct sr_slot *s, const struct sr_slot_run *run)
{
	if (run != NULL && s->fs_run != run)
		return;
	sr_forksrv_stop(&s->fs);
	s->fs_run = NULL;
}

void
sr_slot_fs_prestart(struct sr_slot *s, const struct sr_slot_env *e,
                    const struct sr_slot_run *run)
{
	const struct sr_slot_run *keep = s->run;

	if (s->busy || s->fs.state != SR_FS_OFF || !run->forkserver ||
	    strcmp(e->cfg->profile->name, "pytest") != 0)
		return;
	s->run = run;
	if (make_dirs_only(s, e) == 0)
		fs_start(s, e);
	s->run = keep;
}

void
sr_slot_fs_exited(struct sr_slot *s, const struct sr_slot_env *e)
{
	struct sr_spawn_ev sev = {0};
	bool running = s->busy && s->phase == PHASE_RUNNING && s->via_fs;
	bool waiting = s->busy && s->phase == PHASE_FS_WAIT;
	bool ours = s->fs.state == SR_FS_KILLING;

	if (s->fs.fd >= 0 || s->fs.state == SR_FS_OFF ||
	    s->fs.state == SR_FS_DEAD)
		return; /* connected: its socket reports the end */
	sr_forksrv_stop(&s->fs);
	s->fs.state = ours ? SR_FS_OFF : SR_FS_DEAD;
	if (waiting)
		try_file(s, e);
	if (running) {
		sev.status = SIGKILL;
		sr_slot_on_exit(s, e, &sev);
	}
	advance(s, e);
}
