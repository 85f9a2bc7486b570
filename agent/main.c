/*
 * main.c - the `shardrun-agent` daemon.
 *
 *   shardrun-agent (--connect URL | --listen URL) --workspace DIR
 *       [--slots N|auto] (--cluster-key-file F | --keys DIR
 *       --authorized-keys F) [--profile pytest|generic --cmd T]
 *
 * --connect: a CI agent; it serves one run and exits (0 when the run
 * completed). --listen: a fleet agent; it serves run after run, several at
 * once up to its slots, until SIGTERM.
 */
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"
#include "spawner.h"
#include "sr/err.h"
#include "sr/log.h"
#include "sr/util.h"

struct aopts {
	struct sr_agent_cfg cfg;
	char workspace[PATH_MAX];
	char name[256];
	const char *workspace_arg;
	const char *cluster_key_file;
	const char *keys;
	const char *authorized_keys;
	const char *profile;
	const char *cmd;
	const char *exit_codes;
	struct sr_profile prof;
	struct sr_trust trust;
};

static volatile sig_atomic_t stop;

static void
on_signal(int sig)
{
	(void) sig;
	stop = 1;
}

static void
usage(FILE *f)
{
	fputs("usage: shardrun-agent (--connect URL | --listen URL) "
	      "--workspace DIR\n"
	      "           [--slots N|auto] (--cluster-key-file F | --keys DIR "
	      "--authorized-keys F)\n"
	      "           [--name NAME] [--profile pytest|generic --cmd "
	      "TEMPLATE [--exit-codes MAP]]\n"
	      "           [--kill-grace S] [--lost S] [--forkserver on|off] "
	      "[-v]\n"
	      "           [--prepare 'CMD with {commit} {workspace}']... "
	      "[--prepare-timeout S]\n",
	      f);
}

