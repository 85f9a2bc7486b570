/*
 * agent.c - the agent node: sessions with coordinators, slot offers,
 * results until acknowledged, heartbeats, and the event loop.
 *
 * Messages from a coordinator dispatch through one table; each handler runs
 * only for an authenticated session (the node layer guarantees it) and, but
 * for Welcome and Shutdown, only after the session's Welcome.
 */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/supplemental/util/platform.h>

#include "agent.h"
#include "slot.h"
#include "sr/err.h"
#include "sr/fingerprint.h"
#include "sr/log.h"
#include "sr/node.h"
#include "sr/path.h"
#include "sr/util.h"

extern char **environ;

#define RESEND_S    2.0
#define HANDSHAKE_S 10.0
#define MAX_FILES   100000 /* per assignment */

struct pending {
	uint32_t unit;
	uint32_t attempt;
	uint32_t index;
	uint8_t *packed; /* Shardrun__Result */
	size_t len;
};

struct session {
	struct sr_peer *peer;
	bool welcomed;
	bool over; /* Shutdown received */
	char run_id[33];
	double hb_s;
	double lost_s;
	double last_hb;
	double last_resend;
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
	bool done;    /* once: the run is over */
	bool ever_up; /* a session was authenticated */
	int status;
};

static int
send_env(struct agent *a, struct session *s, Shardrun__Envelope *e)
{
	return (sr_node_send(a->node, s->peer, e));
}

void
sr_agent_cfg_init(struct sr_agent_cfg *c)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	memset(c, 0, sizeof(*c));
	c->slots = n > 0 ? (unsigned) n : 1;
	c->kill_grace_s = 5.0;
	c->transient_retries = 4;
	c->backoff_s = 0.5;
	c->lost_s = 15.0;
	sr_strv_init(&c->listen);
	sr_strv_init(&c->connect);
}

/* ---- slots and offers ---- */

static bool
exclusive_running(const struct agent *a)
{
	for (unsigned i = 0; i < a->cfg->slots; i++)
		if (a->slots[i].busy && a->slots[i].exclusive)
			return (true);
	return (false);
}

/* The welcomed session with the fewest slots offered or busy for it. */
static struct session *
least_loaded(struct agent *a)
{
	struct session *best = NULL;
	unsigned best_load = UINT_MAX;

	for (struct session *s = a->sessions; s != NULL; s = s->next) {
		unsigned load = s->offered;

		if (!s->welcomed || s->over)
			continue;
		for (unsigned i = 0; i < a->cfg->slots; i++)
			if (a->slots[i].busy && a->slots[i].owner == s)
				load++;
		if (load < best_load) {
			best = s;
			best_load = load;
		}
	}
	return (best);
}

static void
offer(struct agent *a, unsigned slot)
{
	Shardrun__Envelope e = SHARDRUN__ENVELOPE__INIT;
	Shardrun__WorkRequest w = SHARDRUN__WORK_REQUEST__INIT;
	struct session *s;

	if (a->slots[slot].busy || a->offered[slot] || exclusive_running(a))
		return;
	if ((s = least_loaded(a)) == NULL)
		return;
	w.slot = slot;
	e.body_case = SHARDRUN__ENVELOPE__BODY_WORK_REQUEST;
	e.work_request = &w;
	a->offered[slot] = true;
	a->offer_to[slot] = s;
	s->offered++;
	(void) send_env(a, s, &e);
}

static void
offer_all(struct agent *a)
{
	for (unsigned i = 0; i < a->cfg->slots; i++)
		offer(a, i);
}

static void
withdraw(struct agent *a, unsigned slot)
{
	if (!a->offered[slot])
		return;
	a->offer_to[slot]->offered--;
	a->offered[slot] = false;
	a->offer_to[slot] = NULL;
}

/* ---- results ---- */

