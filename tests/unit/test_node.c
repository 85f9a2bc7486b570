/*
 * test_node.c - sessions over real nng sockets (inproc): the handshake,
 * sealed envelopes, and refusal of wrong keys, replays, tampering and other
 * protocol versions - each dropped and counted, none delivered.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nng/nng.h>
#include <nng/protocol/pair1/pair.h>
#include <nng/supplemental/util/platform.h>

#include "sr/node.h"
#include "sr/util.h"
#include "sr/wire.h"
#include "sr/err.h"

struct pair {
	struct sr_node *coord;
	struct sr_node *agent;
	struct sr_peer *cpeer; /* the agent, as the coordinator sees it */
	struct sr_peer *apeer; /* the coordinator, as the agent sees it */
	uint8_t captured[4096];
	size_t captured_len;
	uint32_t captured_pipe;
};

static void
tap(void *arg, uint32_t pipe, const uint8_t *f, size_t len)
{
	struct pair *p = arg;

	if (len <= sizeof(p->captured)) {
		memcpy(p->captured, f, len);
		p->captured_len = len;
		p->captured_pipe = pipe;
	}
}

/* Pump both nodes until one event of the given type arrives at `at`. */
static int
pump(struct pair *p, struct sr_node *at, int type, struct sr_event *out,
     double secs)
{
	double end = sr_now() + secs;
	struct sr_event ev;

	while (sr_now() < end) {
		struct sr_node *nodes[2] = {p->coord, p->agent};

		for (int i = 0; i < 2; i++) {
			while (sr_node_poll(nodes[i], &ev) == 0) {
				if (ev.type == SR_EV_UP && nodes[i] == p->coord)
					p->cpeer = ev.peer;
				if (ev.type == SR_EV_UP && nodes[i] == p->agent)
					p->apeer = ev.peer;
				if (nodes[i] == at && ev.type == type) {
					*out = ev;
					return (0);
				}
				if (ev.type == SR_EV_MSG)
					sr_wire_free(ev.env);
			}
		}
		struct timespec ts = {0, 2000000};
		nanosleep(&ts, NULL);
	}
	return (-1);
}

static void
open_pair(struct pair *p, const struct sr_trust *ct, const struct sr_trust *at,
          const char *url)
{
	memset(p, 0, sizeof(*p));
	assert_int_equal(sr_node_open(&p->coord, SR_ROLE_COORDINATOR, ct), 0);
	assert_int_equal(sr_node_open(&p->agent, SR_ROLE_AGENT, at), 0);
	assert_int_equal(sr_node_listen(p->coord, url), 0);
	assert_int_equal(sr_node_dial(p->agent, url), 0);
}

static void
close_pair(struct pair *p)
{
	sr_node_close(p->agent);
	sr_node_close(p->coord);
}

static int
send_hb(struct sr_node *n, struct sr_peer *peer, uint64_t seq)
{
	Shardrun__Envelope e = SHARDRUN__ENVELOPE__INIT;
	Shardrun__Heartbeat h = SHARDRUN__HEARTBEAT__INIT;
	int rv;

	h.seq = seq;
	e.body_case = SHARDRUN__ENVELOPE__BODY_HEARTBEAT;
	e.heartbeat = &h;
	rv = sr_node_send(n, peer, &e);
	sr_node_flush(n);
	return (rv);
}

/* Raw bytes from the agent that must be dropped: no envelope arrives. */
static void
assert_dropped(struct pair *p, const void *f, size_t len)
{
	struct sr_event ev;

	assert_int_equal(sr_node_send_raw(p->agent, p->captured_pipe, f, len),
	                 0);
	assert_int_equal(pump(p, p->coord, SR_EV_MSG, &ev, 0.3), -1);
}

/* After whatever was dropped, the session still carries heartbeats. */
static void
assert_session_works(struct pair *p, uint64_t seq)
{
	struct sr_event ev;

	assert_int_equal(send_hb(p->agent, p->apeer, seq), 0);
	assert_int_equal(pump(p, p->coord, SR_EV_MSG, &ev, 5), 0);
	assert_int_equal(ev.env->heartbeat->seq, seq);
	sr_wire_free(ev.env);
}

