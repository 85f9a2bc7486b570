/*
 * setup.c - preparing a run from its command line, and reporting it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "collect.h"
#include "plan.h"
#include "report.h"
#include "setup.h"
#include "shardrun.pb-c.h"
#include "sr/err.h"
#include "sr/fingerprint.h"
#include "sr/log.h"
#include "sr/util.h"

static unsigned
cpus(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	return (n > 0 ? (unsigned) n : 1);
}

static void
setup_init(struct sr_setup *st)
{
	memset(st, 0, sizeof(*st));
	sr_opts_init(&st->opts);
	sr_suite_init(&st->suite);
	sr_history_init(&st->hist);
}

void
sr_setup_free(struct sr_setup *st)
{
	sr_opts_free(&st->opts);
	sr_suite_free(&st->suite);
	sr_history_free(&st->hist);
	sr_profile_free(&st->profile);
	sr_trust_clear(&st->trust);
	free(st->hashes);
	sr_strv_free(&st->preload);
	sr_strv_free(&st->preload_dirs);
}

static int
make_profile(struct sr_setup *st)
{
	const struct sr_opts *o = &st->opts;

	if (strcmp(o->profile, "generic") == 0) {
		if (o->cmd == NULL) {
			sr_error("--profile generic needs --cmd 'ARGV with "
			         "{file}'");
			return (SR_EINVAL);
		}
		if (o->bundle_s > 0) {
			sr_error(
			    "--bundle needs the pytest profile (a bundle's "
			    "files are judged from pytest's JUnit report)");
			return (SR_EINVAL);
		}
		return (
		    sr_profile_generic(&st->profile, o->cmd, o->exit_codes));
	}
	if (o->cmd != NULL)
		sr_warn("--cmd is ignored by the pytest profile");
	if (o->bundle_s > 0 && o->timeout_s > 0 && o->bundle_s >= o->timeout_s)
		sr_warn(
		    "--bundle %gs is not below --timeout %gs: a bundle gets "
		    "the per-file timeout as a whole, and one that times "
		    "out has its files run alone",
		    o->bundle_s, o->timeout_s);
	return (sr_profile_pytest(&st->profile, NULL));
}

/*
 * What a fork server preloads: --preload, then the modules that at least
 * 30% of the test files import, and the directories of the test files
 * (pytest's default import mode puts them on sys.path).
 */
static int
preload_list(struct sr_setup *st, const struct sr_imports *im)
{
	char dir[PATH_MAX];
	int rv = 0;

	if (st->opts.preload != NULL)
		rv = sr_split_list(st->opts.preload, &st->preload);
	if (rv == 0)
		rv = sr_imports_frequent(im, 0.3, 16, &st->preload);
	for (size_t i = 0; i < st->suite.n && rv == 0; i++) {
		const char *p = st->suite.files[i].path;
		const char *slash = strrchr(p, '/');

		snprintf(dir, sizeof(dir), "%.*s",
		         slash ? (int) (slash - p) : 1, slash ? p : ".");
		if (!sr_strv_contains(&st->preload_dirs, dir) &&
		    st->preload_dirs.n < 256)
			rv = sr_strv_push(&st->preload_dirs, dir);
	}
	return (rv);
}

static int
collect(struct sr_setup *st)
{
	struct sr_collect_opts co;
	struct sr_imports im;
	int rv;

	if (strcmp(st->profile.name, "generic") == 0)
		return (sr_collect_generic(st->workspace, &st->opts.paths,
		                           &st->suite));
	if ((rv = sr_collect_opts_init(&co, st->workspace)) != 0)
		return (rv);
	sr_imports_init(&im);
	if (st->opts.serial_markers != NULL) {
		sr_strv_free(&co.serial_markers);
		rv = sr_split_list(st->opts.serial_markers, &co.serial_markers);
	}
	if (rv == 0 && st->opts.exclusive_markers != NULL) {
		sr_strv_free(&co.exclusive_markers);
		rv = sr_split_list(st->opts.exclusive_markers,
		                   &co.exclusive_markers);
	}
	co.exact = st->opts.exact;
	co.python = st->profile.python;
	co.imports = &im;
	if (rv == 0)
		rv = sr_collect(&co, &st->opts.paths, &st->suite);
	if (rv == 0)
		rv = preload_list(st, &im);
	if (rv == 0)
		st->configurations =
		    sr_collect_configurations(st->workspace, &st->suite);
	sr_imports_free(&im);
	sr_collect_opts_free(&co);
	return (rv);
}