static int
pend_add(struct session *s, const Shardrun__Result *r)
{
	struct pending *p;

	if (s->npend == s->pcap) {
		size_t cap = s->pcap ? s->pcap * 2 : 16;
		struct pending *v = realloc(s->pend, cap * sizeof(*v));

		if (v == NULL)
			return (SR_ENOMEM);
		s->pend = v;
		s->pcap = cap;
	}
	p = &s->pend[s->npend];
	p->len = shardrun__result__get_packed_size(r);
	if ((p->packed = malloc(p->len ? p->len : 1)) == NULL)
		return (SR_ENOMEM);
	shardrun__result__pack(r, p->packed);
	p->unit = r->unit;
	p->attempt = r->attempt;
	p->index = r->index;
	s->npend++;
	return (0);
}

static void
send_result(struct agent *a, struct session *s, const struct pending *p)
{
	Shardrun__Envelope e = SHARDRUN__ENVELOPE__INIT;
	Shardrun__Result *r = shardrun__result__unpack(NULL, p->len, p->packed);

	if (r == NULL)
		return;
	e.body_case = SHARDRUN__ENVELOPE__BODY_RESULT;
	e.result = r;
	(void) send_env(a, s, &e);
	shardrun__result__free_unpacked(r, NULL);
}

static struct session *
find_session(struct agent *a, const void *owner)
{
	for (struct session *s = a->sessions; s != NULL; s = s->next)
		if (s == owner)
			return (s);
	return (NULL);
}

/* A slot finished a file (r) or its whole unit (r == NULL). */
static void
on_slot_done(void *arg, struct sr_slot *slot, Shardrun__Result *r)
{
	struct agent *a = arg;
	struct session *s = find_session(a, slot->owner);

	if (r == NULL) {
		sr_slot_release(slot);
		offer_all(a);
		return;
	}
	if (s == NULL)
		return; /* the run went away meanwhile */
	if (pend_add(s, r) == 0)
		send_result(a, s, &s->pend[s->npend - 1]);
}

/* ---- messages from a coordinator ---- */

static void
send_hello(struct agent *a, struct session *s)
{
	Shardrun__Envelope e = SHARDRUN__ENVELOPE__INIT;
	Shardrun__Hello h = SHARDRUN__HELLO__INIT;

	h.name = (char *) a->cfg->name;
	h.slots = a->cfg->slots;
	h.profile = (char *) a->cfg->profile->name;
	h.pid = (uint32_t) getpid();
	e.body_case = SHARDRUN__ENVELOPE__BODY_HELLO;
	e.hello = &h;
	(void) send_env(a, s, &e);
}

static void
refuse(struct agent *a, struct session *s, const char *why, const char *file)
{
	Shardrun__Envelope e = SHARDRUN__ENVELOPE__INIT;
	Shardrun__Refuse r = SHARDRUN__REFUSE__INIT;

	sr_error("refusing the run: %s%s%s", why, file ? ": " : "",
	         file ? file : "");
	r.reason = (char *) why;
	r.file = (char *) (file ? file : "");
	e.body_case = SHARDRUN__ENVELOPE__BODY_REFUSE;
	e.refuse = &r;
	(void) send_env(a, s, &e);
	s->over = true;
	a->status = SR_EINVAL;
	if (a->cfg->once)
		a->done = true;
}

/* The run's fingerprint against this checkout: the commit when both are
 * known, then every file's content. Returns the first difference. */
static const char *
check_workspace(const struct agent *a, const Shardrun__Welcome *w,
                const char **file)
{
	char commit[41];
	char path[PATH_MAX * 2];
	uint8_t h[SR_HASH_BYTES];

	*file = NULL;
	if (w->commit[0] != '\0' &&
	    sr_git_commit(a->cfg->workspace, commit) == 0 &&
	    strcmp(commit, w->commit) != 0) {
		*file = w->commit;
		return ("the workspace is at another commit than the run");
	}
	for (size_t i = 0; i < w->n_files; i++) {
		const Shardrun__FileHash *fh = w->files[i];

		*file = fh->path;
		if (sr_path_check(fh->path) != 0)
			return ("the run names a path outside any workspace");
		snprintf(path, sizeof(path), "%s/%s", a->cfg->workspace,
		         fh->path);
		if (sr_hash_file(path, h) != 0)
			return (
			    "a file of the run is missing from the workspace");
		if (fh->hash.len != SR_HASH_BYTES ||
		    memcmp(fh->hash.data, h, SR_HASH_BYTES) != 0)
			return ("a file of the run differs from the workspace");
	}
	*file = NULL;
	return (NULL);
}

