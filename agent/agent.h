/*
 * agent.h - the agent node: sessions with coordinators, slots, attempts.
 *
 * An agent offers its slots to the coordinators it is connected to (one
 * session per run), runs each assigned unit's files one after another on the
 * assigned slot, retries transient failures itself (exit 4 with the file
 * present: escalating, bounded backoff), kills what overruns its timeout
 * (SIGTERM, a grace period, SIGKILL to the whole attempt), and reports one
 * Result per file, resending it until the coordinator acknowledges it.
 *
 * The same code serves every mode: local mode runs it in a thread over
 * inproc://, shardrun-agent runs it as a daemon over tcp://.
 *
 * Ownership: the configuration and everything it points to is borrowed
 * and must outlive sr_agent_run(). The spawner must have been started by
 * the caller before any thread existed.
 */
#ifndef SR_AGENT_H
#define SR_AGENT_H

#include <signal.h>
#include <stdbool.h>

#include "spawner.h"
#include "sr/crypto.h"
#include "sr/profile.h"
#include "sr/util.h"

struct sr_agent_cfg {
	const char *name;      /* reported to coordinators */
	const char *workspace; /* absolute, resolved */
	unsigned slots;
	const struct sr_profile *profile;
	const struct sr_trust *trust;
	struct sr_strv listen;  /* URLs to listen on */
	struct sr_strv connect; /* URLs to dial */
	bool once;              /* exit when a run is over (CI, local) */
	struct sr_spawner *spawner;
	double kill_grace_s;         /* SIGTERM -> SIGKILL */
	unsigned transient_retries;  /* exit 4 with the file present */
	double backoff_s;            /* first backoff; doubles, capped 8 s */
	double lost_s;               /* coordinator silent: give up */
	bool forkserver;             /* allow preloading fork servers */
	struct sr_strv prepare;      /* fleet: commands run before a run at
	                                another commit, with {commit} and
	                                {workspace}; no shell */
	double prepare_timeout_s;    /* one prepare command; then killed */
	volatile sig_atomic_t *stop; /* set to ask the agent to stop */
};

/* Defaults: slots = CPUs, grace 5 s, 4 transient retries, backoff 0.5 s,
 * coordinator lost after 15 s of silence, a prepare command killed after
 * 600 s. */
void sr_agent_cfg_init(struct sr_agent_cfg *c);
/* Run until stopped (or, with once, until a run is over). Returns 0, or
 * an error when the agent could not start or a run was refused. */
int sr_agent_run(const struct sr_agent_cfg *c);

#endif /* SR_AGENT_H */
