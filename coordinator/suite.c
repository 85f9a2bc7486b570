/*
 * suite.c - the files of one run and their attempts.
 *
 * A growable array of sr_file. Every string is copied in, so callers may
 * free or reuse what they pass; sr_suite_free releases it all, attempts
 * included. Paths live in the suite's string pool (a million of them is
 * the planning target), the rest is malloc'd per file.
 */
#include <stdlib.h>
#include <string.h>

#include "sr/err.h"
#include "sr/util.h"

#include "suite.h"

static const char *const final_names[SR_FINAL_COUNT] = {
    [SR_FINAL_PENDING] = "pending", [SR_FINAL_PASSED] = "passed",
    [SR_FINAL_FAILED] = "failed",   [SR_FINAL_FLAKY] = "flaky",
    [SR_FINAL_CRASHED] = "crashed", [SR_FINAL_TIMEOUT] = "timeout",
    [SR_FINAL_ERROR] = "error",
};

void
sr_suite_init(struct sr_suite *s)
{
	s->files = NULL;
	s->n = 0;
	s->cap = 0;
	sr_strpool_init(&s->paths);
}

static void
attempt_free(struct sr_attempt *a)
{
	free(a->agent);
	free(a->tail);
	free(a->junit);
	free(a->message);
}

static void
parts_free(struct sr_parts *p)
{
	if (p == NULL)
		return;
	free(p->final);
	free(p->restarts);
	free(p->reruns);
	free(p->lost);
	free(p);
}

void
sr_suite_free(struct sr_suite *s)
{
	for (size_t i = 0; i < s->n; i++) {
		struct sr_file *f = &s->files[i];

		for (size_t j = 0; j < f->natt; j++)
			attempt_free(&f->att[j]);
		free(f->att);
		parts_free(f->parts);
	}
	free(s->files);
	sr_strpool_free(&s->paths);
	sr_suite_init(s);
}

int
sr_suite_add(struct sr_suite *s, const char *path, size_t *idx)
{
	struct sr_file *f;
	char *copy;

	if (sr_grow(&s->files, &s->cap, s->n, sizeof(*s->files), 64) != 0)
		return (SR_ENOMEM);
	if ((copy = sr_strpool_add(&s->paths, path)) == NULL)
		return (SR_ENOMEM);
	f = &s->files[s->n];
	memset(f, 0, sizeof(*f));
	f->path = copy;
	f->final = SR_FINAL_PENDING;
	*idx = s->n++;
	return (0);
}

static int
cmp_file(const void *a, const void *b)
{
	const struct sr_file *fa = a;
	const struct sr_file *fb = b;

	return (strcmp(fa->path, fb->path));
}

void
sr_suite_sort(struct sr_suite *s)
{
	if (s->n > 1)
		qsort(s->files, s->n, sizeof(s->files[0]), cmp_file);
}

/* Copy n bytes of p into a fresh NUL-terminated string; NULL stays NULL. */
static int
dup_bytes(const char *p, size_t n, char **out)
{
	char *c;

	if (p == NULL) {
		*out = NULL;
		return (0);
	}
	if ((c = malloc(n + 1)) == NULL)
		return (SR_ENOMEM);
	memcpy(c, p, n);
	c[n] = '\0';
	*out = c;
	return (0);
}

static int
dup_str(const char *p, char **out)
{
	return (dup_bytes(p, p != NULL ? strlen(p) : 0, out));
}

int
sr_file_add_attempt(struct sr_file *f, const struct sr_attempt *a)
{
	struct sr_attempt c = *a;
	struct sr_attempt *na;

	c.agent = c.tail = c.junit = c.message = NULL;
	if (dup_str(a->agent, &c.agent) != 0 ||
	    dup_str(a->tail, &c.tail) != 0 ||
	    dup_bytes(a->junit, a->junit_len, &c.junit) != 0 ||
	    dup_str(a->message, &c.message) != 0) {
		attempt_free(&c);
		return (SR_ENOMEM);
	}
	if ((na = realloc(f->att, (f->natt + 1) * sizeof(*na))) == NULL) {
		attempt_free(&c);
		return (SR_ENOMEM);
	}
	na[f->natt] = c;
	f->att = na;
	f->natt++;
	return (0);
}

const struct sr_attempt *
sr_file_last(const struct sr_file *f)
{
	return (f->natt > 0 ? &f->att[f->natt - 1] : NULL);
}

const char *
sr_final_name(int final)
{
	if (final < 0 || final >= SR_FINAL_COUNT)
		return ("unknown");
	return (final_names[final]);
}

int
sr_file_split(struct sr_file *f, uint32_t n)
{
	struct sr_parts *p = calloc(1, sizeof(*p));

	if (p == NULL || n < 2 || (p->final = calloc(n, sizeof(int))) == NULL ||
	    (p->restarts = calloc(n, sizeof(uint32_t))) == NULL ||
	    (p->reruns = calloc(n, sizeof(uint32_t))) == NULL ||
	    (p->lost = calloc(n, sizeof(uint32_t))) == NULL) {
		parts_free(p);
		return (n < 2 ? SR_EINVAL : SR_ENOMEM);
	}
	p->n = p->left = n;
	parts_free(f->parts);
	f->parts = p;
	return (0);
}

void
sr_file_unsplit(struct sr_file *f)
{
	parts_free(f->parts);
	f->parts = NULL;
}

const struct sr_attempt *
sr_file_part_last(const struct sr_file *f, uint32_t part)
{
	for (size_t i = f->natt; i > 0; i--)
		if (f->att[i - 1].part == part)
			return (&f->att[i - 1]);
	return (NULL);
}

bool
sr_file_span(const struct sr_file *f, double *start, double *end, double *work)
{
	uint32_t n = sr_file_nparts(f) ? sr_file_nparts(f) : 1;
	bool any = false;

	*start = *end = *work = 0;
	for (uint32_t p = 0; p < n; p++) {
		const struct sr_attempt *a =
		    f->parts ? sr_file_part_last(f, p) : sr_file_last(f);

		if (a == NULL)
			continue;
		if (!any || a->start_s < *start)
			*start = a->start_s;
		if (!any || a->start_s + a->duration_s > *end)
			*end = a->start_s + a->duration_s;
		*work += a->duration_s;
		any = true;
	}
	return (any);
}

int
sr_final_worst(int a, int b)
{
	static const int rank[SR_FINAL_COUNT] = {
	    [SR_FINAL_PENDING] = 0, [SR_FINAL_PASSED] = 1,
	    [SR_FINAL_FLAKY] = 2,   [SR_FINAL_FAILED] = 3,
	    [SR_FINAL_TIMEOUT] = 4, [SR_FINAL_CRASHED] = 5,
	    [SR_FINAL_ERROR] = 6};

	return (rank[a] >= rank[b] ? a : b);
}
