/*
 * spawner.c - the helper process that starts, reaps and kills attempts.
 *
 * Channel: a SOCK_STREAM socketpair carrying frames [u32 length][payload];
 * payload[0] is the type. Requests: SPAWN, KILL, SWEEP. Events: EXITED,
 * DROPPED (a chained SPAWN that never started).
 * The helper is single-threaded: poll() on the channel, a signalfd for
 * SIGCHLD and each lane's socket. A lane (a namespace's init, or a plain
 * process with process groups) is a long-lived clone of the helper that
 * takes the same SPAWN and KILL frames on its socket and answers each
 * SPAWN with one struct lane_report; its code is in spawner_ns.c.
 * A SPAWN may be chained behind an attempt (spawner.h): the helper keeps
 * it and starts it in the loop turn that reaps that attempt, unless the
 * attempt's exit code is one the caller retries. Behind an attempt in a
 * lane, it is also handed to the lane's init (lane_hand), which starts it
 * itself and says so in the attempt's report; the helper keeps the
 * request's state until then (lane_over). A loop turn's events leave at
 * its end, after what it could start has started.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "spawner.h"
#include "spawner_int.h"
#include "sr/err.h"
#include "sr/log.h"
#include "sr/util.h"

struct sr_spawner {
	int fd;
	pid_t pid;
	bool pidns;
	struct sr_buf in; /* bytes received, not yet parsed */
};

/* ---- framing, used by both sides ---- */

static int
send_all(int fd, const void *p, size_t n)
{
	const char *c = p;

	while (n > 0) {
		ssize_t w = send(fd, c, n, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN) {
			struct pollfd pfd = {fd, POLLOUT, 0};

			(void) poll(&pfd, 1, 1000);
			continue;
		}
		if (w < 0)
			return (SR_EIO);
		c += w;
		n -= (size_t) w;
	}
	return (0);
}

static int
send_frame(int fd, const struct sr_buf *b)
{
	uint32_t len = (uint32_t) b->len;
	int rv;

	if ((rv = send_all(fd, &len, sizeof(len))) != 0)
		return (rv);
	return (send_all(fd, b->p, b->len));
}

/* Pull buffered input; returns SR_ECLOSED at EOF. */
static int
fill(int fd, struct sr_buf *in)
{
	char chunk[65536];
	ssize_t n;

	for (;;) {
		n = recv(fd, chunk, sizeof(chunk), MSG_DONTWAIT);
		if (n > 0) {
			if (sr_buf_append(in, chunk, (size_t) n) != 0)
				return (SR_ENOMEM);
			continue;
		}
		if (n == 0)
			return (SR_ECLOSED);
		if (errno == EINTR)
			continue;
		return (errno == EAGAIN ? 0 : SR_EIO);
	}
}

/* Take one complete frame from in into out (malloc'd). */
static bool
take_frame(struct sr_buf *in, uint8_t **out, size_t *len)
{
	uint32_t n;

	if (in->len < sizeof(n))
		return (false);
	memcpy(&n, in->p, sizeof(n));
	if (in->len < sizeof(n) + n)
		return (false);
	if ((*out = malloc(n ? n : 1)) == NULL)
		return (false);
	memcpy(*out, in->p + sizeof(n), n);
	*len = n;
	memmove(in->p, in->p + sizeof(n) + n, in->len - sizeof(n) - n);
	in->len -= sizeof(n) + n;
	return (true);
}

/* ---- the helper process ---- */

struct attempt {
	uint64_t id;
	pid_t pid;      /* main process, or the namespace's (or lane's) init */
	int statusfd;   /* one-shot namespace: its init reports here */
	unsigned lane;  /* runs in lanes[lane - 1]; 0: not in a lane */
	double started; /* sr_now() when it was started */
};

/* A lane's namespace outlives its attempts: its init starts one attempt
 * at a time, and when the attempt's main process ends it kills and reaps
 * everything else in the namespace before reporting, so the next attempt
 * starts in an empty namespace - the isolation of a namespace per attempt
 * without creating one (and forking the helper) every time. With process
 * groups a lane is a plain process that kills each attempt's group when
 * its main process ends. Either way a slot's attempts follow each other
 * without the helper (the one process every other lane waits on). */
struct lane {
	pid_t pid;   /* its init (or process); 0: none yet, or reaped */
	pid_t *main; /* process groups: the running attempt's pid, written by
	              * the lane (a shared page, owned; NULL with namespaces) */
	int fd;      /* the helper's end of the init's socket; -1 once the
	              * init hung up. Closed by lane_hangup or lane_died. */
	bool busy;   /* an attempt runs: one report (or the init's death) due */
	bool dying;  /* the init was killed or hung up: no new attempt */
	bool reaped; /* being closed (lane_died): its pid is no longer ours */
	uint64_t id; /* the attempt running in it */
};