static void
test_session_and_messages(void **state)
{
	struct sr_trust t;
	struct pair p;
	struct sr_event ev;

	(void) state;
	sr_trust_cluster_random(&t);
	open_pair(&p, &t, &t, "inproc://node-ok");
	assert_int_equal(pump(&p, p.coord, SR_EV_UP, &ev, 5), 0);
	if (p.apeer == NULL)
		assert_int_equal(pump(&p, p.agent, SR_EV_UP, &ev, 5), 0);
	assert_int_equal(send_hb(p.agent, p.apeer, 7), 0);
	assert_int_equal(pump(&p, p.coord, SR_EV_MSG, &ev, 5), 0);
	assert_int_equal(ev.env->body_case, SHARDRUN__ENVELOPE__BODY_HEARTBEAT);
	assert_int_equal(ev.env->heartbeat->seq, 7);
	sr_wire_free(ev.env);
	/* And the other way. */
	assert_int_equal(send_hb(p.coord, p.cpeer, 9), 0);
	assert_int_equal(pump(&p, p.agent, SR_EV_MSG, &ev, 5), 0);
	assert_int_equal(ev.env->heartbeat->seq, 9);
	sr_wire_free(ev.env);
	close_pair(&p);
	sr_trust_clear(&t);
}

/*
 * Agents dialing one coordinator, each from a thread of its own that sends
 * its INIT the moment its pipe is up, while the coordinator reads as fast
 * as it can: nng may hand the coordinator an INIT before the event that
 * announces its pipe, and that INIT must not be lost (it stalled the
 * handshake until the 10 s timeout).
 */
struct dialer {
	const struct sr_trust *t;
	volatile int ups;
	volatile int done;
};

static void *
dial_many(void *arg)
{
	struct dialer *d = arg;
	struct sr_event ev;

	for (int i = 0; i < 200; i++) {
		struct sr_node *a;
		double end = sr_now() + 2.0;

		if (sr_node_open(&a, SR_ROLE_AGENT, d->t) != 0 ||
		    sr_node_dial(a, "inproc://node-many") != 0)
			break;
		while (sr_now() < end) {
			int got = sr_node_poll(a, &ev);

			if (got == 0 && ev.type == SR_EV_MSG)
				sr_wire_free(ev.env);
			if (got == 0 && ev.type == SR_EV_UP) {
				d->ups++;
				break;
			}
		}
		sr_node_close(a);
	}
	d->done = 1;
	return (NULL);
}

static void
test_many_handshakes_none_stalls(void **state)
{
	struct sr_trust t;
	struct sr_node *c;
	struct sr_event ev;
	struct dialer d = {&t, 0, 0};
	pthread_t th;

	(void) state;
	sr_trust_cluster_random(&t);
	assert_int_equal(sr_node_open(&c, SR_ROLE_COORDINATOR, &t), 0);
	assert_int_equal(sr_node_listen(c, "inproc://node-many"), 0);
	assert_int_equal(pthread_create(&th, NULL, dial_many, &d), 0);
	while (!d.done)
		while (sr_node_poll(c, &ev) == 0)
			if (ev.type == SR_EV_MSG)
				sr_wire_free(ev.env);
	pthread_join(th, NULL);
	assert_int_equal(d.ups, 200);
	sr_node_close(c);
	sr_trust_clear(&t);
}

static void
test_wrong_key_refused(void **state)
{
	struct sr_trust t1;
	struct sr_trust t2;
	struct pair p;
	struct sr_event ev;

	(void) state;
	sr_trust_cluster_random(&t1);
	sr_trust_cluster_random(&t2);
	open_pair(&p, &t1, &t2, "inproc://node-wrong-key");
	assert_int_equal(pump(&p, p.coord, SR_EV_UP, &ev, 1.5), -1);
	assert_null(p.apeer);
	assert_true(sr_node_stats(p.coord)->auth_failures +
	                sr_node_stats(p.agent)->auth_failures >=
	            1);
	close_pair(&p);
	sr_trust_clear(&t1);
	sr_trust_clear(&t2);
}

