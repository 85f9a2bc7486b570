/*
 * coord_int.h - the coordinator's state, shared by coord.c (sessions and
 * the loop), coord_units.c (dispatch and final results), coord_msg.c
 * (messages from agents), coord_spec.c (backup attempts) and
 * coord_affinity.c (which unit a slot takes where files span pytest
 * configurations). Internal to coordinator/. One thread owns it.
 */
#ifndef SR_COORD_INT_H
#define SR_COORD_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "collect.h"
#include "coord.h"
#include "plan.h"
#include "progress.h"
#include "split.h"
#include "sr/node.h"

#define HANDSHAKE_S       10.0
#define LOST_ASSIGNMENT_S 3.0
#define LINGER_S          0.25 /* at most, for agents to hang up at the end */

/*
 * Affinity (coord_affinity.c), where the run's files span several pytest
 * configurations: a slot's fork server keeps a server per configuration,
 * the HELD used last (agent/forkserver.py: MAX_SHAPES); a parse is guessed
 * at PARSE_S until the agents measured one; a held unit at least NEAR as
 * heavy as the heaviest is taken first while plenty is queued.
 */
#define HELD    8
#define PARSE_S 0.2
#define NEAR    0.75

struct arec {
	struct sr_peer *peer;
	char name[96];
	bool hello;
	unsigned slots;
	bool *waiting;     /* per slot: asked for work */
	uint32_t *running; /* ids of the units running there */
	size_t nrunning;
	size_t runcap;
	bool exclusive; /* an exclusive unit runs there */
	bool chains;    /* it starts files plainly, so chains them (no fork
	                   servers): short units are worth queueing deeper */
	bool draining;  /* takes nothing until idle (for an exclusive) */
	unsigned queue; /* units a slot holds queued behind its running one */
	uint8_t *depth; /* per slot: units assigned and not done */
	uint32_t *last; /* per slot: the unit assigned last */
	/* Affinity (above), where fork servers keep configurations and the
	 * files span several; else NULL. Per slot: */
	uint8_t (*held)[HELD]; /* the configurations assigned last */
	double *freed;         /* when its depth fell to 0 */
	double *waited;        /* since when it waits for a holder; 0: not */
	/* What this turn of the loop has for the agent, sent as one Batch. */
	uint32_t *out_units; /* units assigned to it */
	size_t nout;
	size_t outcap;
	Shardrun__ResultAck *acks;
	size_t nacks;
	size_t ackcap;
	Shardrun__Cancel *cancels; /* attempts to stop (a twin won) */
	size_t ncancels;
	size_t cancelcap;
	struct arec *next;
};

/* Units estimated shorter than this may be queued behind a running one;
 * three of them behind one shorter than PREFETCH_DEEP_S, seven behind one
 * shorter than PREFETCH_TINY_S (where the agent chains files). */
#define PREFETCH_S      0.5
#define PREFETCH_DEEP_S 0.05
#define PREFETCH_TINY_S 0.01

/*
 * Speculation (--speculate on): a slot with nothing left to take starts a
 * backup attempt of the latest running unit, one that has run longer than
 * SPEC_LATE times its estimate and SPEC_MIN_S past it. The original and its
 * backup are twins: the first answer of either - passed or failed - is the
 * attempt that counts, the other is cancelled (its process tree killed, its
 * result ignored). A twin that ends without one (crashed, timed out, an
 * error) while the other runs is recorded and dropped: the other decides.
 * Only when nothing is queued: held-back work (an exclusive file waiting
 * for its agent to drain, a crashed file avoiding this agent, a file left
 * to the slot that holds its configuration) comes first.
 */
#define SPEC_LATE  1.5
#define SPEC_MIN_S 1.0

struct twin {
	uint32_t orig;
	uint32_t backup;
};