static void
on_welcome(struct agent *a, struct session *s, const Shardrun__Envelope *env)
{
	const Shardrun__Welcome *w = env->welcome;
	const char *why;
	const char *file;

	if (s->welcomed)
		return;
	if (w->run_id.len != 16) {
		refuse(a, s, "malformed welcome", NULL);
		return;
	}
	if (strcmp(w->profile, a->cfg->profile->name) != 0) {
		refuse(a, s, "the run uses another profile", w->profile);
		return;
	}
	if ((why = check_workspace(a, w, &file)) != NULL) {
		refuse(a, s, why, file);
		return;
	}
	sr_hex(w->run_id.data, 16, s->run_id);
	s->hb_s = w->heartbeat_ms > 0 ? w->heartbeat_ms / 1000.0 : 1.0;
	s->lost_s = w->lease_ms > 0 ? w->lease_ms / 1000.0 : a->cfg->lost_s;
	s->welcomed = true;
	sr_info("serving run %s from %s", s->run_id, s->peer->addr);
	offer_all(a);
}

static bool
valid_assignment(const struct agent *a, const Shardrun__Assignment *as)
{
	if (as->slot >= a->cfg->slots || as->unit == 0 || as->attempt == 0 ||
	    as->n_files == 0 || as->n_files > MAX_FILES ||
	    as->n_selectors > MAX_FILES)
		return (false);
	for (size_t i = 0; i < as->n_files; i++)
		if (sr_path_check(as->files[i]) != 0)
			return (false);
	return (true);
}

static void
decline(struct agent *a, struct session *s, const Shardrun__Assignment *as)
{
	Shardrun__Envelope e = SHARDRUN__ENVELOPE__INIT;
	Shardrun__Cancel c = SHARDRUN__CANCEL__INIT;

	c.unit = as->unit;
	c.attempt = as->attempt;
	e.body_case = SHARDRUN__ENVELOPE__BODY_CANCEL;
	e.cancel = &c;
	(void) send_env(a, s, &e);
}

static void
on_assignment(struct agent *a, struct session *s, const Shardrun__Envelope *env)
{
	const Shardrun__Assignment *as = env->assignment;
	struct sr_slot *slot;

	if (!valid_assignment(a, as)) {
		sr_warn("invalid assignment from %s dropped", s->peer->addr);
		decline(a, s, as);
		return;
	}
	slot = &a->slots[as->slot];
	if (slot->busy) {
		decline(a, s, as);
		return;
	}
	withdraw(a, as->slot);
	slot->owner = s;
	if (sr_slot_assign(slot, &a->senv, as, s->run_id) != 0)
		decline(a, s, as);
}

static void
on_ack(struct agent *a, struct session *s, const Shardrun__Envelope *env)
{
	const Shardrun__ResultAck *k = env->result_ack;

	(void) a;
	for (size_t i = 0; i < s->npend; i++) {
		struct pending *p = &s->pend[i];

		if (p->unit == k->unit && p->attempt == k->attempt &&
		    p->index == k->index) {
			free(p->packed);
			s->pend[i] = s->pend[--s->npend];
			return;
		}
	}
}

static void
kill_session_work(struct agent *a, struct session *s)
{
	for (unsigned i = 0; i < a->cfg->slots; i++) {
		if (a->offered[i] && a->offer_to[i] == s)
			withdraw(a, i);
		if (a->slots[i].busy && a->slots[i].owner == s)
			sr_slot_abort(&a->slots[i], &a->senv);
	}
}

