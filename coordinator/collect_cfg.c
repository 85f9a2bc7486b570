/*
 * collect_cfg.c - reading pytest's configuration file (see collect_cfg.h).
 *
 * Two small hand parsers: ini files the way iniconfig (pytest's reader)
 * splits them, and just enough TOML to find [tool.pytest.ini_options] in
 * pyproject.toml and read its strings and arrays of strings. A value is
 * split like shlex.split when it is a string, as pytest does for these
 * keys; a TOML array is taken as it is.
 */
#include <ctype.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sr/err.h"
#include "sr/log.h"
#include "sr/util.h"

#include "collect_cfg.h"

#define MAX_CONFIG (1u << 20)

static const char *const python_files_default[] = {"test_*.py", "*_test.py",
                                                   NULL};
static const char *const norecurse_default[] = {
    "*.egg", ".*",           "_darcs", "build",  "CVS",
    "dist",  "node_modules", "venv",   "{arch}", NULL};
/* Keys that change what pytest collects and that we cannot honour. */
static const char *const unhonoured_keys[] = {
    "python_classes", "python_functions", "doctest_glob",
    "collect_imported_tests", NULL};
/* addopts options that change what pytest collects (prefixes). */
static const char *const collect_options[] = {
    "--ignore",  "--deselect",   "--pyargs",     "--doctest",
    "--rootdir", "--confcutdir", "--noconftest", "--collect-in-virtualenv",
    "-k",        "-m",           "-p",           "-c",
    NULL};

static int
push_all(struct sr_strv *sv, const char *const *list)
{
	int rv = 0;

	for (size_t i = 0; rv == 0 && list[i] != NULL; i++)
		rv = sr_strv_push(sv, list[i]);
	return (rv);
}

static bool
in_list(const char *const *list, const char *s)
{
	for (size_t i = 0; list[i] != NULL; i++)
		if (strcmp(list[i], s) == 0)
			return (true);
	return (false);
}

void
sr_pycfg_free(struct sr_pycfg *c)
{
	sr_strv_free(&c->testpaths);
	sr_strv_free(&c->python_files);
	sr_strv_free(&c->norecurse);
}

static int
cfg_init(struct sr_pycfg *c, const char *root)
{
	int rv;

	c->file = NULL;
	c->root = root;
	sr_strv_init(&c->testpaths);
	sr_strv_init(&c->python_files);
	sr_strv_init(&c->norecurse);
	if ((rv = push_all(&c->python_files, python_files_default)) != 0 ||
	    (rv = push_all(&c->norecurse, norecurse_default)) != 0) {
		sr_pycfg_free(c);
		return (rv);
	}
	return (0);
}

/* Split like shlex.split (what pytest does to "args" ini values), well
 * enough for paths and globs: blanks separate, quotes group. */
static int
split_args(const char *s, struct sr_strv *out)
{
	struct sr_buf tok;
	int rv = 0;

	sr_buf_init(&tok);
	while (rv == 0 && *s != '\0') {
		bool have = false;
		char q = 0;

		while (isspace((unsigned char) *s))
			s++;
		tok.len = 0;
		for (; *s != '\0' && (q || !isspace((unsigned char) *s)); s++) {
			have = true;
			if (q == 0 && (*s == '"' || *s == '\''))
				q = *s;
			else if (q != 0 && *s == q)
				q = 0;
			else if ((rv = sr_buf_append(&tok, s, 1)) != 0)
				break;
		}
		if (rv == 0 && have)
			rv = sr_strv_pushn(out, tok.len ? (char *) tok.p : "",
			                   tok.len);
	}
	sr_buf_free(&tok);
	return (rv);
}

static bool
collect_option(const char *tok)
{
	for (size_t i = 0; collect_options[i] != NULL; i++) {
		const char *opt = collect_options[i];

		if (strncmp(tok, opt, strlen(opt)) == 0 &&
		    (opt[1] == '-' || tok[1] != '-'))
			return (true);
	}
	return (false);
}

