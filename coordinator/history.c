/*
 * history.c - per-file timing history (JSON on disk) and estimates.
 *
 * The table is an array sorted by path: lookups are a binary search, and an
 * insert moves the tail once. A history holds one entry per test file that
 * ever passed, so a few thousand entries; the memmove on insert is cheaper
 * than any tree at that size.
 *
 * Loading is strict: a file that is not exactly the documented shape is
 * refused as a whole (SR_EINVAL with the reason logged), because a half-read
 * history would silently skew every estimate it feeds. The caller decides
 * whether to carry on without history.
 *
 * Per-test tables (history_tests.c) are kept only for files long enough to
 * be split, in a side array an entry points into by slot number; for every
 * other file the JUnit reports are not even parsed.
 */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "sr/err.h"
#include "sr/log.h"
#include "sr/util.h"

#include "history_int.h"
#include "shardrun.pb-c.h"
#include "split.h"

#define HISTORY_VERSION 1
#define HISTORY_MAX     (64u << 20) /* bytes; far above any real suite */
/* Shorter files are never split (sr_split_parts), so their tests' times
 * would only take room. */
#define TESTS_MIN_S (2 * SR_MIN_PART_S)

void
sr_history_init(struct sr_history *h)
{
	h->e = NULL;
	h->n = 0;
	h->cap = 0;
	h->tests = NULL;
	h->ntests = 0;
	h->tests_cap = 0;
	sr_strpool_init(&h->paths);
}

void
sr_history_free(struct sr_history *h)
{
	for (size_t i = 0; i < h->ntests; i++)
		sr_hist_tests_free(h->tests[i]);
	free(h->e);
	free(h->tests);
	sr_strpool_free(&h->paths);
	sr_history_init(h);
}