/* A SPAWN chained behind another attempt (running, or chained itself),
 * waiting for its end. */
struct chained {
	uint64_t id;
	uint64_t after;
	uint8_t hold[32];
	unsigned lane;  /* the lane it asks for (0: none) */
	bool ready;     /* `after` ended: start it at the loop's end */
	bool handed;    /* sent to the init of the lane `after` runs in */
	bool killed;    /* handed, then a KILL: drop it unless it started */
	uint8_t *frame; /* the SPAWN payload, owned */
	size_t len;
};

struct helper {
	int fd;
	int sigfd;
	bool pidns;
	struct attempt *att;
	size_t natt;
	size_t cap;
	struct lane *lanes;
	size_t nlanes;
	size_t lcap;
	struct pollfd *pfd;
	size_t pcap;
	struct chained *chain;
	size_t nchain;
	size_t chcap;
	struct sr_buf in;
	struct sr_buf out; /* events of this loop turn, sent at its end */
};

/* A chained SPAWN made plain, to start now: a lane's init starts only
 * plain ones (a chained one there is a late handover, lane_init). */
static void
unchain(uint8_t *p)
{
	memset(p + HDR_AFTER, 0, 8);
}

/* An event: u64 id, i32 wait status, i32 errno, i64 peak RSS, then the
 * attempt's start and end (double, sr_now()). */
#define EVENT_LEN (1 + 8 + 4 + 4 + 8 + 8 + 8)

static void
send_events(struct helper *h)
{
	if (h->out.len > 0)
		(void) send_all(h->fd, h->out.p, h->out.len);
	h->out.len = 0;
}

static uint8_t *
put(uint8_t *p, const void *v, size_t n)
{
	memcpy(p, v, n);
	return (p + n);
}

/* Queue an event for the end of this loop turn (helper_loop): the turn
 * starts what it can before the agent hears of anything. */
static void
emit(struct helper *h, uint8_t type, uint64_t id, int status, int err, long rss,
     double started)
{
	uint8_t f[4 + EVENT_LEN];
	uint32_t len = EVENT_LEN;
	int32_t st = status;
	int32_t e = err;
	int64_t r = rss;
	double ended = sr_now();
	uint8_t *p = f;

	p = put(p, &len, 4);
	p = put(p, &type, 1);
	p = put(p, &id, 8);
	p = put(p, &st, 4);
	p = put(p, &e, 4);
	p = put(p, &r, 8);
	p = put(p, &started, 8);
	(void) put(p, &ended, 8);
	if (sr_buf_append(&h->out, f, sizeof(f)) != 0) { /* no memory: now */
		send_events(h);
		(void) send_all(h->fd, f, sizeof(f));
	}
}

/* ---- chained requests ---- */

/* The chained request with this id, or (behind) the one chained behind
 * attempt id. */
static struct chained *
chained_find(struct helper *h, bool behind, uint64_t id)
{
	for (size_t i = 0; i < h->nchain; i++)
		if ((behind ? h->chain[i].after : h->chain[i].id) == id)
			return (&h->chain[i]);
	return (NULL);
}

/* Forget a chained request; its frame is handed to *frame when wanted. */
static void
chained_remove(struct helper *h, struct chained *c, uint8_t **frame)
{
	if (frame != NULL)
		*frame = c->frame;
	else
		free(c->frame);
	*c = h->chain[--h->nchain];
}

/* Drop a chained request, and what was chained behind it in turn. */
static void
chained_drop(struct helper *h, struct chained *c)
{
	uint64_t id = c->id;

	chained_remove(h, c, NULL);
	emit(h, MSG_DROPPED, id, 0, 0, 0, 0);
	if ((c = chained_find(h, true, id)) != NULL)
		chained_drop(h, c);
}

/* Attempt id, started then, is over with this status: what was chained
 * behind it starts at the end of this loop turn (run_ready), or is
 * dropped. */
static void
emit_exit(struct helper *h, uint64_t id, int status, int err, long rss,
          double started)
{
	struct chained *c;

	emit(h, MSG_EXITED, id, status, err, rss, started);
	if ((c = chained_find(h, true, id)) == NULL)
		return;
	if (sp_held(c->hold, status, err))
		chained_drop(h, c);
	else
		c->ready = true;
}

