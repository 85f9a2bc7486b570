/*
 * agent_int.h - the agent's state, shared by agent.c (sessions, offers,
 * results, the loop) and handlers.c (messages from coordinators).
 * Internal to agent/. One thread owns all of it.
 */
#ifndef SR_AGENT_INT_H
#define SR_AGENT_INT_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>

#include "agent.h"
#include "slot.h"
#include "sr/node.h"
#include "workspace.h"

struct pending {
	uint32_t unit;
	uint32_t attempt;
	uint32_t index;
	uint8_t *packed; /* Shardrun__Result */
	size_t len;
	double sent; /* last sent */
	double wait; /* resent this long after, until acknowledged */
	bool resent; /* its acknowledgement times no round trip */
};

struct session {
	struct sr_peer *peer;
	bool welcomed;
	bool checking;  /* the workspace check is under way */
	bool preparing; /* the prepare commands are running */
	size_t prep_step;
	uint64_t prep_id; /* the running command's spawn id */
	double prep_deadline;
	bool prep_killed; /* it ran out of time */
	char prep_commit[41];
	struct sr_wscheck check;
	bool over;              /* Shutdown received */
	struct sr_slot_run run; /* run id, fork server settings */
	double hb_s;
	double lost_s;
	double last_hb;
	double srtt; /* smoothed round trip of a Result and its ack; 0: none */
	bool urgent; /* this turn sent more than first sends of Results */
	double held_since; /* Results waiting in the outbox since; 0: none */
	uint64_t hb_seq;
	struct pending *pend;
	size_t npend;
	size_t pcap;
	unsigned offered; /* slots waiting for work from it */
	struct session *next;
};

struct agent {
	const struct sr_agent_cfg *cfg;
	struct sr_node *node;
	struct sr_slot *slots;
	bool *offered;             /* per slot: a WorkRequest is outstanding */
	struct session **offer_to; /* per slot: to whom */
	struct session *sessions;
	struct sr_strv env;
	char tmp_root[PATH_MAX];
	uint64_t next_spawn_id;
	struct sr_slot_env senv;
	bool done;     /* once: the run is over */
	bool complete; /* once: the coordinator said it has every result */
	bool ever_up;  /* a session was authenticated */
	int status;
};

/* agent.c */
int sr_ag_send(struct agent *a, struct session *s, Shardrun__Envelope *e);
void sr_ag_offer_all(struct agent *a);
void sr_ag_withdraw(struct agent *a, unsigned slot);
/* The coordinator acknowledged p (before it is freed). */
void sr_ag_acked(struct session *s, const struct pending *p);

/* prepare.c */
/* Start preparing the workspace for this commit: SR_EAGAIN when there is
 * nothing to prepare, 0 when a command runs (its exit comes later). */
int sr_ag_prepare(struct agent *a, struct session *s, const char *commit);
/* Kill a prepare command that has run out of time. */
void sr_ag_prepare_tick(struct agent *a, struct session *s, double now);
void sr_ag_prepare_exit(struct agent *a, struct session *s,
                        const struct sr_spawn_ev *ev);

/* handlers.c */
void sr_ag_dispatch(struct agent *a, struct session *s,
                    const Shardrun__Envelope *env);
void sr_ag_send_hello(struct agent *a, struct session *s);
void sr_ag_check_step(struct agent *a, struct session *s);
void sr_ag_refuse(struct agent *a, struct session *s, const char *why,
                  const char *file);
void sr_ag_kill_session_work(struct agent *a, struct session *s);

#endif /* SR_AGENT_INT_H */
