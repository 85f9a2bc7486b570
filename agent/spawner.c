/*
 * spawner.c - the helper process that starts, reaps and kills attempts.
 *
 * Channel: a SOCK_STREAM socketpair carrying frames [u32 length][payload];
 * payload[0] is the type. Requests: SPAWN, KILL, SWEEP. Events: EXITED.
 * The helper is single-threaded: poll() on the channel and a signalfd for
 * SIGCHLD.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "spawner.h"
#include "sr/err.h"
#include "sr/log.h"
#include "sr/util.h"

enum { MSG_SPAWN = 1, MSG_KILL = 2, MSG_SWEEP = 3, MSG_EXITED = 4 };

#define MAX_MSG (8u * 1024u * 1024u)

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
	pid_t pid;    /* main process, or the namespace's init */
	int statusfd; /* ns mode: init reports the main process here */
};

struct helper {
	int fd;
	int sigfd;
	bool pidns;
	struct attempt *att;
	size_t natt;
	size_t cap;
	struct sr_buf in;
};

struct spawn_args {
	struct sr_strv parts; /* owns every string below */
	char *cwd;
	char *log;
	char **argv;
	char **envp;
	int statusfd; /* ns mode: write end */
};

static int
do_posix_spawn(const struct spawn_args *a, pid_t *pid)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	sigset_t all;
	sigset_t none;
	int rv;

	posix_spawn_file_actions_init(&fa);
	posix_spawnattr_init(&at);
	/* Reset only what the helper changed (sigdefault costs a sigaction
	 * per signal in the child): ignored SIGINT and SIGPIPE, and the
	 * blocked signals, which the empty mask releases. */
	sigemptyset(&all);
	sigaddset(&all, SIGINT);
	sigaddset(&all, SIGPIPE);
	sigaddset(&all, SIGTERM);
	sigaddset(&all, SIGHUP);
	sigaddset(&all, SIGCHLD);
	sigemptyset(&none);
	posix_spawnattr_setsigdefault(&at, &all);
	posix_spawnattr_setsigmask(&at, &none);
	posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSID |
	                                  POSIX_SPAWN_SETSIGDEF |
	                                  POSIX_SPAWN_SETSIGMASK);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(
	    &fa, 1, a->log, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0600);
	posix_spawn_file_actions_adddup2(&fa, 1, 2);
	posix_spawn_file_actions_addchdir_np(&fa, a->cwd);
	rv = posix_spawnp(pid, a->argv[0], &fa, &at, a->argv, a->envp);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&at);
	return (rv);
}

/* Parse a SPAWN payload: u64 id, then NUL-separated strings: cwd, log,
 * argc (decimal), argv..., envc, envp... */
static int
parse_spawn(const uint8_t *p, size_t len, uint64_t *id, struct spawn_args *a)
{
	struct sr_strv *v = &a->parts;
	const char *s;
	const char *end = (const char *) p + len;
	size_t argc;

	if (len < 1 + sizeof(*id))
		return (SR_EPROTO);
	memcpy(id, p + 1, sizeof(*id));
	sr_strv_init(v);
	for (s = (const char *) p + 1 + sizeof(*id); s < end;) {
		size_t n = strnlen(s, (size_t) (end - s));

		if (sr_strv_pushn(v, s, n) != 0)
			break;
		s += n + 1;
	}
	if (v->n < 4 || (argc = strtoul(v->v[2], NULL, 10)) == 0 ||
	    v->n < 4 + argc ||
	    strtoul(v->v[3 + argc], NULL, 10) + 4 + argc != v->n) {
		sr_strv_free(v);
		return (SR_EPROTO);
	}
	a->cwd = v->v[0];
	a->log = v->v[1];
	a->argv = v->v + 3;
	free(v->v[3 + argc]);
	v->v[3 + argc] = NULL; /* terminates argv; envp ends at v[n] */
	a->envp = v->v + 4 + argc;
	a->statusfd = -1;
	return (0);
}

static void
free_spawn(struct spawn_args *a)
{
	sr_strv_free(&a->parts);
}

static volatile sig_atomic_t fwd_sig;

static void
init_forward(int sig)
{
	/* PID 1 of the attempt's namespace: pass the signal to everyone. */
	fwd_sig = sig;
	kill(-1, sig);
}