/* Index of path, or of where it would be inserted; *found tells which. */
static size_t
find(const struct sr_history *h, const char *path, int *found)
{
	size_t lo = 0;
	size_t hi = h->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(h->e[mid].path, path);

		if (c == 0) {
			*found = 1;
			return (mid);
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = 0;
	return (lo);
}

static int
insert_at(struct sr_history *h, size_t i, const char *path, double dur,
          unsigned runs)
{
	char *copy;

	if (sr_grow(&h->e, &h->cap, h->n, sizeof(*h->e), 64) != 0)
		return (SR_ENOMEM);
	if ((copy = sr_strpool_add(&h->paths, path)) == NULL)
		return (SR_ENOMEM);
	memmove(&h->e[i + 1], &h->e[i], (h->n - i) * sizeof(h->e[0]));
	h->e[i].path = copy;
	h->e[i].duration_s = dur;
	h->e[i].runs = runs;
	h->e[i].tests = 0;
	h->n++;
	return (0);
}

const struct sr_hist_entry *
sr_history_get(const struct sr_history *h, const char *path)
{
	int found;
	size_t i = find(h, path, &found);

	return (found ? &h->e[i] : NULL);
}

const struct sr_hist_tests *
sr_history_tests(const struct sr_history *h, const struct sr_hist_entry *e)
{
	return (e != NULL && e->tests > 0 ? h->tests[e->tests - 1] : NULL);
}

/* Give entry i the table t (taken over; freed on failure), in place of
 * its old one; NULL drops it. */
static int
set_tests(struct sr_history *h, size_t i, struct sr_hist_tests *t)
{
	struct sr_hist_entry *e = &h->e[i];

	if (e->tests > 0) {
		sr_hist_tests_free(h->tests[e->tests - 1]);
		h->tests[e->tests - 1] = t;
		e->tests = t != NULL ? e->tests : 0;
		return (0);
	}
	if (t == NULL)
		return (0);
	if (h->ntests >= UINT32_MAX ||
	    sr_grow(&h->tests, &h->tests_cap, h->ntests, sizeof(*h->tests),
	            16) != 0) {
		sr_hist_tests_free(t);
		return (SR_ENOMEM);
	}
	h->tests[h->ntests++] = t;
	e->tests = (uint32_t) h->ntests;
	return (0);
}

int
sr_history_record_tests(struct sr_history *h, const char *path,
                        const struct sr_hist_test *t, size_t n)
{
	struct sr_hist_tests *nt;
	int found, rv;
	size_t i = find(h, path, &found);

	if (!found)
		return (SR_ENOENT);
	if (n == 0)
		return (0);
	if ((rv = sr_hist_tests_merged(sr_history_tests(h, &h->e[i]), t, n,
	                               &nt)) != 0)
		return (rv);
	return (set_tests(h, i, nt));
}

int
sr_history_record(struct sr_history *h, const char *path, double dur)
{
	struct sr_hist_entry *e;
	int found;
	size_t i;

	if (path == NULL || !sr_hist_valid(dur))
		return (SR_EINVAL);
	i = find(h, path, &found);
	if (!found)
		return (insert_at(h, i, path, dur, 1));
	e = &h->e[i];
	e->duration_s =
	    SR_EWMA_ALPHA * dur + (1 - SR_EWMA_ALPHA) * e->duration_s;
	if (e->runs < UINT32_MAX)
		e->runs++;
	return (0);
}

/*
 * One entry of the "files" object. Checked before anything is kept, so a
 * rejected file leaves nothing behind.
 */
static int
load_entry(struct sr_history *h, const char *file, const char *key, json_t *v)
{
	json_t *d = json_object_get(v, "duration_s");
	json_t *r = json_object_get(v, "runs");
	struct sr_hist_tests *tests;
	int found, rv;
	size_t i;

	if (!json_is_object(v) || !json_is_number(d) || !json_is_integer(r)) {
		sr_error("%s: entry \"%s\" needs a number duration_s and an "
		         "integer runs",
		         file, key);
		return (SR_EINVAL);
	}
	if (!sr_hist_valid(json_number_value(d)) || json_integer_value(r) < 0 ||
	    json_integer_value(r) > UINT32_MAX) {
		sr_error("%s: entry \"%s\" has a negative or out-of-range "
		         "duration_s or runs",
		         file, key);
		return (SR_EINVAL);
	}
	i = find(h, key, &found);
	if (found) {
		sr_error("%s: entry \"%s\" appears twice", file, key);
		return (SR_EINVAL);
	}
	if ((rv = sr_hist_tests_load(file, key, json_object_get(v, "tests"),
	                             &tests)) != 0)
		return (rv);
	if ((rv = insert_at(h, i, key, json_number_value(d),
	                    (unsigned) json_integer_value(r))) != 0) {
		sr_hist_tests_free(tests);
		return (rv);
	}
	return (set_tests(h, i, tests));
}

static int
load_json(struct sr_history *h, const char *file, json_t *root)
{
	json_t *ver = json_object_get(root, "version");
	json_t *files = json_object_get(root, "files");
	const char *key;
	json_t *v;
	int rv;

	if (!json_is_object(root) || !json_is_integer(ver) ||
	    !json_is_object(files)) {
		sr_error("%s: expected {\"version\": 1, \"files\": {...}}",
		         file);
		return (SR_EINVAL);
	}
	if (json_integer_value(ver) != HISTORY_VERSION) {
		sr_error("%s: history version %lld, expected %d", file,
		         (long long) json_integer_value(ver), HISTORY_VERSION);
		return (SR_EINVAL);
	}
	json_object_foreach(files, key, v)
	{
		if ((rv = load_entry(h, file, key, v)) != 0)
			return (rv);
	}
	return (0);
}

int
sr_history_load(struct sr_history *h, const char *path)
{
	struct sr_history tmp;
	json_error_t jerr;
	json_t *root;
	char *text;
	size_t len;
	int rv;

	if ((rv = sr_read_file(path, HISTORY_MAX, &text, &len)) != 0) {
		if (rv == SR_ENOENT)
			return (0);
		sr_error("%s: cannot read history: %s", path, sr_strerror(rv));
		return (rv);
	}
	root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
	free(text);
	if (root == NULL) {
		sr_error("%s:%d: not valid JSON: %s", path, jerr.line,
		         jerr.text);
		return (SR_EINVAL);
	}
	sr_history_init(&tmp);
	rv = load_json(&tmp, path, root);
	json_decref(root);
	if (rv != 0) {
		sr_history_free(&tmp);
		return (rv);
	}
	sr_history_free(h);
	*h = tmp;
	return (0);
}

/* {"duration_s": D, "runs": N[, "tests": {...}]} */
static json_t *
entry_json(const struct sr_history *h, const struct sr_hist_entry *e)
{
	const struct sr_hist_tests *t = sr_history_tests(h, e);
	json_t *o = json_pack("{s:f, s:I}", "duration_s", e->duration_s, "runs",
	                      (json_int_t) e->runs);

	if (o != NULL && t != NULL &&
	    json_object_set_new(o, "tests", sr_hist_tests_json(t)) != 0) {
		json_decref(o);
		return (NULL);
	}
	return (o);
}

static json_t *
to_json(const struct sr_history *h)
{
	json_t *root = json_object();
	json_t *files = json_object();
	int bad = (root == NULL || files == NULL);

	for (size_t i = 0; !bad && i < h->n; i++)
		bad = (json_object_set_new(files, h->e[i].path,
		                           entry_json(h, &h->e[i])) != 0);
	if (bad || json_object_set_new(root, "version",
	                               json_integer(HISTORY_VERSION)) != 0) {
		json_decref(root);
		json_decref(files);
		return (NULL);
	}
	if (json_object_set_new(root, "files", files) != 0) {
		json_decref(root);
		return (NULL);
	}
	return (root);
}

/* mkdir -p of path's directory; nothing to do for a bare file name. */
static int
mkdirs_parent(const char *path)
{
	const char *slash = strrchr(path, '/');
	char *dir;
	int rv;

	if (slash == NULL || slash == path)
		return (0);
	if ((dir = strndup(path, (size_t) (slash - path))) == NULL)
		return (SR_ENOMEM);
	rv = sr_mkdirs(dir, 0755);
	free(dir);
	return (rv);
}

int
sr_history_save(const struct sr_history *h, const char *path)
{
	struct sr_buf b;
	json_t *root;
	char *text;
	int rv;

	if ((root = to_json(h)) == NULL)
		return (SR_ENOMEM);
	/* 12 significant digits: exact enough, and 1.2 stays "1.2". */
	text = json_dumps(root, JSON_INDENT(2) | JSON_SORT_KEYS |
	                            JSON_REAL_PRECISION(12));
	json_decref(root);
	if (text == NULL)
		return (SR_ENOMEM);
	sr_buf_init(&b);
	rv = sr_buf_printf(&b, "%s\n", text);
	free(text);
	if (rv == 0 && (rv = mkdirs_parent(path)) == 0)
		rv = sr_write_atomic(path, b.p, b.len, 0644);
	sr_buf_free(&b);
	if (rv != 0)
		sr_error("%s: cannot write history: %s", path, sr_strerror(rv));
	return (rv);
}

/* What an unknown file is estimated from: the suite's known files. */
struct known {
	double sum_s; /* all known files */
	size_t n;
	double test_s; /* known files with a test count */
	uint64_t ntests;
};

/*
 * Every file's entry, or NULL. The suite and the history are both sorted by
 * path (collection sorts), so one merge walk finds them all; an unsorted
 * suite falls back to a binary search per file.
 */
static void
lookup_all(const struct sr_history *h, const struct sr_suite *s,
           const struct sr_hist_entry **out)
{
	size_t j = 0;

	for (size_t i = 0; i < s->n; i++) {
		const char *path = s->files[i].path;
		int c = 1;

		if (i > 0 && strcmp(s->files[i - 1].path, path) > 0) {
			out[i] = sr_history_get(h, path);
			continue;
		}
		while (j < h->n && (c = strcmp(h->e[j].path, path)) < 0)
			j++;
		out[i] = (j < h->n && c == 0) ? &h->e[j] : NULL;
	}
}

static void
known_stats(const struct sr_suite *s, const struct sr_hist_entry **e,
            struct known *k)
{
	memset(k, 0, sizeof(*k));
	for (size_t i = 0; i < s->n; i++) {
		if (e[i] == NULL)
			continue;
		k->sum_s += e[i]->duration_s;
		k->n++;
		if (s->files[i].ntests > 0) {
			k->test_s += e[i]->duration_s;
			k->ntests += s->files[i].ntests;
		}
	}
}

static void
estimate_one(struct sr_file *f, const struct sr_hist_entry *e,
             const struct known *k)
{
	f->est_known = (e != NULL);
	if (e != NULL)
		f->est_s = e->duration_s;
	else if (f->ntests > 0 && k->ntests > 0)
		f->est_s = f->ntests * (k->test_s / (double) k->ntests);
	else if (k->n > 0)
		f->est_s = k->sum_s / (double) k->n;
	else
		f->est_s = SR_DEFAULT_ESTIMATE_S;
}

void
sr_history_estimate(const struct sr_history *h, struct sr_suite *s)
{
	const struct sr_hist_entry **e = calloc(s->n ? s->n : 1, sizeof(*e));
	struct known k;

	if (e == NULL) {
		/* No memory for the table: estimate without history. */
		memset(&k, 0, sizeof(k));
		for (size_t i = 0; i < s->n; i++)
			estimate_one(&s->files[i], NULL, &k);
		return;
	}
	lookup_all(h, s, e);
	known_stats(s, e, &k);
	for (size_t i = 0; i < s->n; i++)
		estimate_one(&s->files[i], e[i], &k);
	free(e);
}

static bool
passed(const struct sr_attempt *a)
{
	return (a->outcome == SHARDRUN__OUTCOME__PASSED ||
	        a->outcome == SHARDRUN__OUTCOME__NO_TESTS);
}

static uint32_t
nparts(const struct sr_file *f)
{
	return (sr_file_nparts(f) ? sr_file_nparts(f) : 1);
}

/* The first attempt of part p (of the file, when whole), or NULL. */
static const struct sr_attempt *
first_of(const struct sr_file *f, uint32_t p)
{
	for (size_t i = 0; i < f->natt; i++)
		if (f->att[i].part == p)
			return (&f->att[i]);
	return (NULL);
}

/*
 * Only first attempts count, and only if they passed (or found no tests):
 * a rerun that passed after a failure, a crash or a timeout says nothing
 * about how long a healthy run takes, and recording a hang would let it
 * raise its own timeout next time. A split file is healthy when the first
 * attempt of every part passed; its duration is their sum. Not counted:
 * what its fork server spent parsing its configuration before it ran
 * (paid by a slot's first file of a configuration, not by each).
 */
static bool
healthy(const struct sr_file *f, double *dur)
{
	*dur = 0;
	for (uint32_t p = 0; p < nparts(f); p++) {
		const struct sr_attempt *first = first_of(f, p);

		if (first == NULL || !passed(first))
			return (false);
		*dur += first->duration_s - first->parse_s;
	}
	return (true);
}

/* The per-test times of a healthy run: from the JUnit reports of its
 * counted attempts, for files long enough to be split; a file that has
 * become shorter loses its table. */
static int
update_tests(struct sr_history *h, const struct sr_file *f)
{
	const struct sr_attempt **att;
	int found, rv;
	size_t i = find(h, f->path, &found);

	if (!found)
		return (0);
	if (h->e[i].duration_s < TESTS_MIN_S)
		return (set_tests(h, i, NULL));
	if ((att = calloc(nparts(f), sizeof(*att))) == NULL)
		return (SR_ENOMEM);
	for (uint32_t p = 0; p < nparts(f); p++)
		att[p] = first_of(f, p);
	rv = sr_hist_tests_from_junit(h, f->path, att, nparts(f));
	free(att);
	return (rv);
}

int
sr_history_update(struct sr_history *h, const struct sr_suite *s)
{
	int rv;

	for (size_t i = 0; i < s->n; i++) {
		const struct sr_file *f = &s->files[i];
		double dur;

		if (!healthy(f, &dur))
			continue;
		if (!sr_hist_valid(dur)) {
			sr_warn("%s: duration %g not recorded", f->path, dur);
			continue;
		}
		if ((rv = sr_history_record(h, f->path, dur)) != 0 ||
		    (rv = update_tests(h, f)) != 0)
			return (rv);
	}
	return (0);
}