static void
on_cancel(struct agent *a, struct session *s, const Shardrun__Envelope *env)
{
	for (unsigned i = 0; i < a->cfg->slots; i++) {
		struct sr_slot *sl = &a->slots[i];

		if (sl->busy && sl->owner == s &&
		    sl->unit == env->cancel->unit &&
		    sl->attempt == env->cancel->attempt) {
			sr_slot_abort(sl, &a->senv);
			sl->owner = NULL;
		}
	}
	offer_all(a);
}

static void
on_shutdown(struct agent *a, struct session *s, const Shardrun__Envelope *env)
{
	sr_info("run %s over: %s", s->run_id, env->shutdown->reason);
	s->over = true;
	kill_session_work(a, s);
	(void) sr_spawner_sweep(a->cfg->spawner);
	if (a->cfg->once)
		a->done = true;
	else
		sr_node_drop(a->node, s->peer);
}

static void
on_refuse(struct agent *a, struct session *s, const Shardrun__Envelope *env)
{
	sr_error("coordinator refused this agent: %s", env->refuse->reason);
	s->over = true;
	kill_session_work(a, s);
	a->status = SR_EAUTH;
	if (a->cfg->once)
		a->done = true;
}

static void
on_heartbeat(struct agent *a, struct session *s, const Shardrun__Envelope *env)
{
	(void) a;
	(void) s;
	(void) env; /* last_rx is what matters; the node layer updates it */
}

typedef void (*handler_fn)(struct agent *, struct session *,
                           const Shardrun__Envelope *);

static const struct {
	Shardrun__Envelope__BodyCase type;
	handler_fn fn;
	bool needs_welcome;
} handlers[] = {
    {SHARDRUN__ENVELOPE__BODY_WELCOME, on_welcome, false},
    {SHARDRUN__ENVELOPE__BODY_SHUTDOWN, on_shutdown, false},
    {SHARDRUN__ENVELOPE__BODY_REFUSE, on_refuse, false},
    {SHARDRUN__ENVELOPE__BODY_HEARTBEAT, on_heartbeat, false},
    {SHARDRUN__ENVELOPE__BODY_ASSIGNMENT, on_assignment, true},
    {SHARDRUN__ENVELOPE__BODY_RESULT_ACK, on_ack, true},
    {SHARDRUN__ENVELOPE__BODY_CANCEL, on_cancel, true},
};

static void
dispatch(struct agent *a, struct session *s, const Shardrun__Envelope *env)
{
	for (size_t i = 0; i < sizeof(handlers) / sizeof(handlers[0]); i++) {
		if (handlers[i].type != env->body_case)
			continue;
		if (handlers[i].needs_welcome && !s->welcomed)
			return;
		if (!s->over)
			handlers[i].fn(a, s, env);
		return;
	}
	sr_debug("unexpected %s from %s dropped", sr_wire_kind(env),
	         s->peer->addr);
}

/* ---- sessions ---- */

static struct session *
session_new(struct agent *a, struct sr_peer *p)
{
	struct session *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return (NULL);
	s->peer = p;
	s->hb_s = 1.0;
	s->lost_s = a->cfg->lost_s;
	s->last_hb = s->last_resend = sr_now();
	s->next = a->sessions;
	a->sessions = s;
	p->user = s;
	return (s);
}

static void
session_free(struct agent *a, struct session *s)
{
	struct session **pp;

	kill_session_work(a, s);
	for (pp = &a->sessions; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == s) {
			*pp = s->next;
			break;
		}
	}
	for (size_t i = 0; i < s->npend; i++)
		free(s->pend[i].packed);
	free(s->pend);
	free(s);
}

static void
on_down(struct agent *a, struct session *s)
{
	bool over = s->over;

	sr_info("coordinator %s gone", s->peer->addr);
	session_free(a, s);
	if (a->cfg->once && !over) {
		sr_error("lost the coordinator before the run was over");
		a->status = SR_ECLOSED;
		a->done = true;
	}
}

