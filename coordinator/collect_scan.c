/*
 * collect_scan.c - sr_scan_python: markers and test count of one Python
 * source, read as text (fast collection; see collect.h).
 *
 * Not a Python parser: a lexer good enough to split the source into
 * logical lines without comments and string contents, and a few patterns
 * over those lines. What it cannot see (markers added by conftest hooks
 * or plugins, tests generated in loops, "import pytest as pt") exact
 * collection sees.
 */
#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sr/err.h"
#include "sr/util.h"

#include "collect.h"

/*
 * The scanner works on logical lines: comments dropped, each string
 * literal reduced to one '"', physical lines joined inside brackets and
 * after a backslash. That tells decorators, defs, classes and pytestmark
 * assignments apart, and keeps markers in strings and comments out.
 */
struct scan {
	const struct sr_collect_opts *o;
	bool alias;      /* "from pytest import mark" seen */
	bool in_class;   /* inside a top-level class body */
	bool test_class; /* ... of a Test* class */
	int body;        /* that body's indentation, -1 until seen */
	bool pend_serial, pend_excl; /* markers of pending decorators */
	bool serial, excl;
	unsigned ntests;
	struct sr_strv mods; /* top-level imports (only when counted) */
};

static bool
isident(char c)
{
	return (isalnum((unsigned char) c) || c == '_' || (c & 0x80) != 0);
}

static const char *
skip_string(const char *p)
{
	char q = *p;
	bool triple = p[1] == q && p[2] == q;

	for (p += triple ? 3 : 1; *p != '\0'; p++) {
		if (*p == '\\' && p[1] != '\0')
			p++;
		else if (*p == q && (!triple || (p[1] == q && p[2] == q)))
			return (p + (triple ? 3 : 1));
		else if (*p == '\n' && !triple)
			return (p); /* unterminated */
	}
	return (p);
}

/* The next logical line into buf (at least strlen(*pp) + 1 bytes).
 * Returns its indentation, -1 at the end of the source. */
static int
next_line(const char **pp, char *buf)
{
	const char *p = *pp;
	int ind, depth = 0;
	size_t n = 0;

	for (;; p++) {
		for (ind = 0;
		     *p == ' ' || *p == '\t' || *p == '\r' || *p == '\f'; p++)
			ind =
			    *p == '\t' ? (ind / 8 + 1) * 8 : ind + (*p == ' ');
		if (*p == '#')
			p = strchrnul(p, '\n');
		if (*p != '\n')
			break;
	}
	while (*p != '\0') {
		char ch = *p;

		if (ch == '#') {
			p = strchrnul(p, '\n');
		} else if (ch == '"' || ch == '\'') {
			p = skip_string(p);
			buf[n++] = '"';
		} else if (ch == '\\' && (p[1] == '\n' || p[1] == '\r')) {
			p += p[1] == '\r' && p[2] == '\n' ? 3 : 2;
			buf[n++] = ' ';
		} else {
			p++;
			if (ch == '\n' && depth == 0)
				break;
			depth += strchr("([{", ch) != NULL;
			depth -= depth > 0 && strchr(")]}", ch) != NULL;
			buf[n++] = isspace((unsigned char) ch) ? ' ' : ch;
		}
	}
	buf[n] = '\0';
	*pp = p;
	return (n > 0 || *p != '\0' ? ind : -1);
}

/* t starts with the word w: what follows it, else NULL. */
static const char *
word(const char *t, const char *w)
{
	size_t n = strlen(w);

	if (strncmp(t, w, n) != 0 || isident(t[n]))
		return (NULL);
	while (t[n] == ' ')
		n++;
	return (t + n);
}

/* "[async] def NAME" / "class NAME": is it one, and is NAME prefix...? */
static bool
defines(const char *t, const char *kw, const char *prefix, bool *match)
{
	const char *p = t;

	if (strcmp(kw, "def") == 0 && (p = word(t, "async")) == NULL)
		p = t;
	if ((p = word(p, kw)) == NULL)
		return (false);
	*match = strncmp(p, prefix, strlen(prefix)) == 0;
	return (true);
}

/* Every pytest.mark.NAME (or mark.NAME after "from pytest import mark"). */
static void
markers(const struct scan *s, const char *t, bool *serial, bool *excl)
{
	for (const char *p = t; (p = strstr(p, "mark.")) != NULL; p += 5) {
		const char *q = p, *nm = p + 5;
		char name[128];
		size_t len = 0;

		if (p - t >= 7 && memcmp(p - 7, "pytest.", 7) == 0)
			q = p - 7;
		else if (!s->alias)
			continue;
		if (q > t && (isident(q[-1]) || q[-1] == '.'))
			continue;
		while (isident(nm[len]))
			len++;
		if (len == 0 || len >= sizeof(name))
			continue;
		snprintf(name, sizeof(name), "%.*s", (int) len, nm);
		*serial |= sr_strv_contains(&s->o->serial_markers, name);
		*excl |= sr_strv_contains(&s->o->exclusive_markers, name);
	}
}