static const struct option longopts[] = {
    {"connect", required_argument, NULL, 'c'},
    {"listen", required_argument, NULL, 'l'},
    {"workspace", required_argument, NULL, 'w'},
    {"slots", required_argument, NULL, 's'},
    {"cluster-key-file", required_argument, NULL, 'k'},
    {"keys", required_argument, NULL, 'K'},
    {"authorized-keys", required_argument, NULL, 'A'},
    {"name", required_argument, NULL, 'N'},
    {"profile", required_argument, NULL, 'p'},
    {"cmd", required_argument, NULL, 'C'},
    {"exit-codes", required_argument, NULL, 'E'},
    {"kill-grace", required_argument, NULL, 'g'},
    {"lost", required_argument, NULL, 'L'},
    {"forkserver", required_argument, NULL, 'F'},
    {"prepare", required_argument, NULL, 'P'},
    {"prepare-timeout", required_argument, NULL, 'T'},
    {"verbose", no_argument, NULL, 'v'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static int
parse_seconds(const char *opt, const char *s, double *out)
{
	char *end;
	double v = strtod(s, &end);

	if (end == s || *end != '\0' || !(v > 0) || v > 1e7) {
		sr_error("%s: expected a number of seconds > 0, got '%s'", opt,
		         s);
		return (SR_EINVAL);
	}
	*out = v;
	return (0);
}

static int
parse_slots(struct aopts *o, const char *s)
{
	char *end;
	long n;

	if (strcmp(s, "auto") == 0)
		return (0);
	n = strtol(s, &end, 10);
	if (*end != '\0' || n < 1 || n > 4096) {
		sr_error("--slots: expected 1..4096 or auto, got '%s'", s);
		return (SR_EINVAL);
	}
	o->cfg.slots = (unsigned) n;
	return (0);
}

static int
parse_opt(struct aopts *o, int c, const char *arg)
{
	switch (c) {
	case 'c':
		return (sr_strv_push(&o->cfg.connect, arg));
	case 'l':
		return (sr_strv_push(&o->cfg.listen, arg));
	case 'w':
		o->workspace_arg = arg;
		return (0);
	case 's':
		return (parse_slots(o, arg));
	case 'k':
		o->cluster_key_file = arg;
		return (0);
	case 'K':
		o->keys = arg;
		return (0);
	case 'A':
		o->authorized_keys = arg;
		return (0);
	case 'N':
		snprintf(o->name, sizeof(o->name), "%s", arg);
		return (0);
	case 'p':
		o->profile = arg;
		return (0);
	case 'C':
		o->cmd = arg;
		return (0);
	case 'E':
		o->exit_codes = arg;
		return (0);
	case 'g':
		o->cfg.kill_grace_s = atof(arg);
		return (0);
	case 'L':
		o->cfg.lost_s = atof(arg);
		return (0);
	case 'F':
		o->cfg.forkserver = strcmp(arg, "off") != 0;
		return (0);
	case 'P':
		return (sr_strv_push(&o->cfg.prepare, arg));
	case 'T':
		return (parse_seconds("--prepare-timeout", arg,
		                      &o->cfg.prepare_timeout_s));
	case 'v':
		sr_log_set_level(sr_log_level() + 1);
		return (0);
	case 'h':
		usage(stdout);
		exit(0);
	default:
		return (SR_EINVAL);
	}
}

static int
load_trust(struct aopts *o)
{
	const char *env = getenv("SHARDRUN_CLUSTER_KEY");

	if (o->cluster_key_file != NULL)
		return (sr_trust_cluster_file(&o->trust, o->cluster_key_file));
	if (o->keys != NULL && o->authorized_keys != NULL)
		return (sr_trust_nodes(&o->trust, o->keys, o->authorized_keys));
	if (env != NULL && env[0] != '\0')
		return (sr_trust_cluster_hex(&o->trust, env));
	sr_error("no key: pass --cluster-key-file F (make one with `shardrun "
	         "keygen --cluster-key F`), set SHARDRUN_CLUSTER_KEY, or use "
	         "--keys DIR --authorized-keys F");
	return (SR_EKEY);
}

static int
load_profile(struct aopts *o)
{
	if (o->profile == NULL || strcmp(o->profile, "pytest") == 0)
		return (sr_profile_pytest(&o->prof, NULL));
	if (strcmp(o->profile, "generic") == 0 && o->cmd != NULL)
		return (sr_profile_generic(&o->prof, o->cmd, o->exit_codes));
	sr_error("--profile: pytest, or generic with --cmd 'ARGV with {file}'");
	return (SR_EINVAL);
}

static int
configure(struct aopts *o, int argc, char **argv)
{
	int c;
	int rv;

	while ((c = getopt_long(argc, argv, "v", longopts, NULL)) != -1)
		if (c == '?' || (rv = parse_opt(o, c, optarg)) != 0)
			return (SR_EINVAL);
	if ((o->cfg.connect.n == 0) == (o->cfg.listen.n == 0) ||
	    o->workspace_arg == NULL) {
		usage(stderr);
		return (SR_EINVAL);
	}
	if (realpath(o->workspace_arg, o->workspace) == NULL) {
		sr_error("--workspace %s: no such directory", o->workspace_arg);
		return (SR_ENOENT);
	}
	if (o->name[0] == '\0')
		gethostname(o->name, sizeof(o->name) - 1);
	if ((rv = load_trust(o)) != 0 || (rv = load_profile(o)) != 0)
		return (rv);
	o->cfg.workspace = o->workspace;
	o->cfg.name = o->name;
	o->cfg.profile = &o->prof;
	o->cfg.trust = &o->trust;
	o->cfg.once = o->cfg.connect.n > 0;
	o->cfg.stop = &stop;
	return (0);
}

int
main(int argc, char **argv)
{
	struct aopts o;
	struct sr_spawner *sp;
	int rv;

	if (sr_init("shardrun-agent") != 0)
		return (2);
	/* The spawner forks before nng starts any thread. */
	if (sr_spawner_start(&sp) != 0) {
		sr_error("cannot start the spawner process");
		return (2);
	}
	memset(&o, 0, sizeof(o));
	sr_agent_cfg_init(&o.cfg);
	o.cfg.spawner = sp;
	if ((rv = configure(&o, argc, argv)) == 0) {
		signal(SIGINT, on_signal);
		signal(SIGTERM, on_signal);
		signal(SIGPIPE, SIG_IGN);
		sr_info("agent %s: %u slots, workspace %s, %s", o.name,
		        o.cfg.slots, o.workspace,
		        sr_spawner_pidns(sp) ? "PID namespace per attempt"
		                             : "process group per attempt");
		rv = sr_agent_run(&o.cfg);
	}
	sr_spawner_stop(sp);
	sr_profile_free(&o.prof);
	sr_trust_clear(&o.trust);
	sr_strv_free(&o.cfg.connect);
	sr_strv_free(&o.cfg.listen);
	sr_strv_free(&o.cfg.prepare);
	return (rv == 0 ? 0 : 2);
}