struct coord {
	const struct sr_coord_cfg *cfg;
	struct sr_suite *suite;
	struct sr_node *node;
	struct sr_plan plan;
	struct arec *agents;
	unsigned nagents;
	uint8_t run_id[16];
	double t0;
	double wait_until;
	bool dispatching;
	bool serial_running;
	double alone_since; /* no agent connected since then */
	size_t nfinal;
	struct sr_splitter split; /* long files whose test ids pytest lists */
	unsigned max_slots;       /* most slots connected at once */
	struct sr_progress prog;
	struct twin *twins; /* running backups */
	size_t ntwins;
	size_t twincap;
	unsigned nbackups; /* backup attempts started */
	unsigned nbackup_wins;
	/* Affinity, per configuration (sr_file.config): the parses the agents
	 * measured, and whether a slot holding it takes a unit soon, as worked
	 * out in dispatch turn soon_turn. */
	struct {
		double sum_s;
		unsigned n;
	} parses[SR_CONFIGURATIONS_MAX + 1];
	uint32_t soon_turn[SR_CONFIGURATIONS_MAX + 1];
	unsigned soon[SR_CONFIGURATIONS_MAX + 1]; /* holders, less waiters */
	uint32_t turn;                            /* dispatch turns so far */
	int status;
};

/* coord.c */
int sr_co_send(struct coord *c, struct arec *a, Shardrun__Envelope *e);

/* Send what the turn collected for each agent (coord.c). */
void sr_co_flush(struct coord *c);

/* coord_affinity.c */
/* The unit for slot among those ok(arg) accepts: the heaviest, or one of a
 * configuration the slot holds; NULL with *wait set when it had better wait
 * for a slot that holds the heaviest's. */
struct sr_unit *sr_co_take(struct coord *c, struct arec *a, unsigned slot,
                           bool (*ok)(void *arg, const struct sr_unit *u),
                           void *arg, bool *wait);
/* u was assigned to the slot: its configuration is the most recent. */
void sr_co_hold(const struct coord *c, struct arec *a, unsigned slot,
                const struct sr_unit *u);
/* The slot has nothing assigned any more. */
void sr_co_freed(struct arec *a, unsigned slot);
/* An agent measured a parse of config (seconds; 0: none). */
void sr_co_learn_parse(struct coord *c, uint8_t config, double parse_s);

/* coord_units.c */
void sr_co_set_final(struct coord *c, struct sr_file *f, int final);
void sr_co_judge(struct coord *c, struct sr_unit *u, size_t file,
                 struct arec *a);
void sr_co_unit_done(struct coord *c, struct sr_unit *u);
void sr_co_agent_lost(struct coord *c, struct arec *a, const char *why);
void sr_co_dispatch(struct coord *c);
/* Put a unit on an agent's slot: sent with the turn's Batch. SR_ENOMEM
 * leaves everything as it was. */
int sr_co_assign(struct coord *c, struct arec *a, unsigned slot,
                 struct sr_unit *u);
/* Whether agent a takes work now: welcomed, heard from lately, neither
 * draining for an exclusive unit nor running one. */
static inline bool
sr_co_taking(const struct coord *c, const struct arec *a, double now)
{
	return (a->hello && !a->draining && !a->exclusive &&
	        now - a->peer->last_rx <= 2 * c->cfg->heartbeat_s);
}
/* Whether u avoids agent a (requeued after a crash there; only while
 * another agent may take it). */
bool sr_co_avoids(const struct coord *c, const struct sr_unit *u,
                  const struct arec *a);

/* coord_spec.c */
/* A backup attempt for this idle slot, if some running unit is late. */
bool sr_co_speculate(struct coord *c, struct arec *a, unsigned slot);
/* The agent still lists attempts we cancelled (the Cancel was lost on the
 * way): cancel them again. */
void sr_co_recancel(struct coord *c, struct arec *a,
                    const Shardrun__Heartbeat *h);
/* A result of u arrived: its twin, if running, is cancelled; a backup's
 * verdict that counted is a win. */
void sr_co_twin_result(struct coord *c, const struct sr_unit *u, int outcome);
/* u ended with this outcome: true when that is no answer (not passed or
 * failed) and its twin still runs - u is then over, and the twin's result
 * will decide. */
bool sr_co_twin_outlives(struct coord *c, struct sr_unit *u, int outcome);
/* u's attempt is gone (agent lost, declined, unknown to the agent): when
 * its twin still runs, u is simply dropped and true returned. */
bool sr_co_twin_drop(struct coord *c, struct sr_unit *u);

/* coord_msg.c */
void sr_co_handle(struct coord *c, struct arec *a,
                  const Shardrun__Envelope *env);

#endif /* SR_COORD_INT_H */
