/*
 * forksrv.c - starting, feeding and stopping a slot's fork server.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <jansson.h>

#include "forkserver_py.h" /* generated: forkserver_py[] */
#include "forksrv.h"
#include "sr/err.h"
#include "sr/log.h"
#include "sr/util.h"

static int
listen_on(struct sr_forksrv *fs, const char *dir)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};

	if (snprintf(fs->sock_path, sizeof(fs->sock_path), "%s/fs.sock", dir) >=
	        (int) sizeof(sa.sun_path) ||
	    (fs->lfd = socket(
	         AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) < 0)
		return (SR_EIO);
	(void) unlink(fs->sock_path);
	memcpy(sa.sun_path, fs->sock_path, strlen(fs->sock_path) + 1);
	if (bind(fs->lfd, (struct sockaddr *) &sa, sizeof(sa)) != 0 ||
	    listen(fs->lfd, 1) != 0) {
		close(fs->lfd);
		fs->lfd = -1;
		return (SR_EIO);
	}
	return (0);
}

static int
server_argv(const struct sr_forksrv *fs, const struct sr_fs_start *st,
            struct sr_strv *argv)
{
	int rv;

	if ((rv = sr_strv_push(argv, st->python)) != 0 ||
	    (rv = sr_strv_push(argv, "-c")) != 0 ||
	    (rv = sr_strv_push(argv, forkserver_py)) != 0 ||
	    (rv = sr_strv_push(argv, fs->sock_path)) != 0 ||
	    (rv = sr_strv_push(argv, st->workspace)) != 0)
		return (rv);
	if (st->front && (rv = sr_strv_push(argv, "--front")) != 0)
		return (rv);
	for (size_t i = 0; i < st->dirs->n; i++)
		if ((rv = sr_strv_push(argv, "-d")) != 0 ||
		    (rv = sr_strv_push(argv, st->dirs->v[i])) != 0)
			return (rv);
	for (size_t i = 0; i < st->preload->n; i++)
		if ((rv = sr_strv_push(argv, st->preload->v[i])) != 0)
			return (rv);
	return (0);
}

int
sr_forksrv_start(struct sr_forksrv *fs, const struct sr_fs_start *st)
{
	struct sr_spawn_req req = {0};
	struct sr_strv argv;
	char log[PATH_MAX + 16];
	int rv;

	memset(fs, 0, sizeof(*fs));
	fs->lfd = fs->fd = -1;
	fs->sp = st->sp;
	fs->spawn_id = st->spawn_id;
	fs->pidns = st->pidns;
	sr_buf_init(&fs->in);
	sr_strv_init(&argv);
	snprintf(log, sizeof(log), "%s/forkserver.log", st->dir);
	if ((rv = listen_on(fs, st->dir)) == 0 &&
	    (rv = server_argv(fs, st, &argv)) == 0) {
		req.id = st->spawn_id;
		req.lane = 0; /* a namespace of its own: it outlives files */
		req.argv = (const char *const *) argv.v;
		req.envp = (const char *const *) st->env->v;
		req.cwd = st->workspace;
		req.log = log;
		rv = sr_spawner_spawn(st->sp, &req);
	}
	sr_strv_free(&argv);
	if (rv != 0) {
		sr_forksrv_stop(fs);
		fs->state = SR_FS_DEAD;
		return (rv);
	}
	fs->state = SR_FS_STARTING;
	return (0);
}

int
sr_forksrv_fd(const struct sr_forksrv *fs)
{
	if (fs->state == SR_FS_OFF || fs->state == SR_FS_DEAD)
		return (-1);
	return (fs->fd >= 0 ? fs->fd : fs->lfd);
}

/* The whole line or nothing usable: wait for room, at most 2 s. */
static int
send_all(int fd, const char *p, size_t n)
{
	double end = sr_now() + 2.0;

	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

		if (w > 0) {
			p += w;
			n -= (size_t) w;
		} else if (w < 0 && (errno == EAGAIN || errno == EINTR) &&
		           sr_now() < end) {
			struct pollfd pfd = {fd, POLLOUT, 0};

			(void) poll(&pfd, 1, 100);
		} else {
			return (SR_EIO);
		}
	}
	return (0);
}

static int
send_json(struct sr_forksrv *fs, json_t *msg)
{
	char *text = json_dumps(msg, JSON_COMPACT);
	size_t n;
	int rv = 0;

	json_decref(msg);
	if (text == NULL)
		return (SR_ENOMEM);
	n = strlen(text);
	text[n++] = '\n'; /* json_dumps leaves room: replaces the NUL */
	rv = send_all(fs->fd, text, n);
	free(text);
	if (rv != 0) {
		/* A request cut short would garble the stream: give up on
		 * this server. */
		sr_forksrv_stop(fs);
		fs->state = SR_FS_DEAD;
	}
	return (rv);
}

static json_t *
env_object(const struct sr_strv *env)
{
	json_t *o = json_object();

	for (size_t i = 0; i < env->n; i++) {
		const char *eq = strchr(env->v[i], '=');
		char *key;

		if (eq == NULL ||
		    (key = strndup(env->v[i], (size_t) (eq - env->v[i]))) ==
		        NULL)
			continue;
		json_object_set_new(o, key, json_string(eq + 1));
		free(key);
	}
	return (o);
}

static json_t *
str_array(const struct sr_strv *v)
{
	json_t *a = json_array();

	for (size_t i = 0; i < v->n; i++)
		json_array_append_new(a, json_string(v->v[i]));
	return (a);
}