static void
heartbeat(struct agent *a, struct session *s)
{
	Shardrun__Envelope e = SHARDRUN__ENVELOPE__INIT;
	Shardrun__Heartbeat h = SHARDRUN__HEARTBEAT__INIT;
	uint32_t free_slots[a->cfg->slots + 1];
	Shardrun__Running run[a->cfg->slots + 1];
	Shardrun__Running *runp[a->cfg->slots + 1];

	for (unsigned i = 0; i < a->cfg->slots; i++) {
		if (a->offered[i] && a->offer_to[i] == s)
			free_slots[h.n_free_slots++] = i;
		if (a->slots[i].busy && a->slots[i].owner == s &&
		    !a->slots[i].cancelled) {
			shardrun__running__init(&run[h.n_running]);
			run[h.n_running].unit = a->slots[i].unit;
			run[h.n_running].attempt = a->slots[i].attempt;
			run[h.n_running].slot = i;
			runp[h.n_running] = &run[h.n_running];
			h.n_running++;
		}
	}
	h.seq = ++s->hb_seq;
	h.free_slots = free_slots;
	h.running = runp;
	e.body_case = SHARDRUN__ENVELOPE__BODY_HEARTBEAT;
	e.heartbeat = &h;
	(void) send_env(a, s, &e);
}

/* Heartbeats, result resends, silence detection. */
static void
session_timers(struct agent *a, double now)
{
	struct session *s = a->sessions;

	while (s != NULL) {
		struct session *next = s->next;

		if (s->welcomed && now - s->last_hb >= s->hb_s) {
			s->last_hb = now;
			heartbeat(a, s);
		}
		if (s->npend > 0 && now - s->last_resend >= RESEND_S) {
			s->last_resend = now;
			for (size_t i = 0; i < s->npend; i++)
				send_result(a, s, &s->pend[i]);
		}
		if (now - s->peer->last_rx > s->lost_s) {
			sr_warn("coordinator %s silent for %.0fs: stopping "
			        "its work",
			        s->peer->addr, now - s->peer->last_rx);
			sr_node_drop(a->node, s->peer);
			s->peer->last_rx = now; /* drop once */
		}
		s = next;
	}
}

static void
node_events(struct agent *a)
{
	struct sr_event ev;

	while (!a->done && sr_node_poll(a->node, &ev) == 0) {
		if (ev.type == SR_EV_UP) {
			struct session *s = session_new(a, ev.peer);

			a->ever_up = true;
			if (s != NULL)
				send_hello(a, s);
		} else if (ev.type == SR_EV_DOWN && ev.peer->user != NULL) {
			on_down(a, ev.peer->user);
		} else if (ev.type == SR_EV_MSG) {
			if (ev.peer->user != NULL)
				dispatch(a, ev.peer->user, ev.env);
			sr_wire_free(ev.env);
		}
	}
}

static void
spawner_events(struct agent *a)
{
	struct sr_spawn_ev ev;
	int rv;

	while ((rv = sr_spawner_read(a->cfg->spawner, &ev)) == 0) {
		for (unsigned i = 0; i < a->cfg->slots; i++) {
			struct sr_slot *s = &a->slots[i];

			if (s->busy && s->phase == PHASE_RUNNING &&
			    s->spawn_id == ev.id) {
				sr_slot_on_exit(s, &a->senv, &ev);
				offer_all(a);
				break;
			}
		}
	}
	if (rv == SR_ECLOSED) {
		sr_error("the spawner process is gone");
		a->status = SR_EIO;
		a->done = true;
	}
}

/* A CI agent that cannot authenticate gives up with a clear error instead
 * of redialling forever; a fleet agent keeps refusing strangers. */
static void
check_refused(struct agent *a)
{
	const struct sr_node_stats *st = sr_node_stats(a->node);

	if (!a->cfg->once || a->ever_up)
		return;
	if (st->auth_failures > 0 || st->versions > 0) {
		sr_error("the coordinator did not accept this agent's "
		         "credentials (%s): check the cluster key or node keys",
		         st->versions > 0 ? "protocol version"
		                          : "authentication");
		a->status = SR_EAUTH;
		a->done = true;
	}
}

