/*
 * cli.c - option parsing for `shardrun run` and `shardrun plan`.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "sr/err.h"
#include "sr/log.h"

enum {
	OPT_TIMEOUT = 256,
	OPT_RERUNS,
	OPT_MAX_RESTARTS,
	OPT_JSON,
	OPT_JUNIT,
	OPT_HISTORY,
	OPT_NO_HISTORY,
	OPT_PROFILE,
	OPT_CMD,
	OPT_EXIT_CODES,
	OPT_COLLECT,
	OPT_SERIAL_MARKERS,
	OPT_EXCLUSIVE_MARKERS,
	OPT_LISTEN,
	OPT_AGENT,
	OPT_AGENTS_FILE,
	OPT_AGENTS_MIN,
	OPT_WAIT,
	OPT_CLUSTER_KEY_FILE,
	OPT_KEYS,
	OPT_AUTHORIZED_KEYS,
	OPT_KILL_GRACE,
	OPT_HEARTBEAT,
	OPT_LEASE,
	OPT_SHARDS,
	OPT_INDEX,
	OPT_FORKSERVER,
	OPT_PRELOAD,
	OPT_SPLIT,
	OPT_SPECULATE,
	OPT_BUNDLE,
};

static const struct option longopts[] = {
    {"slots", required_argument, NULL, 'n'},
    {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {"reruns", required_argument, NULL, OPT_RERUNS},
    {"max-restarts", required_argument, NULL, OPT_MAX_RESTARTS},
    {"json", required_argument, NULL, OPT_JSON},
    {"junit-xml", required_argument, NULL, OPT_JUNIT},
    {"history", required_argument, NULL, OPT_HISTORY},
    {"no-history", no_argument, NULL, OPT_NO_HISTORY},
    {"profile", required_argument, NULL, OPT_PROFILE},
    {"cmd", required_argument, NULL, OPT_CMD},
    {"exit-codes", required_argument, NULL, OPT_EXIT_CODES},
    {"collect", required_argument, NULL, OPT_COLLECT},
    {"serial-markers", required_argument, NULL, OPT_SERIAL_MARKERS},
    {"exclusive-markers", required_argument, NULL, OPT_EXCLUSIVE_MARKERS},
    {"listen", required_argument, NULL, OPT_LISTEN},
    {"agent", required_argument, NULL, OPT_AGENT},
    {"agents-file", required_argument, NULL, OPT_AGENTS_FILE},
    {"agents-min", required_argument, NULL, OPT_AGENTS_MIN},
    {"wait", required_argument, NULL, OPT_WAIT},
    {"cluster-key-file", required_argument, NULL, OPT_CLUSTER_KEY_FILE},
    {"keys", required_argument, NULL, OPT_KEYS},
    {"authorized-keys", required_argument, NULL, OPT_AUTHORIZED_KEYS},
    {"kill-grace", required_argument, NULL, OPT_KILL_GRACE},
    {"heartbeat", required_argument, NULL, OPT_HEARTBEAT},
    {"lease", required_argument, NULL, OPT_LEASE},
    {"shards", required_argument, NULL, OPT_SHARDS},
    {"index", required_argument, NULL, OPT_INDEX},
    {"forkserver", required_argument, NULL, OPT_FORKSERVER},
    {"preload", required_argument, NULL, OPT_PRELOAD},
    {"split", required_argument, NULL, OPT_SPLIT},
    {"speculate", required_argument, NULL, OPT_SPECULATE},
    {"bundle", required_argument, NULL, OPT_BUNDLE},
    {"verbose", no_argument, NULL, 'v'},
    {"quiet", no_argument, NULL, 'q'},
    {NULL, 0, NULL, 0},
};

void
sr_opts_init(struct sr_opts *o)
{
	memset(o, 0, sizeof(*o));
	sr_strv_init(&o->paths);
	sr_strv_init(&o->listen);
	sr_strv_init(&o->agents);
	o->timeout_s = 1800;
	o->max_restarts = 2;
	o->profile = "pytest";
	o->agents_min = 1;
	o->wait_s = 120;
	o->kill_grace_s = 5;
	o->heartbeat_s = 1;
	o->lease_s = 10;
	o->shard_index = -1;
	o->forkserver = true;
	o->split = true;
}

void
sr_opts_free(struct sr_opts *o)
{
	sr_strv_free(&o->paths);
	sr_strv_free(&o->listen);
	sr_strv_free(&o->agents);
}

int
sr_split_list(const char *s, struct sr_strv *v)
{
	while (*s != '\0') {
		size_t n = strcspn(s, ",");
		int rv;

		if (n > 0 && (rv = sr_strv_pushn(v, s, n)) != 0)
			return (rv);
		s += n;
		if (*s == ',')
			s++;
	}
	return (0);
}

static int
parse_uint(const char *opt, const char *s, unsigned max, unsigned *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v > max || s[0] == '-') {
		sr_error("%s: expected a whole number up to %u, got '%s'", opt,
		         max, s);
		return (SR_EINVAL);
	}
	*out = (unsigned) v;
	return (0);
}

static int
parse_secs(const char *opt, const char *s, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno != 0 || end == s || *end != '\0' || !isfinite(v) || v < 0) {
		sr_error("%s: expected seconds (a number >= 0), got '%s'", opt,
		         s);
		return (SR_EINVAL);
	}
	*out = v;
	return (0);
}

static int
parse_slots(struct sr_opts *o, const char *s)
{
	o->slots_given = true;
	if (strcmp(s, "auto") == 0) {
		o->slots = 0;
		return (0);
	}
	if (parse_uint("-n", s, 4096, &o->slots) != 0 || o->slots == 0) {
		sr_error("-n: expected 1..4096 or 'auto'");
		return (SR_EINVAL);
	}
	return (0);
}

static int
parse_switch(const char *name, const char *arg, bool *out)
{
	if (strcmp(arg, "on") != 0 && strcmp(arg, "off") != 0) {
		sr_error("%s: expected on or off", name);
		return (SR_EINVAL);
	}
	*out = strcmp(arg, "on") == 0;
	return (0);
}

static int
parse_choice(struct sr_opts *o, int c, const char *arg)
{
	switch (c) {
	case OPT_PROFILE:
		if (strcmp(arg, "pytest") != 0 && strcmp(arg, "generic") != 0) {
			sr_error("--profile: expected pytest or generic");
			return (SR_EINVAL);
		}
		o->profile = arg;
		return (0);
	case OPT_FORKSERVER:
		return (parse_switch("--forkserver", arg, &o->forkserver));
	case OPT_SPLIT:
		return (parse_switch("--split", arg, &o->split));
	case OPT_SPECULATE:
		return (parse_switch("--speculate", arg, &o->speculate));
	case OPT_COLLECT:
		if (strcmp(arg, "pytest") != 0 && strcmp(arg, "fast") != 0) {
			sr_error("--collect: expected fast or pytest");
			return (SR_EINVAL);
		}
		o->exact = strcmp(arg, "pytest") == 0;
		return (0);
	default:
		return (SR_EINVAL);
	}
}

static int
parse_one(struct sr_opts *o, int c, const char *arg)
{
	switch (c) {
	case 'n':
		return (parse_slots(o, arg));
	case 'v':
		o->verbose++;
		return (0);
	case 'q':
		o->verbose--;
		return (0);
	case OPT_TIMEOUT:
		return (parse_secs("--timeout", arg, &o->timeout_s));
	case OPT_RERUNS:
		return (parse_uint("--reruns", arg, 100, &o->reruns));
	case OPT_MAX_RESTARTS:
		return (
		    parse_uint("--max-restarts", arg, 100, &o->max_restarts));
	case OPT_JSON:
		o->json = arg;
		return (0);
	case OPT_JUNIT:
		o->junit = arg;
		return (0);
	case OPT_HISTORY:
		o->history = arg;
		return (0);
	case OPT_NO_HISTORY:
		o->no_history = true;
		return (0);
	case OPT_PROFILE:
	case OPT_COLLECT:
	case OPT_FORKSERVER:
	case OPT_SPLIT:
	case OPT_SPECULATE:
		return (parse_choice(o, c, arg));
	case OPT_PRELOAD:
		o->preload = arg;
		return (0);
	case OPT_CMD:
		o->cmd = arg;
		return (0);
	case OPT_EXIT_CODES:
		o->exit_codes = arg;
		return (0);
	case OPT_SERIAL_MARKERS:
		o->serial_markers = arg;
		return (0);
	case OPT_EXCLUSIVE_MARKERS:
		o->exclusive_markers = arg;
		return (0);
	case OPT_LISTEN:
		return (sr_strv_push(&o->listen, arg));
	case OPT_AGENT:
		return (sr_strv_push(&o->agents, arg));
	case OPT_AGENTS_FILE:
		o->agents_file = arg;
		return (0);
	case OPT_AGENTS_MIN:
		return (
		    parse_uint("--agents-min", arg, 100000, &o->agents_min));
	case OPT_WAIT:
		return (parse_secs("--wait", arg, &o->wait_s));
	case OPT_BUNDLE:
		return (parse_secs("--bundle", arg, &o->bundle_s));
	case OPT_CLUSTER_KEY_FILE:
		o->cluster_key_file = arg;
		return (0);
	case OPT_KEYS:
		o->keys = arg;
		return (0);
	case OPT_AUTHORIZED_KEYS:
		o->authorized_keys = arg;
		return (0);
	case OPT_KILL_GRACE:
		return (parse_secs("--kill-grace", arg, &o->kill_grace_s));
	case OPT_HEARTBEAT:
		return (parse_secs("--heartbeat", arg, &o->heartbeat_s));
	case OPT_LEASE:
		return (parse_secs("--lease", arg, &o->lease_s));
	case OPT_SHARDS:
		return (parse_uint("--shards", arg, 100000, &o->shards));
	case OPT_INDEX: {
		unsigned i;
		int rv = parse_uint("--index", arg, 100000, &i);

		o->shard_index = (int) i;
		return (rv);
	}
	default:
		return (SR_EINVAL);
	}
}

int
sr_opts_parse(struct sr_opts *o, int argc, char **argv)
{
	int c;
	int rv;

	optind = 1;
	opterr = 1;
	while ((c = getopt_long(argc, argv, "n:vq", longopts, NULL)) != -1) {
		if (c == '?' || c == ':')
			return (SR_EINVAL);
		if ((rv = parse_one(o, c, optarg)) != 0)
			return (rv);
	}
	for (int i = optind; i < argc; i++)
		if ((rv = sr_strv_push(&o->paths, argv[i])) != 0)
			return (rv);
	return (0);
}