/* The namespace's init: start the attempt, reap everything, report the
 * main process's status, exit (the kernel then kills the rest). */
static int
ns_init(void *arg)
{
	struct spawn_args *a = arg;
	struct sigaction sa;
	pid_t main_pid;
	pid_t w;
	int status = 0;
	int report[2];

	sigset_t none;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	/* Keep only the status pipe: not the helper's channel, its signalfd,
	 * or other attempts' status pipes. */
	if (a->statusfd > 3)
		close_range(3, (unsigned) a->statusfd - 1, 0);
	close_range((unsigned) a->statusfd + 1, ~0U, 0);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = init_forward;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	/* The helper blocks SIGTERM and friends (it reads them from a
	 * signalfd); the init must receive them to forward them. */
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	report[1] = do_posix_spawn(a, &main_pid);
	if (report[1] != 0) {
		report[0] = 0;
		(void) !write(a->statusfd, report, sizeof(report));
		_exit(127);
	}
	while ((w = waitpid(-1, &status, 0)) != main_pid)
		if (w < 0 && errno != EINTR)
			_exit(126);
	report[0] = status;
	report[1] = 0;
	(void) !write(a->statusfd, report, sizeof(report));
	_exit(0);
}

static char ns_stack[256 * 1024] __attribute__((aligned(16)));

static pid_t
spawn_in_ns(struct spawn_args *a, int *statusfd)
{
	int p[2];
	pid_t pid;

	if (pipe2(p, O_CLOEXEC) != 0)
		return (-1);
	a->statusfd = p[1];
	pid = clone(ns_init, ns_stack + sizeof(ns_stack),
	            CLONE_NEWPID | SIGCHLD, a);
	close(p[1]);
	if (pid < 0) {
		close(p[0]);
		return (-1);
	}
	*statusfd = p[0];
	return (pid);
}

static bool
probe_pidns(void)
{
	struct spawn_args a = {0};
	char *argv[] = {"true", NULL};
	char *envp[] = {"PATH=/usr/bin:/bin", NULL};
	int fd;
	int st;
	pid_t pid;

	a.cwd = "/";
	a.log = "/dev/null";
	a.argv = argv;
	a.envp = envp;
	if ((pid = spawn_in_ns(&a, &fd)) < 0)
		return (false);
	waitpid(pid, &st, 0);
	close(fd);
	return (WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

static void
emit_exit(struct helper *h, uint64_t id, int status, int err, long rss)
{
	struct sr_buf b;
	uint8_t type = MSG_EXITED;
	int32_t st = status;
	int32_t e = err;
	int64_t r = rss;

	sr_buf_init(&b);
	sr_buf_append(&b, &type, 1);
	sr_buf_append(&b, &id, sizeof(id));
	sr_buf_append(&b, &st, sizeof(st));
	sr_buf_append(&b, &e, sizeof(e));
	sr_buf_append(&b, &r, sizeof(r));
	(void) send_frame(h->fd, &b);
	sr_buf_free(&b);
}

static int
track(struct helper *h, uint64_t id, pid_t pid, int statusfd)
{
	if (sr_grow(&h->att, &h->cap, h->natt, sizeof(*h->att), 16) != 0)
		return (SR_ENOMEM);
	h->att[h->natt].id = id;
	h->att[h->natt].pid = pid;
	h->att[h->natt].statusfd = statusfd;
	h->natt++;
	return (0);
}

static void
on_spawn(struct helper *h, const uint8_t *p, size_t len)
{
	struct spawn_args a;
	uint64_t id;
	pid_t pid = -1;
	int statusfd = -1;
	int rv;

	if (parse_spawn(p, len, &id, &a) != 0)
		return;
	if (h->pidns) {
		pid = spawn_in_ns(&a, &statusfd);
		rv = pid < 0 ? errno : 0;
	} else {
		rv = do_posix_spawn(&a, &pid);
	}
	free_spawn(&a);
	if (rv != 0 || track(h, id, pid, statusfd) != 0)
		emit_exit(h, id, 0, rv ? rv : ENOMEM, 0);
}

static struct attempt *
find_id(struct helper *h, uint64_t id)
{
	for (size_t i = 0; i < h->natt; i++)
		if (h->att[i].id == id)
			return (&h->att[i]);
	return (NULL);
}

static void
signal_attempt(const struct helper *h, const struct attempt *a, int sig)
{
	if (h->pidns)
		kill(a->pid, sig);
	else
		kill(-a->pid, sig);
}

static void
on_kill(struct helper *h, const uint8_t *p, size_t len)
{
	uint64_t id;
	int32_t sig;
	struct attempt *a;

	if (len < 1 + sizeof(id) + sizeof(sig))
		return;
	memcpy(&id, p + 1, sizeof(id));
	memcpy(&sig, p + 1 + sizeof(id), sizeof(sig));
	if ((a = find_id(h, id)) != NULL)
		signal_attempt(h, a, sig);
}

static bool
is_attempt(const struct helper *h, pid_t pid)
{
	for (size_t i = 0; i < h->natt; i++)
		if (h->att[i].pid == pid)
			return (true);
	return (false);
}

/* Kill our direct children that are not running attempts: escaped
 * orphans reparented to us. Returns how many were signalled. */
static int
sweep(struct helper *h)
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

		if (pid <= 0 || is_attempt(h, pid))
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
			kill(pid, SIGKILL);
			killed++;
		}
	}
	closedir(d);
	return (killed);
}