/* Tell the user about a key that changes collection and is ignored here. */
static void
warn_key(const struct sr_pycfg *c, const char *key, const struct sr_strv *vals)
{
	char path[PATH_MAX];

	if (in_list(unhonoured_keys, key)) {
		sr_warn("%s: %s is not honoured by fast collection "
		        "(use --collect pytest)",
		        c->file, key);
		return;
	}
	for (size_t i = 0; strcmp(key, "addopts") == 0 && i < vals->n; i++) {
		const char *t = vals->v[i];
		bool path_like = t[0] != '-' &&
		                 snprintf(path, sizeof(path), "%s/%s", c->root,
		                          t) < (int) sizeof(path) &&
		                 access(path, F_OK) == 0;

		if (path_like || (t[0] == '-' && collect_option(t)))
			sr_warn("%s: addopts '%s' is not honoured by fast "
			        "collection (use --collect pytest)",
			        c->file, t);
	}
}

/* One key of the pytest section; a string value is split, a list taken. */
static int
cfg_key(struct sr_pycfg *c, const char *key, const struct sr_strv *vals,
        bool split)
{
	struct sr_strv words, *dst = NULL;
	int rv = 0;

	sr_strv_init(&words);
	for (size_t i = 0; split && rv == 0 && i < vals->n; i++)
		rv = split_args(vals->v[i], &words);
	if (rv == 0 && !split)
		for (size_t i = 0; rv == 0 && i < vals->n; i++)
			rv = sr_strv_push(&words, vals->v[i]);
	if (strcmp(key, "testpaths") == 0)
		dst = &c->testpaths;
	else if (strcmp(key, "python_files") == 0)
		dst = &c->python_files;
	else if (strcmp(key, "norecursedirs") == 0)
		dst = &c->norecurse;
	if (rv == 0 && dst == NULL)
		warn_key(c, key, &words);
	if (rv == 0 && dst != NULL) {
		sr_strv_free(dst);
		*dst = words;
		return (0);
	}
	sr_strv_free(&words);
	return (rv);
}

/* Ini files as iniconfig reads them: whole-line comments (# or ;),
 * "key = value" or "key: value", values continued on indented lines. */
static int
ini_flush(struct sr_pycfg *c, char *key, struct sr_buf *val)
{
	struct sr_strv one;
	int rv;

	if (key[0] == '\0')
		return (0);
	sr_strv_init(&one);
	if ((rv = sr_strv_push(&one, val->len ? (char *) val->p : "")) == 0)
		rv = cfg_key(c, key, &one, true);
	sr_strv_free(&one);
	key[0] = '\0';
	val->len = 0;
	return (rv);
}

static bool
ini_section(const char *s, const char *e, const char *want)
{
	const char *end = s;

	while (end < e && *end != '#' && *end != ';')
		end++;
	while (end > s && isspace((unsigned char) end[-1]))
		end--;
	return (end - s >= 2 && end[-1] == ']' &&
	        (size_t) (end - s - 2) == strlen(want) &&
	        strncmp(s + 1, want, (size_t) (end - s - 2)) == 0);
}

static int
ini_keyval(const char *s, const char *e, char *key, size_t keysz,
           struct sr_buf *val)
{
	const char *sep = s, *kend;

	while (sep < e && *sep != '=' && *sep != ':')
		sep++;
	if (sep == e)
		return (0); /* iniconfig refuses such a line; so do we */
	for (kend = sep; kend > s && isspace((unsigned char) kend[-1]); kend--)
		;
	snprintf(key, keysz, "%.*s", (int) (kend - s), s);
	for (sep++; sep < e && isspace((unsigned char) *sep); sep++)
		;
	return (sr_buf_append(val, sep, (size_t) (e - sep)));
}