static int
track(struct helper *h, uint64_t id, pid_t pid, int statusfd, unsigned lane)
{
	if (sr_grow(&h->att, &h->cap, h->natt, sizeof(*h->att), 16) != 0)
		return (SR_ENOMEM);
	h->att[h->natt].id = id;
	h->att[h->natt].pid = pid;
	h->att[h->natt].statusfd = statusfd;
	h->att[h->natt].lane = lane;
	h->att[h->natt].started = sr_now();
	h->natt++;
	return (0);
}

/* Forget attempt id; when it was started (now, if it was not tracked). */
static double
untrack(struct helper *h, uint64_t id)
{
	for (size_t i = 0; i < h->natt; i++)
		if (h->att[i].id == id) {
			double t = h->att[i].started;

			h->att[i] = h->att[--h->natt];
			return (t);
		}
	return (sr_now());
}

/* Process groups: the page a lane writes its running attempt's pid to. */
static int
lane_map(struct lane *l)
{
	void *p = mmap(NULL, sizeof(*l->main), PROT_READ | PROT_WRITE,
	               MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return (SR_ENOMEM);
	l->main = p;
	return (0);
}

static void
lane_unmap(struct lane *l)
{
	if (l->main != NULL)
		munmap(l->main, sizeof(*l->main));
	l->main = NULL;
}

static int
lane_start(struct lane *l, bool pidns)
{
	int sv[2];
	pid_t pid;

	if (!pidns && lane_map(l) != 0)
		return (SR_ENOMEM);
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
		lane_unmap(l);
		return (SR_EIO);
	}
	pid = sp_lane_clone(sv[1], pidns, l->main);
	close(sv[1]);
	if (pid < 0) {
		close(sv[0]);
		lane_unmap(l);
		return (SR_EIO);
	}
	fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_NONBLOCK);
	l->pid = pid;
	l->fd = sv[0];
	l->busy = l->dying = false;
	return (0);
}

/* Lane n (from 1), its init started if it has none. */
static struct lane *
lane_get(struct helper *h, unsigned n)
{
	struct lane *l;

	while (h->nlanes < n) {
		if (sr_grow(&h->lanes, &h->lcap, h->nlanes, sizeof(*h->lanes),
		            8) != 0)
			return (NULL);
		memset(&h->lanes[h->nlanes], 0, sizeof(*h->lanes));
		h->lanes[h->nlanes++].fd = -1;
	}
	l = &h->lanes[n - 1];
	if (l->pid == 0 && lane_start(l, h->pidns) != 0)
		return (NULL);
	return (l);
}

static void
lane_kill(struct lane *l)
{
	if (!l->reaped)
		kill(l->pid, SIGKILL); /* reaped, and closed, by reap() */
	l->dying = true;
}

/* Hand the request chained behind lane l's attempt to its init now: the
 * init starts it the moment that attempt ends and its namespace is empty,
 * unless the attempt's exit code holds it (lane_follow), and says so in
 * the attempt's report. A frame that cannot be sent kills the lane. */
static void
lane_hand(struct helper *h, struct lane *l)
{
	struct chained *c = chained_find(h, true, l->id);
	struct sr_buf b;

	if (c == NULL || c->handed ||
	    c->lane != (unsigned) (l - h->lanes) + 1 || !l->busy || l->dying ||
	    l->fd < 0)
		return;
	b = (struct sr_buf){c->frame, c->len, c->len};
	if (send_frame(l->fd, &b) == 0)
		c->handed = true;
	else
		lane_kill(l);
}

/* Run the attempt in its lane; false when the lane cannot take it (busy,
 * dying, or its init could not be started): the caller makes a namespace
 * of its own for it. */
static bool
lane_spawn(struct helper *h, unsigned n, uint64_t id, const uint8_t *p,
           size_t len)
{
	struct sr_buf b = {(uint8_t *) p, len, len};
	struct lane *l = lane_get(h, n);

	if (l == NULL || l->busy || l->dying ||
	    track(h, id, l->pid, -1, n) != 0)
		return (false);
	if (send_frame(l->fd, &b) != 0) {
		untrack(h, id);
		lane_kill(l);
		return (false);
	}
	l->busy = true;
	l->id = id;
	lane_hand(h, l);
	return (true);
}

/* The init took the handed request c over as its attempt's successor:
 * c now runs in the lane. What is chained behind it is handed on. */
static void
lane_take_over(struct helper *h, struct lane *l, struct chained *c,
               double started)
{
	uint64_t id = c->id;
	unsigned n = (unsigned) (l - h->lanes) + 1;

	chained_remove(h, c, NULL);
	l->busy = true;
	l->id = id;
	if (track(h, id, l->pid, -1, n) != 0) {
		lane_kill(l); /* it could not be signalled: end it now */
		return;
	}
	h->att[h->natt - 1].started = started;
	lane_hand(h, l);
}