static int
estimates(struct sr_setup *st)
{
	int rv;

	if (st->opts.history != NULL)
		rv = snprintf(st->hist_path, sizeof(st->hist_path), "%s",
		              st->opts.history);
	else
		rv = snprintf(st->hist_path, sizeof(st->hist_path),
		              "%s/.shardrun/durations.json", st->workspace);
	if (rv >= (int) sizeof(st->hist_path)) {
		sr_error("history path too long");
		return (SR_ETOOBIG);
	}
	if ((rv = sr_history_load(&st->hist, st->hist_path)) != 0)
		return (rv);
	sr_history_estimate(&st->hist, &st->suite);
	return (0);
}

static int
prepare(struct sr_setup *st, int argc, char **argv)
{
	int rv;

	if ((rv = sr_opts_parse(&st->opts, argc, argv)) != 0)
		return (rv);
	sr_log_set_level(sr_log_level() + st->opts.verbose);
	if (getcwd(st->workspace, sizeof(st->workspace)) == NULL ||
	    realpath(".", st->workspace) == NULL) {
		sr_error("cannot resolve the current directory");
		return (SR_EIO);
	}
	if ((rv = make_profile(st)) != 0 || (rv = collect(st)) != 0 ||
	    (rv = estimates(st)) != 0)
		return (rv);
	if (st->suite.n == 0) {
		sr_error("no test files found under %s%s",
		         st->opts.paths.n ? "the given paths" : "the workspace",
		         strcmp(st->profile.name, "pytest") == 0
		             ? " (pytest's rules: test_*.py, *_test.py)"
		             : "");
		return (SR_ENOENT);
	}
	return (0);
}

static int
read_agents_file(const char *path, struct sr_strv *out)
{
	char *text;
	char *save = NULL;
	int rv;

	if ((rv = sr_read_file(path, 1 << 20, &text, NULL)) != 0) {
		sr_error("cannot read %s: %s", path, sr_strerror(rv));
		return (rv);
	}
	for (char *l = strtok_r(text, "\n", &save); l != NULL && rv == 0;
	     l = strtok_r(NULL, "\n", &save)) {
		l += strspn(l, " \t");
		l[strcspn(l, " \t\r#")] = '\0';
		if (*l != '\0')
			rv = sr_strv_push(out, l);
	}
	free(text);
	return (rv);
}

static int
remote_trust(struct sr_setup *st)
{
	const struct sr_opts *o = &st->opts;
	const char *env = getenv("SHARDRUN_CLUSTER_KEY");

	if (o->cluster_key_file != NULL)
		return (sr_trust_cluster_file(&st->trust, o->cluster_key_file));
	if (o->keys != NULL || o->authorized_keys != NULL) {
		if (o->keys == NULL || o->authorized_keys == NULL) {
			sr_error("--keys and --authorized-keys go together");
			return (SR_EKEY);
		}
		return (
		    sr_trust_nodes(&st->trust, o->keys, o->authorized_keys));
	}
	if (env != NULL && env[0] != '\0')
		return (sr_trust_cluster_hex(&st->trust, env));
	sr_error("a remote run needs a key, and none was given. Make one with "
	         "`shardrun keygen --cluster-key cluster.key`, copy it to "
	         "every agent, and pass --cluster-key-file cluster.key (or "
	         "set SHARDRUN_CLUSTER_KEY to its contents); for per-node "
	         "keys see `shardrun keygen --node`");
	return (SR_EKEY);
}

/* A local agent in node mode proves itself with the coordinator's own
 * keypair, so that key must be authorized on both ends. */
static int
authorize_self(struct sr_trust *t)
{
	uint8_t(*v)[SR_KEY_BYTES];

	if (t->mode != SR_TRUST_NODES ||
	    sr_trust_is_authorized(t, t->static_pk))
		return (0);
	v = realloc(t->authorized, (t->nauthorized + 1) * sizeof(*v));
	if (v == NULL)
		return (SR_ENOMEM);
	memcpy(v[t->nauthorized], t->static_pk, SR_KEY_BYTES);
	t->authorized = v;
	t->nauthorized++;
	return (0);
}