static int
ini_parse(struct sr_pycfg *c, const char *text, const char *section,
          bool *found)
{
	struct sr_buf val;
	char key[128] = "";
	bool in = false;
	int rv = 0;

	sr_buf_init(&val);
	for (const char *p = text; rv == 0 && *p != '\0';) {
		const char *s = p, *e = strchrnul(p, '\n'), *f = s;

		p = *e != '\0' ? e + 1 : e;
		while (e > s && isspace((unsigned char) e[-1]))
			e--;
		while (f < e && isspace((unsigned char) *f))
			f++;
		if (f == e || *f == '#' || *f == ';')
			continue;
		if (*s == '[') {
			rv = ini_flush(c, key, &val);
			*found |= (in = ini_section(s, e, section));
		} else if (in && f != s && key[0] != '\0') {
			if ((rv = sr_buf_append(&val, "\n", 1)) == 0)
				rv = sr_buf_append(&val, f, (size_t) (e - f));
		} else if (in && f == s &&
		           (rv = ini_flush(c, key, &val)) == 0) {
			rv = ini_keyval(s, e, key, sizeof(key), &val);
		}
	}
	if (rv == 0)
		rv = ini_flush(c, key, &val);
	sr_buf_free(&val);
	return (rv);
}

/*
 * pyproject.toml: just enough TOML to find [tool.pytest.ini_options] and
 * read its strings and arrays of strings; other values are skipped.
 */
static void
toml_ws(const char **pp, bool nl)
{
	const char *p = *pp;

	for (;;) {
		if (*p == ' ' || *p == '\t' || *p == '\r' || (nl && *p == '\n'))
			p++;
		else if (nl && *p == '#')
			p = strchrnul(p, '\n');
		else
			break;
	}
	*pp = p;
}

static int
toml_string(const char **pp, struct sr_buf *out)
{
	const char *p = *pp;
	char q = *p;
	bool triple = p[1] == q && p[2] == q;
	int rv = 0;

	for (p += triple ? 3 : 1; rv == 0; p++) {
		char ch = *p;

		if (ch == '\0' || (ch == '\n' && !triple))
			return (SR_EINVAL);
		if (ch == q && (!triple || (p[1] == q && p[2] == q)))
			break;
		if (ch == '\\' && q == '"') {
			if ((ch = *++p) == '\0')
				return (SR_EINVAL);
			ch = ch == 'n' ? '\n' : ch == 't' ? '\t' : ch;
		}
		rv = sr_buf_append(out, &ch, 1);
	}
	*pp = p + (triple ? 3 : 1);
	return (rv);
}

static int toml_value(const char **pp, struct sr_strv *out, int depth);

/* An array or an inline table: the strings in it go to out. */
static int
toml_list(const char **pp, struct sr_strv *out, int depth)
{
	const char *p = *pp;
	char close = *p++ == '[' ? ']' : '}';
	int rv;

	for (toml_ws(&p, true); *p != close;) {
		const char *before = p;

		while (close == '}' && *p != '\0' && *p != '=' && *p != '}')
			p++; /* an inline table's key */
		p += close == '}' && *p == '=';
		toml_ws(&p, true);
		if ((rv = toml_value(&p, out, depth + 1)) != 0)
			return (rv);
		toml_ws(&p, true);
		p += *p == ',';
		toml_ws(&p, true);
		if (p == before || *p == '\0')
			return (SR_EINVAL);
	}
	*pp = p + 1;
	return (0);
}

/* A value: its strings (arrays flattened) are appended to out; other
 * scalars are skipped. */
static int
toml_value(const char **pp, struct sr_strv *out, int depth)
{
	const char *p = *pp;
	struct sr_buf b;
	int rv = 0;

	if (depth > 32)
		return (SR_EINVAL);
	if (*p == '[' || *p == '{')
		return (toml_list(pp, out, depth));
	if (*p == '"' || *p == '\'') {
		sr_buf_init(&b);
		if ((rv = toml_string(&p, &b)) == 0)
			rv = sr_strv_pushn(out, b.len ? (char *) b.p : "",
			                   b.len);
		sr_buf_free(&b);
	} else {
		while (*p != '\0' && strchr(",]}\n#", *p) == NULL)
			p++;
	}
	if (rv == 0)
		*pp = p;
	return (rv);
}