/* Lane l's attempt is over (r: its report; NULL when its init died
 * without one: status then). What was handed to the init for after it
 * was taken over, or comes back: dropped if it was killed meanwhile,
 * else started or dropped by emit_exit's rule, as if never handed. */
static void
lane_over(struct helper *h, struct lane *l, const struct lane_report *r,
          int status, int err)
{
	uint64_t id = l->id;
	double started = untrack(h, id);
	struct chained *c = chained_find(h, true, id);

	l->busy = false;
	if (c == NULL || !c->handed) {
		emit_exit(h, id, status, err, r ? (long) r->rss_kb : 0,
		          started);
		return;
	}
	c->handed = false;
	emit(h, MSG_EXITED, id, status, err, r ? (long) r->rss_kb : 0, started);
	if (r != NULL && r->taken)
		lane_take_over(h, l, c, r->next_started);
	else if (c->killed || sp_held(c->hold, status, err))
		chained_drop(h, c);
	else
		c->ready = true;
}

/* A report from the lane's init: true when one was read. A report is 32
 * bytes written at once to a stream socket: it arrives whole or not at
 * all. */
static bool
lane_reported(struct helper *h, struct lane *l)
{
	struct lane_report r;

	if (l->fd < 0 ||
	    recv(l->fd, &r, sizeof(r), MSG_DONTWAIT) != (ssize_t) sizeof(r))
		return (false);
	if (l->busy)
		lane_over(h, l, &r, r.status, r.err);
	return (true);
}

/* The init closed its socket (it is exiting, its namespace being
 * emptied): take a last report, stop polling; reap() finishes the lane.
 * Never waits here - emptying a namespace can take long. */
static void
lane_hangup(struct helper *h, struct lane *l)
{
	l->dying = true;
	while (lane_reported(h, l))
		;
	close(l->fd);
	l->fd = -1;
}

/* A lane without a namespace died: its attempt, now the helper's orphan
 * if it still runs, is killed with its group. */
static void
lane_orphan_kill(struct lane *l)
{
	pid_t pid = l->main ? __atomic_load_n(l->main, __ATOMIC_ACQUIRE) : 0;

	if (pid > 0) {
		kill(-pid, SIGKILL);
		kill(pid, SIGKILL);
	}
	lane_unmap(l);
}

/* The lane's init is reaped (killed to end its attempt, or failed): the
 * kernel has emptied its namespace (a lane without one: its attempt is
 * killed here). A report written before it died still counts; else a
 * killed init's signal is the attempt's, and an init that exited by
 * itself is an error of ours, never the attempt's exit code. The peak RSS
 * of a killed attempt is not known (0). */
static void
lane_died(struct helper *h, struct lane *l, int status)
{
	l->dying = l->reaped = true; /* nothing more is sent to it */
	lane_orphan_kill(l);
	while (lane_reported(h, l))
		;
	if (l->busy) {
		if (WIFEXITED(status))
			lane_over(h, l, NULL, 0, EIO);
		else
			lane_over(h, l, NULL, status, 0);
	}
	if (l->fd >= 0)
		close(l->fd);
	memset(l, 0, sizeof(*l));
	l->fd = -1;
}

static struct lane *
lane_of_pid(struct helper *h, pid_t pid)
{
	for (size_t i = 0; i < h->nlanes; i++)
		if (h->lanes[i].pid == pid)
			return (&h->lanes[i]);
	return (NULL);
}

static void
start_attempt(struct helper *h, const uint8_t *p, size_t len)
{
	struct spawn_args a;
	struct spawn_hdr hd;
	uint64_t id;
	pid_t pid = -1;
	int statusfd = -1;
	int rv;

	if (sp_parse_spawn(p, len, &hd, &a) != 0) {
		if (len >= SPAWN_HDR) /* its id is known: say so */
			emit_exit(h, hd.id, 0, EINVAL, 0, sr_now());
		return;
	}
	id = hd.id;
	if (hd.lane > 0 && lane_spawn(h, hd.lane, id, p, len)) {
		sp_free_spawn(&a);
		return;
	}
	if (h->pidns) {
		pid = sp_spawn_in_ns(&a, &statusfd);
		rv = pid < 0 ? errno : 0;
	} else {
		rv = sp_posix_spawn(&a, &pid);
	}
	sp_free_spawn(&a);
	if (rv != 0 || track(h, id, pid, statusfd, 0) != 0)
		emit_exit(h, id, 0, rv ? rv : ENOMEM, 0, sr_now());
}

static struct attempt *
find_id(struct helper *h, uint64_t id)
{
	for (size_t i = 0; i < h->natt; i++)
		if (h->att[i].id == id)
			return (&h->att[i]);
	return (NULL);
}