/* What remote agents check their checkouts against. */
static int
fingerprint(struct sr_setup *st)
{
	char path[PATH_MAX * 2];

	if (sr_git_commit(st->workspace, st->commit) != 0)
		st->commit[0] = '\0';
	st->hashes = calloc(st->suite.n ? st->suite.n : 1, sizeof(*st->hashes));
	if (st->hashes == NULL)
		return (SR_ENOMEM);
	for (size_t i = 0; i < st->suite.n; i++) {
		snprintf(path, sizeof(path), "%s/%s", st->workspace,
		         st->suite.files[i].path);
		if (sr_hash_file(path, st->hashes[i]) != 0) {
			sr_error("cannot read %s", st->suite.files[i].path);
			return (SR_EIO);
		}
	}
	return (0);
}

static int
topology(struct sr_setup *st)
{
	struct sr_opts *o = &st->opts;
	bool remote;
	int rv = 0;

	if (o->agents_file != NULL &&
	    (rv = read_agents_file(o->agents_file, &o->agents)) != 0)
		return (rv);
	remote = o->listen.n > 0 || o->agents.n > 0;
	if (!remote) {
		st->local_slots = o->slots ? o->slots : cpus();
		o->agents_min = 1;
		sr_trust_cluster_random(&st->trust);
		return (0);
	}
	if (o->slots_given)
		st->local_slots = o->slots ? o->slots : cpus();
	if (o->listen.n == 0)
		o->agents_min = (unsigned) o->agents.n;
	if (st->local_slots > 0)
		o->agents_min++;
	if ((rv = remote_trust(st)) != 0 || (rv = fingerprint(st)) != 0)
		return (rv);
	return (authorize_self(&st->trust));
}

int
sr_setup_run(struct sr_setup *st, int argc, char **argv, struct sr_spawner *sp)
{
	int rv;

	setup_init(st);
	st->spawner = sp;
	if ((rv = prepare(st, argc, argv)) != 0)
		return (rv);
	return (topology(st));
}

int
sr_setup_plan(struct sr_setup *st, int argc, char **argv)
{
	int rv;

	setup_init(st);
	if ((rv = prepare(st, argc, argv)) != 0)
		return (rv);
	if (st->opts.shards == 0) {
		sr_error("plan needs --shards N");
		return (SR_EINVAL);
	}
	if (st->opts.shard_index >= (int) st->opts.shards) {
		sr_error("--index must be below --shards");
		return (SR_EINVAL);
	}
	return (0);
}

void
sr_setup_coord_cfg(struct sr_setup *st, struct sr_coord_cfg *cc,
                   volatile sig_atomic_t *interrupted)
{
	const struct sr_opts *o = &st->opts;

	sr_coord_cfg_init(cc);
	cc->suite = &st->suite;
	cc->profile = &st->profile;
	cc->trust = &st->trust;
	for (size_t i = 0; i < o->listen.n; i++)
		(void) sr_strv_push(&cc->listen, o->listen.v[i]);
	for (size_t i = 0; i < o->agents.n; i++)
		(void) sr_strv_push(&cc->agents, o->agents.v[i]);
	cc->agents_min = o->agents_min;
	cc->wait_s = o->wait_s;
	/* Local mode: nobody else can come when the local agent is gone. */
	cc->orphan_wait_s = o->listen.n + o->agents.n > 0 ? o->wait_s : 0.5;
	cc->timeout_s = o->timeout_s;
	cc->reruns = o->reruns;
	cc->max_restarts = o->max_restarts;
	cc->heartbeat_s = o->heartbeat_s > 0 ? o->heartbeat_s : 1;
	cc->lease_s = o->lease_s > 0 ? o->lease_s : 10;
	cc->kill_grace_s = o->kill_grace_s;
	cc->tty = isatty(STDERR_FILENO);
	cc->color = getenv("NO_COLOR") == NULL || getenv("NO_COLOR")[0] == 0;
	cc->interrupted = interrupted;
	cc->commit = st->commit;
	cc->hashes = st->hashes;
	cc->forkserver = o->forkserver;
	cc->split = o->split && strcmp(st->profile.name, "pytest") == 0;
	cc->speculate = o->speculate;
	cc->bundle_s = o->bundle_s;
	cc->history = &st->hist;
	cc->workspace = st->workspace;
	cc->python = st->profile.python;
	cc->preload = &st->preload;
	cc->preload_dirs = &st->preload_dirs;
	cc->configurations = st->configurations;
}