static bool
imports_mark(const char *t)
{
	const char *p;

	if ((p = word(t, "from")) == NULL || (p = word(p, "pytest")) == NULL ||
	    (p = word(p, "import")) == NULL)
		return (false);
	for (; (p = strstr(p, "mark")) != NULL; p += 4)
		if ((p == t || !isident(p[-1])) && !isident(p[4]))
			return (true);
	return (false);
}

/* "import a.b, c as d" / "from a.b import x": the top-level names. */
static void
imports(struct scan *s, const char *t)
{
	const char *p = word(t, "import");
	bool from = false;

	if (p == NULL && (p = word(t, "from")) != NULL)
		from = true;
	while (p != NULL && *p != '\0') {
		size_t n = 0;

		while (isident(p[n]))
			n++;
		if (n > 0 && n < 64)
			(void) sr_strv_pushn(&s->mods, p, n);
		if (from)
			return;
		if ((p = strchr(p + n, ',')) != NULL)
			p += 1 + strspn(p + 1, " \t");
	}
}

static void
scan_line(struct scan *s, const char *t, int ind)
{
	const char *p;
	bool top = ind == 0, member, test, apply;

	if (top)
		s->in_class = false;
	else if (s->in_class && s->body < 0)
		s->body = ind;
	member = s->in_class && ind == s->body;
	if (!top && !member)
		return;
	if (t[0] == '@') {
		markers(s, t, &s->pend_serial, &s->pend_excl);
		return;
	}
	if (defines(t, "def", "test", &test)) {
		s->ntests += test && (top || s->test_class);
		apply = test;
	} else if (top && defines(t, "class", "Test", &test)) {
		/* any class: a marked base class passes its marks on */
		s->in_class = true;
		s->test_class = test;
		s->body = -1;
		apply = true;
	} else {
		p = word(t, "pytestmark");
		if (p != NULL && *p != '\0' && strchr("=:+", *p) != NULL)
			markers(s, t, &s->serial, &s->excl);
		else if (top && imports_mark(t))
			s->alias = true;
		if (top && s->o->imports != NULL)
			imports(s, t);
		return;
	}
	s->serial |= apply && s->pend_serial;
	s->excl |= apply && s->pend_excl;
	s->pend_serial = s->pend_excl = false;
}

static bool
seen_before(const struct sr_strv *v, size_t i)
{
	for (size_t k = 0; k < i; k++)
		if (strcmp(v->v[k], v->v[i]) == 0)
			return (true);
	return (false);
}

static void
count_imports(struct sr_imports *im, const struct sr_strv *mods)
{
	if (im == NULL)
		return;
	im->files++;
	for (size_t i = 0; i < mods->n; i++) {
		size_t k = 0;
		unsigned *c;

		if (seen_before(mods, i))
			continue; /* once per file */
		while (k < im->names.n && strcmp(im->names.v[k], mods->v[i]))
			k++;
		if (k == im->names.n) {
			c = realloc(im->counts, (k + 1) * sizeof(*c));
			if (c == NULL || sr_strv_push(&im->names, mods->v[i]))
				return;
			im->counts = c;
			c[k] = 0;
		}
		im->counts[k]++;
	}
}

int
sr_scan_python(const char *src, const struct sr_collect_opts *o, bool *serial,
               bool *exclusive, unsigned *ntests)
{
	struct scan s = {.o = o, .body = -1};
	char *buf;
	int ind;

	if (strncmp(src, "\xef\xbb\xbf", 3) == 0)
		src += 3; /* UTF-8 byte order mark */
	if ((buf = malloc(strlen(src) + 1)) == NULL)
		return (SR_ENOMEM);
	while ((ind = next_line(&src, buf)) >= 0)
		scan_line(&s, buf, ind);
	free(buf);
	count_imports(s.o->imports, &s.mods);
	sr_strv_free(&s.mods);
	*serial = s.serial;
	*exclusive = s.excl;
	*ntests = s.ntests;
	return (0);
}

void
sr_imports_init(struct sr_imports *im)
{
	sr_strv_init(&im->names);
	im->counts = NULL;
	im->files = 0;
}

void
sr_imports_free(struct sr_imports *im)
{
	sr_strv_free(&im->names);
	free(im->counts);
	im->counts = NULL;
}

int
sr_imports_frequent(const struct sr_imports *im, double share, size_t max,
                    struct sr_strv *out)
{
	bool *taken = calloc(im->names.n + 1, sizeof(*taken));
	int rv = 0;

	if (taken == NULL)
		return (SR_ENOMEM);
	for (size_t got = 0; got < max && rv == 0; got++) {
		size_t best = im->names.n;

		for (size_t k = 0; k < im->names.n; k++)
			if (!taken[k] &&
			    strcmp(im->names.v[k], "pytest") != 0 &&
			    strcmp(im->names.v[k], "__future__") != 0 &&
			    (best == im->names.n ||
			     im->counts[k] > im->counts[best]))
				best = k;
		if (best == im->names.n || im->counts[best] < 2 ||
		    im->counts[best] < share * (double) im->files)
			break;
		taken[best] = true;
		rv = sr_strv_push(out, im->names.v[best]);
	}
	free(taken);
	return (rv);
}