/* Keep a chained SPAWN until its attempt `after` (running, or chained
 * itself) ends. One that follows neither, or comes behind one already
 * chained to it, is dropped: the caller then starts it the plain way. */
static void
chain(struct helper *h, const struct spawn_hdr *hd, const uint8_t *p,
      size_t len)
{
	struct chained *c;
	struct attempt *a;

	if ((find_id(h, hd->after) == NULL &&
	     chained_find(h, false, hd->after) == NULL) ||
	    chained_find(h, true, hd->after) != NULL) {
		emit(h, MSG_DROPPED, hd->id, 0, 0, 0, 0);
		return;
	}
	if (sr_grow(&h->chain, &h->chcap, h->nchain, sizeof(*h->chain), 4) !=
	        0 ||
	    (h->chain[h->nchain].frame = malloc(len)) == NULL) {
		emit(h, MSG_DROPPED, hd->id, 0, 0, 0, 0);
		return;
	}
	c = &h->chain[h->nchain++];
	c->id = hd->id;
	c->lane = hd->lane;
	c->after = hd->after;
	memcpy(c->hold, hd->hold, sizeof(c->hold));
	c->ready = c->handed = c->killed = false;
	memcpy(c->frame, p, len);
	c->len = len;
	if ((a = find_id(h, hd->after)) != NULL && a->lane > 0)
		lane_hand(h, &h->lanes[a->lane - 1]);
}

static void
on_spawn(struct helper *h, const uint8_t *p, size_t len)
{
	struct spawn_hdr hd;

	if (sp_parse_hdr(p, len, &hd) != 0)
		return;
	if (hd.after != 0)
		chain(h, &hd, p, len);
	else
		start_attempt(h, p, len);
}

/* Start the chained requests whose attempt ended in this loop turn,
 * again from the start after each: one that cannot start makes the one
 * behind it ready, wherever that sits in the list. */
static void
run_ready(struct helper *h)
{
	size_t i = 0;

	while (i < h->nchain) {
		uint8_t *frame;
		size_t len = h->chain[i].len;

		if (!h->chain[i].ready) {
			i++;
			continue;
		}
		chained_remove(h, &h->chain[i], &frame);
		unchain(frame);
		start_attempt(h, frame, len);
		free(frame);
		i = 0;
	}
}

static void
signal_attempt(const struct helper *h, const struct attempt *a, int sig)
{
	if (h->pidns)
		kill(a->pid, sig);
	else
		kill(-a->pid, sig);
}

/* Pass a KILL frame to a lane's init: it signals its namespace if the
 * attempt the frame names is the one running, and drops the request
 * handed to it if the frame names that one. */
static int
lane_tell(struct lane *l, const uint8_t *frame)
{
	size_t n = 1 + sizeof(uint64_t) + sizeof(int32_t);
	struct sr_buf b = {(uint8_t *) frame, n, n};

	return (l->fd < 0 ? SR_ECLOSED : send_frame(l->fd, &b));
}

/* A signal for a lane's attempt. SIGKILL kills the init and so the
 * namespace - unless a request is handed to the init: the init may have
 * started it already (its report not read yet), so the frame goes, and
 * the init kills only what the frame names. A lane without a namespace
 * always gets the frame and signals the attempt's group. A frame that
 * cannot be sent kills the lane. */
static void
lane_signal(struct helper *h, struct lane *l, const uint8_t *frame, int sig)
{
	struct chained *c = chained_find(h, true, l->id);
	bool followed = c != NULL && c->handed;

	if ((sig == SIGKILL && !followed && h->pidns) ||
	    lane_tell(l, frame) != 0)
		lane_kill(l);
}

static void
on_kill(struct helper *h, const uint8_t *p, size_t len)
{
	uint64_t id;
	int32_t sig;
	struct attempt *a;
	struct chained *c;

	if (len < 1 + sizeof(id) + sizeof(sig))
		return;
	memcpy(&id, p + 1, sizeof(id));
	memcpy(&sig, p + 1 + sizeof(id), sizeof(sig));
	if ((c = chained_find(h, false, id)) != NULL && c->handed) {
		/* The init drops it, or kills it if it took it over: its
		 * attempt's report tells (lane_over). */
		c->killed = true;
		if ((a = find_id(h, c->after)) != NULL && a->lane > 0)
			(void) lane_tell(&h->lanes[a->lane - 1], p);
		return;
	}
	if (c != NULL) { /* not started: never will */
		chained_drop(h, c);
		return;
	}
	if ((a = find_id(h, id)) == NULL)
		return;
	if (a->lane > 0)
		lane_signal(h, &h->lanes[a->lane - 1], p, sig);
	else
		signal_attempt(h, a, sig);
}