static void
test_replay_tamper_version(void **state)
{
	struct sr_trust t;
	struct pair p;
	struct sr_event ev;
	uint8_t frame[4096];
	size_t len;

	(void) state;
	sr_trust_cluster_random(&t);
	open_pair(&p, &t, &t, "inproc://node-replay");
	assert_int_equal(pump(&p, p.coord, SR_EV_UP, &ev, 5), 0);
	if (p.apeer == NULL)
		assert_int_equal(pump(&p, p.agent, SR_EV_UP, &ev, 5), 0);
	sr_node_set_tap(p.agent, tap, &p);
	assert_int_equal(send_hb(p.agent, p.apeer, 1), 0);
	assert_int_equal(pump(&p, p.coord, SR_EV_MSG, &ev, 5), 0);
	sr_wire_free(ev.env);
	len = p.captured_len;
	memcpy(frame, p.captured, len);

	/* Replayed: dropped, counted. */
	assert_dropped(&p, frame, len);
	assert_int_equal(sr_node_stats(p.coord)->replays, 1);

	/* Tampered (a fresh sequence number, so the replay window lets it
	 * through to the tag check; the header is associated data): dropped,
	 * counted. */
	frame[8] += 100;
	assert_dropped(&p, frame, len);
	assert_int_equal(sr_node_stats(p.coord)->auth_failures, 1);

	/* Garbage and an unknown frame kind. */
	assert_dropped(&p, "Zxx", 3);
	assert_true(sr_node_stats(p.coord)->bad_frames >= 1);

	/* The session still works after all that. */
	assert_session_works(&p, 2);
	close_pair(&p);
	sr_trust_clear(&t);
}

/* Sends between two flushes leave as one message and arrive complete, in
 * order; a MULTI frame's inner frames pass the same checks as any. */
static void
test_frames_share_a_message(void **state)
{
	struct sr_trust t;
	struct pair p;
	struct sr_event ev;
	uint8_t multi[4096 + 5];
	uint8_t bad[] = {'M', 0, 0, 0, 9, 'S', 1, 2};

	(void) state;
	sr_trust_cluster_random(&t);
	open_pair(&p, &t, &t, "inproc://node-multi");
	assert_int_equal(pump(&p, p.coord, SR_EV_UP, &ev, 5), 0);
	if (p.apeer == NULL)
		assert_int_equal(pump(&p, p.agent, SR_EV_UP, &ev, 5), 0);
	sr_node_set_tap(p.agent, tap, &p);
	for (uint64_t i = 1; i <= 50; i++) {
		Shardrun__Envelope e = SHARDRUN__ENVELOPE__INIT;
		Shardrun__Heartbeat h = SHARDRUN__HEARTBEAT__INIT;

		h.seq = i;
		e.body_case = SHARDRUN__ENVELOPE__BODY_HEARTBEAT;
		e.heartbeat = &h;
		assert_int_equal(sr_node_send(p.agent, p.apeer, &e), 0);
	}
	/* Nothing leaves before the flush. */
	assert_int_equal(pump(&p, p.coord, SR_EV_MSG, &ev, 0.2), -1);
	sr_node_flush(p.agent);
	for (uint64_t i = 1; i <= 50; i++) {
		assert_int_equal(pump(&p, p.coord, SR_EV_MSG, &ev, 5), 0);
		assert_int_equal(ev.env->heartbeat->seq, i);
		sr_wire_free(ev.env);
	}

	/* The last frame again, inside a MULTI frame: a replay. */
	multi[0] = 'M';
	multi[1] = (uint8_t) (p.captured_len >> 24);
	multi[2] = (uint8_t) (p.captured_len >> 16);
	multi[3] = (uint8_t) (p.captured_len >> 8);
	multi[4] = (uint8_t) p.captured_len;
	memcpy(multi + 5, p.captured, p.captured_len);
	assert_dropped(&p, multi, p.captured_len + 5);
	assert_int_equal(sr_node_stats(p.coord)->replays, 1);
	/* A length running past the end: dropped, counted. */
	assert_dropped(&p, bad, sizeof(bad));
	assert_true(sr_node_stats(p.coord)->bad_frames >= 1);
	assert_session_works(&p, 99);
	close_pair(&p);
	sr_trust_clear(&t);
}

