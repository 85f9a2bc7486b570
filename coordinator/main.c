/*
 * main.c - the `shardrun` command: run, plan, keygen.
 *
 * `run` with no agents named is local mode: an agent with -n slots runs in
 * a thread of this process and speaks the real protocol over inproc://,
 * authenticated with a random cluster key; the code path is the one a
 * cluster uses.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"
#include "cli.h"
#include "collect.h"
#include "coord.h"
#include "history.h"
#include "plan.h"
#include "report.h"
#include "spawner.h"
#include "sr/err.h"
#include "sr/log.h"
#include "sr/util.h"
#include "sr/wire.h"
#include "setup.h"

static volatile sig_atomic_t interrupted;

static void
on_signal(int sig)
{
	if (interrupted) {
		/* Second Ctrl-C: leave now; the spawner kills the rest. */
		signal(sig, SIG_DFL);
		raise(sig);
	}
	interrupted = 1;
}

static void
usage(FILE *f)
{
	fputs("usage: shardrun run [PATH...] [-n N|auto] [--timeout S] "
	      "[--reruns N]\n"
	      "                    [--max-restarts N] [--json FILE] "
	      "[--junit-xml FILE]\n"
	      "                    [--history FILE] [--profile pytest|generic] "
	      "[--cmd TEMPLATE]\n"
	      "                    [--exit-codes MAP] [--collect fast|pytest]\n"
	      "                    [--listen URL --agents-min N [--wait S] | "
	      "--agent URL...]\n"
	      "                    [--cluster-key-file F | --keys DIR "
	      "--authorized-keys F]\n"
	      "                    [--forkserver on|off] [--preload MODS] "
	      "[--split on|off]\n"
	      "                    [--speculate on|off] [--bundle S]\n"
	      "       shardrun plan [PATH...] --shards N [--index I] "
	      "[--history FILE]\n"
	      "       shardrun keygen (--cluster-key FILE | --node DIR)\n"
	      "       shardrun version\n"
	      "Exit status: 0 all passed, 1 test failures, 2 usage or "
	      "infrastructure error,\n130 interrupted. See README.md.\n",
	      f);
}

struct local_agent {
	pthread_t thread;
	struct sr_agent_cfg cfg;
	volatile sig_atomic_t stop;
	int rv;
	bool started;
};

static void *
agent_thread(void *arg)
{
	struct local_agent *la = arg;

	la->rv = sr_agent_run(&la->cfg);
	return (NULL);
}

static int
start_local_agent(struct local_agent *la, struct sr_setup *st, const char *url)
{
	sr_agent_cfg_init(&la->cfg);
	la->cfg.name = "local";
	la->cfg.workspace = st->workspace;
	la->cfg.slots = st->local_slots;
	la->cfg.profile = &st->profile;
	la->cfg.trust = &st->trust;
	la->cfg.once = true;
	la->cfg.spawner = st->spawner;
	la->cfg.kill_grace_s = st->opts.kill_grace_s;
	la->cfg.stop = &la->stop;
	if (sr_strv_push(&la->cfg.connect, url) != 0)
		return (SR_ENOMEM);
	if (pthread_create(&la->thread, NULL, agent_thread, la) != 0)
		return (SR_EIO);
	la->started = true;
	return (0);
}

static void
stop_local_agent(struct local_agent *la)
{
	if (!la->started)
		return;
	la->stop = 1;
	pthread_join(la->thread, NULL);
	sr_strv_free(&la->cfg.connect);
}

static int
exit_status(const struct sr_suite *s, int rv, const struct sr_run_info *ri)
{
	unsigned counts[SR_FINAL_COUNT];

	if (ri->interrupted)
		return (130);
	if (rv != 0)
		return (2);
	sr_report_counts(s, counts);
	if (counts[SR_FINAL_FAILED] + counts[SR_FINAL_CRASHED] +
	        counts[SR_FINAL_TIMEOUT] + counts[SR_FINAL_ERROR] >
	    0)
		return (1);
	if (sr_setup_no_tests_ran(s)) {
		fprintf(stderr, "shardrun: no test ran in any file\n");
		return (2);
	}
	return (0);
}