static bool
is_attempt(const struct helper *h, pid_t pid)
{
	for (size_t i = 0; i < h->natt; i++)
		if (h->att[i].pid == pid)
			return (true);
	for (size_t i = 0; i < h->nlanes; i++)
		if (h->lanes[i].pid == pid)
			return (true);
	return (false);
}

int
sp_kill_children(bool (*spare)(pid_t pid, void *arg), void *arg)
{
	char path[64];
	char buf[512];
	DIR *d = opendir("/proc");
	struct dirent *de;
	int killed = 0;

	if (d == NULL)
		return (0);
	while ((de = readdir(d)) != NULL) {
		pid_t pid = (pid_t) atoi(de->d_name);
		char *rp;
		int ppid = 0;
		FILE *f;

		if (pid <= 0 || (spare != NULL && spare(pid, arg)))
			continue;
		snprintf(path, sizeof(path), "/proc/%d/stat", pid);
		if ((f = fopen(path, "r")) == NULL)
			continue;
		if (fgets(buf, sizeof(buf), f) != NULL &&
		    (rp = strrchr(buf, ')')) != NULL)
			sscanf(rp + 2, "%*c %d", &ppid);
		fclose(f);
		if (ppid == getpid()) {
			kill(-pid, SIGKILL);
			if (kill(pid, SIGKILL) == 0)
				killed++;
		}
	}
	closedir(d);
	return (killed);
}

static bool
is_attempt_of(pid_t pid, void *h)
{
	return (is_attempt(h, pid));
}

/* Kill our direct children that are not running attempts: escaped
 * orphans reparented to us. Returns how many were signalled. */
static int
sweep(struct helper *h)
{
	return (sp_kill_children(is_attempt_of, h));
}

/* The next child that has ended, not reaped yet (0: none). An attempt
 * the helper started as a process group has its group killed now, while
 * its main process, unreaped, still holds the group's id. */
static pid_t
peek_ended(struct helper *h)
{
	siginfo_t si;

	si.si_pid = 0;
	if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) != 0)
		return (0);
	for (size_t i = 0; si.si_pid > 0 && i < h->natt; i++)
		if (h->att[i].pid == si.si_pid && h->att[i].statusfd < 0 &&
		    h->att[i].lane == 0)
			kill(-si.si_pid, SIGKILL); /* leftovers in group */
	return (si.si_pid);
}

static void
reap(struct helper *h)
{
	struct rusage ru;
	struct lane *l;
	int status;
	pid_t pid;

	while ((pid = peek_ended(h)) > 0) {
		if (wait4(pid, &status, 0, &ru) != pid)
			break;
		if ((l = lane_of_pid(h, pid)) != NULL) {
			lane_died(h, l, status);
			continue;
		}
		for (size_t i = 0; i < h->natt; i++) {
			struct attempt *a = &h->att[i];
			struct attempt done = *a;
			int rep[2] = {status, 0};

			if (a->pid != pid)
				continue;
			if (a->statusfd >= 0) {
				if (read(a->statusfd, rep, sizeof(rep)) !=
				    sizeof(rep)) {
					rep[0] = status;
					rep[1] = 0;
				}
				close(a->statusfd);
			}
			h->att[i] = h->att[--h->natt];
			emit_exit(h, done.id, rep[0], rep[1], ru.ru_maxrss,
			          done.started);
			break;
		}
	}
}

static void
on_request(struct helper *h, const uint8_t *p, size_t len)
{
	if (len == 0)
		return;
	if (p[0] == MSG_SPAWN)
		on_spawn(h, p, len);
	else if (p[0] == MSG_KILL)
		on_kill(h, p, len);
	else if (p[0] == MSG_SWEEP)
		(void) sweep(h);
}

/* A child of the helper was reaped at shutdown: no longer signal it (its
 * pid may be reused). */
static void
forget(struct helper *h, pid_t pid)
{
	struct lane *l = lane_of_pid(h, pid);

	if (l != NULL)
		l->pid = 0;
	for (size_t i = 0; i < h->natt; i++)
		if (h->att[i].pid == pid) {
			h->att[i] = h->att[--h->natt];
			return;
		}
}