static void
test_other_major_version_dropped(void **state)
{
	Shardrun__Envelope e = SHARDRUN__ENVELOPE__INIT;
	Shardrun__Heartbeat h = SHARDRUN__HEARTBEAT__INIT;
	Shardrun__Envelope *out;
	uint8_t buf[256];
	size_t n;

	(void) state;
	e.major = SR_PROTO_MAJOR + 1;
	e.body_case = SHARDRUN__ENVELOPE__BODY_HEARTBEAT;
	e.heartbeat = &h;
	n = shardrun__envelope__pack(&e, buf);
	assert_int_equal(sr_wire_decode(buf, n, &out), SR_EVERSION);
	assert_int_equal(sr_wire_decode((const uint8_t *) "\xff\xff", 2, &out),
	                 SR_EPROTO);
}

/* Send one INIT of protocol version `major` from a plain socket over real
 * TCP; returns the reply frame, if any. */
static char *
init_with_major(struct sr_node *coord, const char *url, uint32_t major)
{
	Shardrun__Handshake h = SHARDRUN__HANDSHAKE__INIT;
	struct sr_event ev;
	nng_socket raw;
	nng_msg *m;
	uint8_t eph[32] = {9}, nonce[32] = {7}, frame[512];
	size_t n;
	char *reply = NULL;

	assert_int_equal(nng_pair1_open_poly(&raw), 0);
	assert_int_equal(nng_socket_set_ms(raw, NNG_OPT_RECVTIMEO, 50), 0);
	assert_int_equal(nng_dial(raw, url, NULL, 0), 0);
	h.major = major;
	h.step = 1;
	h.role = SHARDRUN__ROLE__ROLE_AGENT;
	h.eph_pk.data = eph;
	h.eph_pk.len = 32;
	h.nonce.data = nonce;
	h.nonce.len = 32;
	frame[0] = 'H';
	n = 1 + shardrun__handshake__pack(&h, frame + 1);
	nng_msleep(100);
	assert_int_equal(nng_send(raw, frame, n, 0), 0);
	for (int i = 0; i < 40 && reply == NULL; i++) {
		while (sr_node_poll(coord, &ev) == 0)
			if (ev.type == SR_EV_MSG)
				sr_wire_free(ev.env);
		if (nng_recvmsg(raw, &m, 0) == 0) {
			reply = strndup(nng_msg_body(m), nng_msg_len(m));
			nng_msg_free(m);
		}
	}
	nng_close(raw);
	return (reply);
}

/* Peers speaking another protocol version, over real TCP: refused before
 * anything else, counted, and told why when the version is known. */
static void
test_other_versions_refused_over_tcp(void **state)
{
	struct sr_node *coord;
	struct sr_trust t;
	char *reply;

	(void) state;
	sr_trust_cluster_random(&t);
	assert_int_equal(sr_node_open(&coord, SR_ROLE_COORDINATOR, &t), 0);
	assert_int_equal(sr_node_listen(coord, "tcp://127.0.0.1:17881"), 0);
	/* Version 0, the one before ours, reads as no version at all. */
	free(init_with_major(coord, "tcp://127.0.0.1:17881", 0));
	assert_int_equal(sr_node_stats(coord)->handshake_failures, 1);
	reply =
	    init_with_major(coord, "tcp://127.0.0.1:17881", SR_PROTO_MAJOR + 1);
	assert_non_null(reply);
	assert_int_equal(sr_node_stats(coord)->versions, 1);
	assert_int_equal(sr_node_stats(coord)->handshake_failures, 2);
	free(reply);
	sr_node_close(coord);
	sr_trust_clear(&t);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_session_and_messages),
	    cmocka_unit_test(test_many_handshakes_none_stalls),
	    cmocka_unit_test(test_wrong_key_refused),
	    cmocka_unit_test(test_replay_tamper_version),
	    cmocka_unit_test(test_frames_share_a_message),
	    cmocka_unit_test(test_other_major_version_dropped),
	    cmocka_unit_test(test_other_versions_refused_over_tcp),
	};

	sr_init("test_node");
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