static void
reap(struct helper *h)
{
	struct rusage ru;
	int status;
	pid_t pid;

	while ((pid = wait4(-1, &status, WNOHANG, &ru)) > 0) {
		for (size_t i = 0; i < h->natt; i++) {
			struct attempt *a = &h->att[i];
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
			} else {
				kill(-pid, SIGKILL); /* leftovers in group */
			}
			emit_exit(h, a->id, rep[0], rep[1], ru.ru_maxrss);
			h->att[i] = h->att[--h->natt];
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

/* EOF from the parent: kill everything below us, reap, exit. */
static void
finish(struct helper *h)
{
	for (size_t i = 0; i < h->natt; i++)
		signal_attempt(h, &h->att[i], SIGKILL);
	for (int round = 0; round < 200; round++) {
		int left = sweep(h);

		for (size_t i = 0; i < h->natt; i++)
			signal_attempt(h, &h->att[i], SIGKILL);
		while (waitpid(-1, NULL, WNOHANG) > 0)
			;
		if (left == 0 && waitpid(-1, NULL, WNOHANG) < 0 &&
		    errno == ECHILD)
			break;
		usleep(10000);
	}
	_exit(0);
}

static void
helper_loop(struct helper *h)
{
	struct pollfd pfd[2] = {{h->fd, POLLIN, 0}, {h->sigfd, POLLIN, 0}};
	struct signalfd_siginfo si;
	uint8_t *msg;
	size_t len;

	for (;;) {
		if (poll(pfd, 2, -1) < 0 && errno != EINTR)
			finish(h);
		if (pfd[1].revents & POLLIN) {
			while (read(h->sigfd, &si, sizeof(si)) == sizeof(si))
				if (si.ssi_signo == SIGTERM ||
				    si.ssi_signo == SIGHUP)
					finish(h);
			reap(h);
		}
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
	h.pidns = getenv("SHARDRUN_NO_PIDNS") == NULL && probe_pidns();
	sr_buf_init(&h.in);
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
	int rv;

	sr_buf_init(&b);
	if ((rv = sr_buf_append(&b, &type, 1)) != 0 ||
	    (rv = sr_buf_append(&b, &r->id, sizeof(r->id))) != 0 ||
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
		if (len != 1 + 8 + 4 + 4 + 8 || m[0] != MSG_EXITED) {
			free(m);
			continue;
		}
		memcpy(&ev->id, m + 1, 8);
		memcpy(&st, m + 9, 4);
		memcpy(&err, m + 13, 4);
		memcpy(&rss, m + 17, 8);
		free(m);
		ev->type = SR_SPAWN_EXITED;
		ev->status = st;
		ev->err = err;
		ev->peak_rss_kb = (long) rss;
		return (0);
	}
	return (rv == SR_ECLOSED ? SR_ECLOSED : SR_EAGAIN);
}