/* EOF from the parent: kill everything below us, reap, exit. */
static void
finish(struct helper *h)
{
	pid_t pid;

	send_events(h); /* a parent still there reads them */
	for (size_t i = 0; i < h->nlanes; i++)
		if (h->lanes[i].pid > 0)
			kill(h->lanes[i].pid, SIGKILL);
	for (int round = 0; round < 200; round++) {
		int left;

		for (size_t i = 0; i < h->natt; i++)
			signal_attempt(h, &h->att[i], SIGKILL);
		left = sweep(h);
		while ((pid = waitpid(-1, NULL, WNOHANG)) > 0)
			forget(h, pid);
		if (left == 0 && pid < 0 && errno == ECHILD)
			break;
		usleep(10000);
	}
	_exit(0);
}

/* Poll set: the channel, the signalfd, then each lane's init that has
 * not hung up. Growing it may fail only for want of memory: then the
 * helper ends as if its parent had gone (killing everything). sr_grow
 * leaves room for index 1 + nlanes. */
static size_t
poll_set(struct helper *h)
{
	size_t n = 2;

	if (sr_grow(&h->pfd, &h->pcap, 1 + h->nlanes, sizeof(*h->pfd), 8) != 0)
		finish(h);
	h->pfd[0] = (struct pollfd){h->fd, POLLIN, 0};
	h->pfd[1] = (struct pollfd){h->sigfd, POLLIN, 0};
	for (size_t i = 0; i < h->nlanes; i++)
		if (h->lanes[i].pid > 0 && h->lanes[i].fd >= 0)
			h->pfd[n++] =
			    (struct pollfd){h->lanes[i].fd, POLLIN, 0};
	return (n);
}

static struct lane *
lane_of_fd(struct helper *h, int fd)
{
	for (size_t i = 0; i < h->nlanes; i++)
		if (h->lanes[i].pid > 0 && h->lanes[i].fd == fd)
			return (&h->lanes[i]);
	return (NULL);
}

/* Reports and hang-ups from the lanes polled (pfd[2..n)). */
static void
lanes_in(struct helper *h, const struct pollfd *pfd, size_t n)
{
	for (size_t i = 2; i < n; i++) {
		struct lane *l = lane_of_fd(h, pfd[i].fd);

		if (l == NULL)
			continue;
		if (pfd[i].revents & POLLIN)
			while (lane_reported(h, l))
				;
		if (pfd[i].revents & (POLLHUP | POLLERR))
			lane_hangup(h, l);
	}
}

static void
helper_loop(struct helper *h)
{
	struct pollfd *pfd;
	struct signalfd_siginfo si;
	uint8_t *msg;
	size_t len;
	size_t n;

	for (;;) {
		n = poll_set(h);
		pfd = h->pfd;
		if (poll(pfd, n, -1) < 0 && errno != EINTR)
			finish(h);
		if (pfd[1].revents & POLLIN) {
			while (read(h->sigfd, &si, sizeof(si)) == sizeof(si))
				if (si.ssi_signo == SIGTERM ||
				    si.ssi_signo == SIGHUP)
					finish(h);
			reap(h);
		}
		lanes_in(h, pfd, n);
		if (pfd[0].revents & (POLLIN | POLLHUP | POLLERR)) {
			int rv = fill(h->fd, &h->in);

			while (take_frame(&h->in, &msg, &len)) {
				on_request(h, msg, len);
				free(msg);
			}
			if (rv != 0)
				finish(h);
		}
		reap(h);
		run_ready(h);
		send_events(h);
	}
}

static void
helper_main(int fd)
{
	struct helper h = {0};
	sigset_t set;

	prctl(PR_SET_CHILD_SUBREAPER, 1);
	prctl(PR_SET_NAME, "shardrun-spawn");
	signal(SIGINT, SIG_IGN);
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	sigprocmask(SIG_BLOCK, &set, NULL);
	h.fd = fd;
	h.sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	h.pidns = getenv("SHARDRUN_NO_PIDNS") == NULL && sp_probe_pidns();
	sr_buf_init(&h.in);
	sr_buf_init(&h.out);
	(void) !write(fd, h.pidns ? "N" : "G", 1);
	helper_loop(&h);
}

/* ---- the parent's handle ---- */

int
sr_spawner_start(struct sr_spawner **sp)
{
	struct sr_spawner *s;
	int sv[2];
	char mode;

	if ((s = calloc(1, sizeof(*s))) == NULL)
		return (SR_ENOMEM);
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
		free(s);
		return (SR_EIO);
	}
	if ((s->pid = fork()) < 0) {
		close(sv[0]);
		close(sv[1]);
		free(s);
		return (SR_EIO);
	}
	if (s->pid == 0) {
		close(sv[0]);
		close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
		helper_main(sv[1]);
		_exit(0);
	}
	close(sv[1]);
	s->fd = sv[0];
	if (read(s->fd, &mode, 1) != 1) {
		sr_spawner_stop(s);
		return (SR_EIO);
	}
	s->pidns = (mode == 'N');
	fcntl(s->fd, F_SETFL, fcntl(s->fd, F_GETFL) | O_NONBLOCK);
	sr_buf_init(&s->in);
	*sp = s;
	return (0);
}