bool
sr_setup_no_tests_ran(const struct sr_suite *s)
{
	for (size_t i = 0; i < s->n; i++) {
		const struct sr_attempt *at = sr_file_last(&s->files[i]);

		if (at == NULL || at->outcome != SHARDRUN__OUTCOME__NO_TESTS)
			return (false);
	}
	return (s->n > 0);
}

void
sr_setup_report(struct sr_setup *st, const struct sr_run_info *ri)
{
	int color = isatty(STDOUT_FILENO) &&
	            (getenv("NO_COLOR") == NULL || !getenv("NO_COLOR")[0]);

	sr_report_summary(stdout, &st->suite, ri, &st->profile, color);
	fflush(stdout);
	if (st->opts.json != NULL &&
	    sr_report_json(&st->suite, ri, st->opts.json) != 0)
		sr_error("cannot write %s", st->opts.json);
	if (st->opts.junit != NULL &&
	    sr_report_junit(&st->suite, ri, st->opts.junit) != 0)
		sr_error("cannot write %s", st->opts.junit);
	if (st->opts.no_history)
		return;
	if (sr_history_update(&st->hist, &st->suite) != 0 ||
	    sr_history_save(&st->hist, st->hist_path) != 0)
		sr_warn("cannot write the history file %s", st->hist_path);
}

static json_t *
shard_json(const struct sr_setup *st, const struct sr_plan *p,
           const struct sr_static_plan *sp, unsigned k)
{
	json_t *files = json_array();
	json_t *o = json_object();

	for (size_t i = 0; i < p->n; i++) {
		const struct sr_unit *u = p->units[sp->order[i] - 1];

		if (sp->shard_of[u->id - 1] != k)
			continue;
		for (size_t f = 0; f < u->nfiles; f++)
			json_array_append_new(
			    files,
			    json_string(
			        st->suite.files[sr_unit_file(u, f)].path));
	}
	json_object_set_new(o, "index", json_integer(k));
	json_object_set_new(o, "estimate_s", json_real(sp->loads[k]));
	json_object_set_new(o, "files", files);
	return (o);
}

static double
plan_bound(const struct sr_plan *p, unsigned shards)
{
	double *w = malloc((p->n + 1) * sizeof(*w));
	double lb;

	if (w == NULL)
		return (0);
	for (size_t i = 0; i < p->n; i++)
		w[i] = p->units[i]->weight;
	lb = sr_lower_bound(w, p->n, shards);
	free(w);
	return (lb);
}

static int
print_static(struct sr_setup *st, const struct sr_plan *p,
             const struct sr_static_plan *sp, FILE *out)
{
	json_t *root = json_object();
	json_t *shards = json_array();
	double makespan = 0;

	for (unsigned k = 0; k < sp->shards; k++) {
		if (sp->loads[k] > makespan)
			makespan = sp->loads[k];
		if (st->opts.shard_index < 0 ||
		    (unsigned) st->opts.shard_index == k)
			json_array_append_new(shards, shard_json(st, p, sp, k));
	}
	json_object_set_new(root, "shards", shards);
	json_object_set_new(root, "makespan_s", json_real(makespan));
	json_object_set_new(root, "lower_bound_s",
	                    json_real(plan_bound(p, sp->shards)));
	json_dumpf(root, out, JSON_INDENT(2));
	fputc('\n', out);
	json_decref(root);
	return (0);
}

int
sr_setup_print_plan(struct sr_setup *st, FILE *out)
{
	struct sr_plan p;
	struct sr_static_plan sp = {0};
	int rv;

	sr_plan_init(&p);
	if ((rv = sr_plan_build(&p, &st->suite)) == 0 &&
	    (rv = sr_plan_static(&p, st->opts.shards, &sp)) == 0)
		rv = print_static(st, &p, &sp, out);
	sr_static_plan_free(&sp);
	sr_plan_free(&p);
	return (rv);
}
