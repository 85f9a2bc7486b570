/*
 * test_util.c - util.c: the string pool (strings that outlive the blocks
 * they fill, a string longer than a block, freeing and reuse).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sr/util.h"

/* The i-th test string (buf: 128 bytes): "i:" and letters up to a length
 * of i % 100. */
static void
nth(char *buf, int i)
{
	int n = snprintf(buf, 128, "%d:", i);

	for (; n < i % 100; n++)
		buf[n] = (char) ('a' + (i + n) % 26);
	buf[n] = '\0';
}

static void
test_strpool_many(void **state)
{
	enum { N = 20000 }; /* ~1 MB: many blocks */
	struct sr_strpool p;
	char **got = malloc(N * sizeof(*got));
	char want[128];

	(void) state;
	assert_non_null(got);
	sr_strpool_init(&p);
	for (int i = 0; i < N; i++) {
		nth(want, i);
		got[i] = sr_strpool_add(&p, want);
		assert_non_null(got[i]);
		assert_ptr_not_equal(got[i], want);
	}
	for (int i = 0; i < N; i++) { /* none overwrote another */
		nth(want, i);
		assert_string_equal(got[i], want);
	}
	assert_string_equal(sr_strpool_add(&p, ""), "");
	sr_strpool_free(&p);
	assert_null(p.blk);
	free(got);
}

static void
test_strpool_long(void **state)
{
	size_t big = 3 * SR_STRPOOL_BLOCK;
	char *s = malloc(big + 1);
	struct sr_strpool p;
	char *a, *l, *b;

	(void) state;
	assert_non_null(s);
	memset(s, 'x', big);
	s[big] = '\0';
	sr_strpool_init(&p);
	a = sr_strpool_add(&p, "before");
	l = sr_strpool_add(&p, s);
	b = sr_strpool_add(&p, "after");
	assert_non_null(a);
	assert_non_null(l);
	assert_non_null(b);
	assert_int_equal(strlen(l), big);
	assert_memory_equal(l, s, big);
	/* The long one got a block of its own; the block in use went on. */
	assert_ptr_equal(b, a + sizeof("before"));
	assert_string_equal(a, "before");
	assert_string_equal(b, "after");
	sr_strpool_free(&p);

	sr_strpool_init(&p); /* a long string first, then short ones */
	l = sr_strpool_add(&p, s);
	a = sr_strpool_add(&p, "one");
	b = sr_strpool_add(&p, "two");
	assert_memory_equal(l, s, big);
	assert_string_equal(a, "one");
	assert_ptr_equal(b, a + sizeof("one"));
	sr_strpool_free(&p);
	sr_strpool_free(&p); /* twice is fine */
	assert_string_equal(sr_strpool_add(&p, "again"), "again");
	sr_strpool_free(&p);
	free(s);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_strpool_many),
	    cmocka_unit_test(test_strpool_long),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