void
sr_spawner_stop(struct sr_spawner *s)
{
	if (s == NULL)
		return;
	close(s->fd);
	while (waitpid(s->pid, NULL, 0) < 0 && errno == EINTR)
		;
	sr_buf_free(&s->in);
	free(s);
}

int
sr_spawner_fd(const struct sr_spawner *s)
{
	return (s->fd);
}

bool
sr_spawner_pidns(const struct sr_spawner *s)
{
	return (s->pidns);
}

pid_t
sr_spawner_pid(const struct sr_spawner *s)
{
	return (s->pid);
}

static int
push_count(struct sr_buf *b, const char *const *v)
{
	size_t n = 0;
	char num[32];

	while (v[n] != NULL)
		n++;
	snprintf(num, sizeof(num), "%zu", n);
	if (sr_buf_append(b, num, strlen(num) + 1) != 0)
		return (SR_ENOMEM);
	for (size_t i = 0; i < n; i++)
		if (sr_buf_append(b, v[i], strlen(v[i]) + 1) != 0)
			return (SR_ENOMEM);
	return (0);
}

int
sr_spawner_spawn(struct sr_spawner *s, const struct sr_spawn_req *r)
{
	struct sr_buf b;
	uint8_t type = MSG_SPAWN;
	uint32_t lane = r->lane;
	int rv;

	sr_buf_init(&b);
	if ((rv = sr_buf_append(&b, &type, 1)) != 0 ||
	    (rv = sr_buf_append(&b, &r->id, sizeof(r->id))) != 0 ||
	    (rv = sr_buf_append(&b, &lane, sizeof(lane))) != 0 ||
	    (rv = sr_buf_append(&b, &r->after, sizeof(r->after))) != 0 ||
	    (rv = sr_buf_append(&b, r->hold, sizeof(r->hold))) != 0 ||
	    (rv = sr_buf_append(&b, r->cwd, strlen(r->cwd) + 1)) != 0 ||
	    (rv = sr_buf_append(&b, r->log, strlen(r->log) + 1)) != 0 ||
	    (rv = push_count(&b, r->argv)) != 0 ||
	    (rv = push_count(&b, r->envp)) != 0) {
		sr_buf_free(&b);
		return (rv);
	}
	rv = b.len > MAX_MSG ? SR_ETOOBIG : send_frame(s->fd, &b);
	sr_buf_free(&b);
	return (rv);
}

int
sr_spawner_kill(struct sr_spawner *s, uint64_t id, int sig)
{
	struct sr_buf b;
	uint8_t type = MSG_KILL;
	int32_t sg = sig;
	int rv;

	sr_buf_init(&b);
	sr_buf_append(&b, &type, 1);
	sr_buf_append(&b, &id, sizeof(id));
	sr_buf_append(&b, &sg, sizeof(sg));
	rv = send_frame(s->fd, &b);
	sr_buf_free(&b);
	return (rv);
}

int
sr_spawner_sweep(struct sr_spawner *s)
{
	struct sr_buf b;
	uint8_t type = MSG_SWEEP;
	int rv;

	sr_buf_init(&b);
	sr_buf_append(&b, &type, 1);
	rv = send_frame(s->fd, &b);
	sr_buf_free(&b);
	return (rv);
}

int
sr_spawner_read(struct sr_spawner *s, struct sr_spawn_ev *ev)
{
	uint8_t *m;
	size_t len;
	int rv = fill(s->fd, &s->in);
	int32_t st;
	int32_t err;
	int64_t rss;

	while (take_frame(&s->in, &m, &len)) {
		if (len != EVENT_LEN ||
		    (m[0] != MSG_EXITED && m[0] != MSG_DROPPED)) {
			free(m);
			continue;
		}
		ev->type =
		    m[0] == MSG_EXITED ? SR_SPAWN_EXITED : SR_SPAWN_DROPPED;
		memcpy(&ev->id, m + 1, 8);
		memcpy(&st, m + 9, 4);
		memcpy(&err, m + 13, 4);
		memcpy(&rss, m + 17, 8);
		memcpy(&ev->started, m + 25, 8);
		memcpy(&ev->ended, m + 33, 8);
		free(m);
		ev->status = st;
		ev->err = err;
		ev->peak_rss_kb = (long) rss;
		return (0);
	}
	return (rv == SR_ECLOSED ? SR_ECLOSED : SR_EAGAIN);
}