int
sr_forksrv_run(struct sr_forksrv *fs, const struct sr_fs_run *r)
{
	int rv;

	if (fs->state != SR_FS_READY)
		return (SR_EAGAIN);
	rv = send_json(fs, json_pack("{s:{s:o, s:o, s:s, s:s, s:o}}", "run",
	                             "args", str_array(r->args), "files",
	                             str_array(r->files), "cwd", r->cwd, "log",
	                             r->log, "env", env_object(r->env)));
	if (rv == 0)
		fs->state = SR_FS_BUSY;
	return (rv);
}

/* Without a namespace the children have sessions of their own: killing
 * the server would not reach what they started. */
static void
kill_child(struct sr_forksrv *fs)
{
	if (!fs->pidns && fs->child > 0)
		(void) kill(-fs->child, SIGKILL);
	if (!fs->pidns && fs->ahead > 0) /* not the child: "pid" clears it */
		(void) kill(-fs->ahead, SIGKILL);
	fs->child = fs->ahead = 0;
}

int
sr_forksrv_signal(struct sr_forksrv *fs, int sig)
{
	if (fs->state != SR_FS_BUSY)
		return (SR_EAGAIN);
	if (sig == SIGKILL) {
		/* It may be wedged: end the server and everything it forked;
		 * the child's end is reported as the server going away. No
		 * new file goes to it meanwhile. */
		kill_child(fs);
		(void) sr_spawner_kill(fs->sp, fs->spawn_id, SIGKILL);
		fs->state = SR_FS_KILLING;
		return (0);
	}
	return (send_json(fs, json_pack("{s:i}", "signal", sig)));
}

void
sr_forksrv_stop(struct sr_forksrv *fs)
{
	kill_child(fs);
	if (fs->state == SR_FS_STARTING || fs->state == SR_FS_READY ||
	    fs->state == SR_FS_BUSY || fs->state == SR_FS_KILLING)
		(void) sr_spawner_kill(fs->sp, fs->spawn_id, SIGKILL);
	if (fs->fd >= 0)
		close(fs->fd);
	if (fs->lfd >= 0)
		close(fs->lfd);
	if (fs->sock_path[0] != '\0')
		(void) unlink(fs->sock_path);
	sr_buf_free(&fs->in);
	fs->fd = fs->lfd = -1;
	fs->sock_path[0] = '\0';
	fs->state = SR_FS_OFF;
}

static void
accept_server(struct sr_forksrv *fs)
{
	int fd = accept4(fs->lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

	if (fd < 0)
		return;
	fs->fd = fd;
	close(fs->lfd);
	fs->lfd = -1;
	(void) unlink(fs->sock_path);
}

/* One reply line into an event; false when it is not one to report. */
static bool
parse_reply(struct sr_forksrv *fs, const char *line, struct sr_fs_ev *ev)
{
	json_t *m = json_loads(line, 0, NULL);
	json_t *v;
	bool got = true;

	memset(ev, 0, sizeof(*ev));
	if (m == NULL)
		got = false;
	else if (json_object_get(m, "ready") != NULL) {
		ev->type = SR_FS_EV_READY;
		fs->state = SR_FS_READY;
	} else if ((v = json_object_get(m, "nofork")) != NULL) {
		ev->type = SR_FS_EV_NOFORK;
		snprintf(ev->why, sizeof(ev->why), "%s",
		         json_is_string(v) ? json_string_value(v) : "");
	} else if ((v = json_object_get(m, "status")) != NULL) {
		ev->type = SR_FS_EV_STATUS;
		ev->status = (int) json_integer_value(v);
		ev->parse_s = json_number_value(json_object_get(m, "parsed_s"));
		if (!(ev->parse_s > 0 && ev->parse_s < 86400))
			ev->parse_s = 0; /* absent, or nonsense */
		fs->child = 0;
		if (fs->state == SR_FS_BUSY)
			fs->state = SR_FS_READY;
	} else if ((v = json_object_get(m, "pid")) != NULL) {
		fs->child = (int) json_integer_value(v);
		if (fs->child == fs->ahead)
			fs->ahead = 0;
		got = false;
	} else if ((v = json_object_get(m, "ahead")) != NULL) {
		fs->ahead = (int) json_integer_value(v);
		got = false;
	} else {
		got = false;
	}
	json_decref(m);
	return (got);
}

static int
fill(struct sr_forksrv *fs)
{
	char chunk[4096];
	ssize_t n;

	while ((n = recv(fs->fd, chunk, sizeof(chunk), MSG_DONTWAIT)) > 0)
		if (sr_buf_append(&fs->in, chunk, (size_t) n) != 0)
			return (SR_ENOMEM);
	if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
		return (SR_ECLOSED);
	return (0);
}

int
sr_forksrv_read(struct sr_forksrv *fs, struct sr_fs_ev *ev)
{
	char *nl;
	int rv;

	if (fs->fd < 0 && fs->lfd >= 0)
		accept_server(fs);
	if (fs->fd < 0)
		return (SR_EAGAIN);
	rv = fill(fs);
	while (fs->in.len > 0 &&
	       (nl = memchr(fs->in.p, '\n', fs->in.len)) != NULL) {
		size_t n = (size_t) ((uint8_t *) nl - fs->in.p) + 1;
		bool got;

		*nl = '\0';
		got = parse_reply(fs, (char *) fs->in.p, ev);
		memmove(fs->in.p, fs->in.p + n, fs->in.len - n);
		fs->in.len -= n;
		if (got)
			return (0);
	}
	if (rv == SR_ECLOSED) {
		memset(ev, 0, sizeof(*ev));
		ev->type = SR_FS_EV_GONE;
		ev->status = fs->state == SR_FS_KILLING; /* we killed it */
		close(fs->fd);
		fs->fd = -1;
		fs->state = SR_FS_DEAD;
		return (0);
	}
	return (SR_EAGAIN);
}