static void
loop(struct agent *a)
{
	struct pollfd pfd[3];
	int fds[2];

	sr_node_fds(a->node, fds);
	pfd[0] = (struct pollfd){fds[0], POLLIN, 0};
	pfd[1] = (struct pollfd){fds[1], POLLIN, 0};
	pfd[2] = (struct pollfd){sr_spawner_fd(a->cfg->spawner), POLLIN, 0};
	while (!a->done && !(a->cfg->stop && *a->cfg->stop)) {
		double now;

		(void) poll(pfd, 3, 20);
		node_events(a);
		spawner_events(a);
		now = sr_now();
		for (unsigned i = 0; i < a->cfg->slots; i++)
			sr_slot_tick(&a->slots[i], &a->senv, now);
		session_timers(a, now);
		sr_node_expire(a->node, now, HANDSHAKE_S);
		check_refused(a);
	}
}

static int
agent_init(struct agent *a, const struct sr_agent_cfg *c)
{
	int rv = 0;

	memset(a, 0, sizeof(*a));
	a->cfg = c;
	a->next_spawn_id = 1;
	a->slots = calloc(c->slots, sizeof(*a->slots));
	a->offered = calloc(c->slots, sizeof(*a->offered));
	a->offer_to = calloc(c->slots, sizeof(*a->offer_to));
	if (a->slots == NULL || a->offered == NULL || a->offer_to == NULL)
		return (SR_ENOMEM);
	for (unsigned i = 0; i < c->slots; i++)
		a->slots[i].index = i;
	sr_strv_init(&a->env);
	for (char **e = environ; e != NULL && *e != NULL && rv == 0; e++)
		rv = sr_strv_push(&a->env, *e);
	snprintf(a->tmp_root, sizeof(a->tmp_root), "%s/shardrun-%ld-%p",
	         getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", (long) getpid(),
	         (void *) a);
	if (rv == 0)
		rv = sr_mkdirs(a->tmp_root, 0700);
	a->senv = (struct sr_slot_env){
	    c, a->tmp_root, &a->env, &a->next_spawn_id, on_slot_done, a};
	return (rv);
}

static void
agent_fini(struct agent *a)
{
	while (a->sessions != NULL)
		session_free(a, a->sessions);
	for (unsigned i = 0; a->slots != NULL && i < a->cfg->slots; i++)
		if (a->slots[i].busy)
			sr_slot_release(&a->slots[i]);
	(void) sr_spawner_sweep(a->cfg->spawner);
	/* Let the last frames (a refusal, final results) leave. */
	if (a->node != NULL)
		nng_msleep(100);
	sr_node_close(a->node);
	if (a->tmp_root[0] != '\0')
		(void) sr_rmtree(a->tmp_root);
	sr_strv_free(&a->env);
	free(a->slots);
	free(a->offered);
	free(a->offer_to);
}

static int
agent_connect(struct agent *a)
{
	const struct sr_agent_cfg *c = a->cfg;
	int rv;

	if ((rv = sr_node_open(&a->node, SR_ROLE_AGENT, c->trust)) != 0)
		return (rv);
	for (size_t i = 0; i < c->listen.n; i++)
		if ((rv = sr_node_listen(a->node, c->listen.v[i])) != 0)
			return (rv);
	for (size_t i = 0; i < c->connect.n; i++)
		if ((rv = sr_node_dial(a->node, c->connect.v[i])) != 0)
			return (rv);
	return (0);
}

int
sr_agent_run(const struct sr_agent_cfg *c)
{
	struct agent a;
	int rv;

	if ((rv = agent_init(&a, c)) == 0 && (rv = agent_connect(&a)) == 0) {
		loop(&a);
		rv = a.status;
	}
	agent_fini(&a);
	return (rv);
}
