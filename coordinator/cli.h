/*
 * cli.h - the `shardrun` command line: options of `run` and `plan`.
 *
 * Parsing fills an sr_opts from argv and never exits: errors are reported
 * with a message naming the option and SR_EINVAL. Ownership: the options
 * own their string vectors; scalar strings point into argv.
 */
#ifndef SR_CLI_H
#define SR_CLI_H

#include <stdbool.h>

#include "sr/util.h"

struct sr_opts {
	struct sr_strv paths;
	unsigned slots; /* -n; 0 = auto */
	bool slots_given;
	double timeout_s;
	unsigned reruns;
	unsigned max_restarts;
	const char *json;
	const char *junit;
	const char *history;
	bool no_history;
	const char *profile; /* "pytest" or "generic" */
	const char *cmd;
	const char *exit_codes;
	bool exact; /* --collect pytest */
	const char *serial_markers;
	const char *exclusive_markers;
	struct sr_strv listen;
	struct sr_strv agents;
	const char *agents_file;
	unsigned agents_min;
	double wait_s;
	const char *cluster_key_file;
	const char *keys;
	const char *authorized_keys;
	double kill_grace_s;
	double heartbeat_s;
	double lease_s;
	unsigned shards; /* plan */
	int shard_index; /* plan --index; -1 = all */
	int verbose;
	bool forkserver;     /* --forkserver on|off */
	bool split;          /* --split on|off */
	bool speculate;      /* --speculate on|off */
	double bundle_s;     /* --bundle S: bundle files shorter; 0: off */
	const char *preload; /* --preload a,b: modules to preload */
};

void sr_opts_init(struct sr_opts *o);
void sr_opts_free(struct sr_opts *o);
/* Parse the arguments after the command name. */
int sr_opts_parse(struct sr_opts *o, int argc, char **argv);
/* Split "a,b,c" into v (appending). */
int sr_split_list(const char *s, struct sr_strv *v);

#endif /* SR_CLI_H */