static int
toml_header(const char **pp, bool *in)
{
	const char *p = *pp + 1, *s, *e;
	bool array = *p == '[';

	p += array;
	toml_ws(&p, false);
	for (s = p; *p != '\0' && *p != ']' && *p != '\n'; p++)
		;
	if (*p != ']')
		return (SR_EINVAL);
	for (e = p; e > s && (e[-1] == ' ' || e[-1] == '\t'); e--)
		;
	*in = !array && e - s == 23 &&
	      memcmp(s, "tool.pytest.ini_options", 23) == 0;
	*pp = strchrnul(p, '\n');
	return (0);
}

static int
toml_keyval(struct sr_pycfg *c, const char **pp, bool in)
{
	const char *p = *pp, *k = p;
	struct sr_strv vals;
	char key[128];
	bool str;
	int rv;

	while (*p != '\0' && *p != '=' && *p != '\n')
		p++;
	if (*p != '=')
		return (SR_EINVAL);
	snprintf(key, sizeof(key), "%.*s", (int) (p - k), k);
	for (size_t n = strlen(key);
	     n > 0 && isspace((unsigned char) key[n - 1]);)
		key[--n] = '\0';
	p++;
	toml_ws(&p, false);
	str = *p == '"' || *p == '\'';
	sr_strv_init(&vals);
	if ((rv = toml_value(&p, &vals, 0)) == 0 && in)
		rv = cfg_key(c, key, &vals, str);
	sr_strv_free(&vals);
	*pp = strchrnul(p, '\n');
	return (rv);
}

static int
toml_parse(struct sr_pycfg *c, const char *text, bool *found)
{
	const char *p = text;
	bool in = false;
	int rv = 0;

	for (toml_ws(&p, true); rv == 0 && *p != '\0'; toml_ws(&p, true)) {
		if (*p == '[') {
			rv = toml_header(&p, &in);
			*found |= in;
		} else {
			rv = toml_keyval(c, &p, in);
		}
	}
	return (rv);
}

static const struct cfgfile {
	const char *name;
	const char *section; /* NULL: pyproject's [tool.pytest.ini_options] */
	bool always;         /* in use even without the section */
} cfgfiles[] = {
    {"pytest.ini", "pytest", true},      {".pytest.ini", "pytest", false},
    {"pyproject.toml", NULL, false},     {"tox.ini", "pytest", false},
    {"setup.cfg", "tool:pytest", false},
};

static int
cfg_load(struct sr_pycfg *c)
{
	for (size_t i = 0; i < sizeof(cfgfiles) / sizeof(cfgfiles[0]); i++) {
		const struct cfgfile *f = &cfgfiles[i];
		char path[PATH_MAX], *text;
		size_t len;
		bool found = f->always;
		int rv;

		snprintf(path, sizeof(path), "%s/%s", c->root, f->name);
		if ((rv = sr_read_file(path, MAX_CONFIG, &text, &len)) != 0) {
			if (rv != SR_ENOENT)
				sr_warn("%s: %s, ignored", path,
				        sr_strerror(rv));
			continue;
		}
		text[len] = '\0'; /* util.c leaves an empty file unterminated */
		c->file = f->name;
		rv = f->section ? ini_parse(c, text, f->section, &found)
		                : toml_parse(c, text, &found);
		free(text);
		if (rv == SR_ENOMEM)
			return (rv);
		if (rv != 0)
			sr_warn("%s: not understood past some point, the rest "
			        "is ignored",
			        path);
		if (found) {
			sr_info("collect: configuration from %s", path);
			return (0);
		}
	}
	c->file = NULL;
	sr_info("collect: no pytest configuration in %s", c->root);
	return (0);
}

int
sr_pycfg_load(struct sr_pycfg *c, const char *root)
{
	struct sr_pycfg n;
	int rv;

	if ((rv = cfg_init(&n, root)) != 0)
		return (rv);
	if ((rv = cfg_load(&n)) != 0) {
		sr_pycfg_free(&n);
		return (rv);
	}
	*c = n;
	return (0);
}
