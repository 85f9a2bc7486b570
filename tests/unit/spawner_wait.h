/*
 * spawner_wait.h - for the unit tests that drive a real spawner: wait for
 * its next event. Include after cmocka.h (it asserts).
 */
#ifndef SR_TEST_SPAWNER_WAIT_H
#define SR_TEST_SPAWNER_WAIT_H

#include <poll.h>
#include <stdbool.h>

#include "spawner.h"
#include "sr/err.h"

/* The spawner's next event within timeout_ms; false when none came. */
static inline bool
next_spawner_event(struct sr_spawner *s, struct sr_spawn_ev *ev, int timeout_ms)
{
	struct pollfd p = {sr_spawner_fd(s), POLLIN, 0};

	for (;;) {
		int rv = sr_spawner_read(s, ev);

		if (rv == 0)
			return (true);
		assert_int_equal(rv, SR_EAGAIN);
		if (poll(&p, 1, timeout_ms) <= 0)
			return (false);
	}
}

#endif /* SR_TEST_SPAWNER_WAIT_H */