static int
coordinate(struct sr_setup *st, struct sr_run_info *ri)
{
	struct local_agent la = {0};
	struct sr_coord_cfg cc;
	char url[128];
	int rv = 0;

	sr_setup_coord_cfg(st, &cc, &interrupted);
	if (st->local_slots > 0) {
		snprintf(url, sizeof(url), "inproc://shardrun-%ld-%p",
		         (long) getpid(), (void *) st);
		rv = sr_strv_push(&cc.listen, url);
		if (rv == 0)
			rv = start_local_agent(&la, st, url);
	}
	if (rv == 0)
		rv = sr_coord_run(&cc, ri);
	stop_local_agent(&la);
	sr_strv_free(&cc.listen);
	sr_strv_free(&cc.agents);
	return (rv);
}

static int
cmd_run(int argc, char **argv, struct sr_spawner *sp)
{
	struct sr_setup st;
	struct sr_run_info ri = {0};
	int rv;
	int status;

	if ((rv = sr_setup_run(&st, argc, argv, sp)) != 0) {
		sr_setup_free(&st);
		return (rv == SR_EAGAIN ? 0 : 2);
	}
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	rv = coordinate(&st, &ri);
	status = exit_status(&st.suite, rv, &ri);
	if (rv == 0 || rv == SR_EIO || ri.interrupted)
		sr_setup_report(&st, &ri);
	sr_setup_free(&st);
	return (status);
}

static int
cmd_plan(int argc, char **argv)
{
	struct sr_setup st;
	int rv;

	if ((rv = sr_setup_plan(&st, argc, argv)) == 0)
		rv = sr_setup_print_plan(&st, stdout);
	sr_setup_free(&st);
	return (rv == 0 ? 0 : 2);
}

static int
cmd_keygen(int argc, char **argv)
{
	char line[256];
	int rv;

	if (argc == 3 && strcmp(argv[1], "--cluster-key") == 0) {
		if ((rv = sr_keygen_cluster(argv[2])) != 0) {
			sr_error("cannot write %s: %s", argv[2],
			         errno == EEXIST ? "it already exists"
			                         : sr_strerror(rv));
			return (2);
		}
		printf("wrote a new cluster key to %s (mode 0600)\n", argv[2]);
		return (0);
	}
	if (argc == 3 && strcmp(argv[1], "--node") == 0) {
		if ((rv = sr_keygen_node(argv[2], line, sizeof(line))) != 0) {
			sr_error("cannot write keys into %s: %s", argv[2],
			         sr_strerror(rv));
			return (2);
		}
		printf("%s\n", line);
		return (0);
	}
	usage(stderr);
	return (2);
}

int
main(int argc, char **argv)
{
	struct sr_spawner *sp = NULL;
	int status;

	if (sr_init("shardrun") != 0)
		return (2);
	if (argc < 2 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0) {
		usage(argc < 2 ? stderr : stdout);
		return (argc < 2 ? 2 : 0);
	}
	if (strcmp(argv[1], "version") == 0 ||
	    strcmp(argv[1], "--version") == 0) {
		printf("shardrun %s (protocol %u)\n", SR_VERSION,
		       (unsigned) SR_PROTO_MAJOR);
		return (0);
	}
	if (strcmp(argv[1], "run") == 0) {
		/* The spawner forks before any thread exists. */
		if (sr_spawner_start(&sp) != 0) {
			sr_error("cannot start the spawner process");
			return (2);
		}
		status = cmd_run(argc - 1, argv + 1, sp);
		sr_spawner_stop(sp);
		return (status);
	}
	if (strcmp(argv[1], "plan") == 0)
		return (cmd_plan(argc - 1, argv + 1));
	if (strcmp(argv[1], "keygen") == 0)
		return (cmd_keygen(argc - 1, argv + 1));
	sr_error("unknown command '%s'", argv[1]);
	usage(stderr);
	return (2);
}
