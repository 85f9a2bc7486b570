/*
 * report.c - the summary and the results JSON (the merged JUnit XML is in
 * report_junit.c).
 *
 * Reads a finished suite and writes text; nothing is kept. Strings from
 * agents (tails, messages, names) are cleaned on the way into JSON and XML
 * (valid UTF-8, no character XML forbids): one stray byte in a test's
 * output must not make a whole report unreadable to the CI tool reading it.
 * Per-file JUnit reports are parsed with network access and entity
 * substitution off, and one carrying a DTD is refused (pytest never writes
 * one), so no entity, internal or external, reaches the merged document.
 */
#include <ctype.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "sr/err.h"
#include "sr/log.h"
#include "sr/profile.h"
#include "sr/util.h"

#include "report.h"
#include "report_int.h"

#define TAIL_LINES 20 /* of a failure's output, in the summary */
#define SLOWEST    5
#define BRIEF_MAX  20 /* flaky or unfinished files listed by name */
#define RESET      "\033[0m"

/* The documented count keys, in summary order (indexed by SR_FINAL_*). */
static const char *const words[SR_FINAL_COUNT] = {
    "pending", "passed", "failed", "flaky", "crashed", "timeout", "error"};
static const char *const shout[SR_FINAL_COUNT] = {
    "PENDING", "PASSED", "FAILED", "FLAKY", "CRASHED", "TIMEOUT", "ERROR"};
/* Green for passed, yellow for flaky and unfinished, red for the rest. */
static const char *const colors[SR_FINAL_COUNT] = {
    "\033[33m", "\033[32m", "\033[31m", "\033[33m",
    "\033[31m", "\033[31m", "\033[31m"};

int
sr_report_is_bad(int final)
{
	return (final == SR_FINAL_FAILED || final == SR_FINAL_CRASHED ||
	        final == SR_FINAL_TIMEOUT || final == SR_FINAL_ERROR);
}

void
sr_report_counts(const struct sr_suite *s, unsigned *counts)
{
	memset(counts, 0, SR_FINAL_COUNT * sizeof(*counts));
	for (size_t i = 0; i < s->n; i++)
		if ((unsigned) s->files[i].final < SR_FINAL_COUNT)
			counts[s->files[i].final]++;
}

/* Length of the valid UTF-8 character at p (its code point in *cp), 0 if
 * the bytes are not one: overlong, surrogate, beyond U+10FFFF, cut off. */
static size_t
utf8_char(const unsigned char *p, size_t n, unsigned long *cp)
{
	static const unsigned long least[5] = {0, 0, 0x80, 0x800, 0x10000};
	size_t len = p[0] < 0x80 ? 1 : p[0] < 0xe0 ? 2 : p[0] < 0xf0 ? 3 : 4;
	unsigned long c = len == 1 ? p[0] : p[0] & (0x7fu >> len);

	if ((p[0] >= 0x80 && p[0] < 0xc0) || p[0] > 0xf4 || len > n)
		return (0);
	for (size_t i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return (0);
		c = (c << 6) | (p[i] & 0x3f);
	}
	if (c < least[len] || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
		return (0);
	*cp = c;
	return (len);
}

/* A copy of n bytes of s in valid UTF-8 (bad bytes become U+FFFD), for
 * XML also without the characters XML 1.0 forbids (controls other than
 * tab, LF, CR; U+FFFE, U+FFFF); NULL only when out of memory. */
char *
sr_report_clean(const char *s, size_t n, int xml)
{
	struct sr_buf b;
	unsigned long c;
	size_t i = 0, len;
	int rv;

	sr_buf_init(&b);
	rv = sr_buf_append(&b, "", 0);
	while (rv == 0 && i < n) {
		if ((len = utf8_char((const void *) (s + i), n - i, &c)) == 0)
			rv = sr_buf_append(&b, "\xef\xbf\xbd", 3);
		else if (!xml ||
		         (c < 0x20 ? (0x2600 >> c) & 1 : (c | 1) != 0xffff))
			rv = sr_buf_append(&b, s + i, len);
		i += len > 0 ? len : 1;
	}
	if (rv != 0)
		sr_buf_free(&b);
	return ((char *) b.p);
}

/* mkdir -p of path's directory, then the atomic write. */
int
sr_report_write_out(const char *path, const void *p, size_t n)
{
	const char *slash = strrchr(path, '/');
	char *dir;
	int rv = 0;

	if (slash != NULL && slash != path) {
		if ((dir = strndup(path, (size_t) (slash - path))) == NULL)
			return (SR_ENOMEM);
		rv = sr_mkdirs(dir, 0755);
		free(dir);
	}
	if (rv == 0)
		rv = sr_write_atomic(path, p, n, 0644);
	if (rv != 0)
		sr_error("%s: cannot write report: %s", path, sr_strerror(rv));
	return (rv);
}

/* What became of a file, in one line: "crashed (SIGSEGV)", "timeout after
 * 30s", the agent's message, "tests failed (exit 1)". */
void
sr_report_describe(const struct sr_file *f, int unreadable, char *buf,
                   size_t sz)
{
	const struct sr_attempt *a = sr_file_last(f);
	int final = f->final;
	size_t n;

	if (a == NULL)
		snprintf(buf, sz, "%s",
		         final == SR_FINAL_PENDING ? "not run (interrupted)"
		                                   : "no attempt ran");
	else if (final == SR_FINAL_CRASHED && a->signal > 0)
		snprintf(buf, sz, "crashed (SIG%s)", sr_signame(a->signal));
	else if (final == SR_FINAL_TIMEOUT)
		snprintf(buf, sz, "timeout after %.*fs",
		         a->duration_s < 10 ? 1 : 0, a->duration_s);
	else if (a->message != NULL && a->message[0] != '\0')
		snprintf(buf, sz, "%s", a->message);
	else if (final == SR_FINAL_FAILED && a->exit_code >= 0)
		snprintf(buf, sz, "tests failed (exit %d)", a->exit_code);
	else
		snprintf(buf, sz, "%s", sr_final_name(final));
	if (unreadable && (n = strlen(buf)) < sz)
		snprintf(buf + n, sz - n, "; unreadable JUnit report");
}

/* A JSON string of s, cleaned; null for NULL; NULL only on ENOMEM. */
static json_t *
jstr(const char *s)
{
	char *c = s != NULL ? sr_report_clean(s, strlen(s), 0) : NULL;
	json_t *j = s == NULL ? json_null() : c ? json_string(c) : NULL;

	free(c);
	return (j);
}

static json_t *
jreal(int present, double v)
{
	return (present && isfinite(v) ? json_real(v) : json_null());
}

static json_t *
attempt_outcomes(const struct sr_file *f)
{
	json_t *arr = json_array();

	for (size_t i = 0; arr != NULL && i < f->natt; i++) {
		const char *name = sr_outcome_name(f->att[i].outcome);

		if (json_array_append_new(arr, json_string(name)) != 0) {
			json_decref(arr);
			return (NULL);
		}
	}
	return (arr);
}

/* Of the file's duration: its fork servers' parses before its final
 * attempts (one per part of a split file). */
static double
parse_s(const struct sr_file *f)
{
	uint32_t n = sr_file_nparts(f) ? sr_file_nparts(f) : 1;
	double sum = 0;

	for (uint32_t p = 0; p < n; p++) {
		const struct sr_attempt *a =
		    f->parts ? sr_file_part_last(f, p) : sr_file_last(f);

		sum += a != NULL ? a->parse_s : 0;
	}
	return (sum);
}

/* A split file's times span its parts: the first start, the last end, and
 * the sum of their durations. "bundled": the final attempt was the file's
 * share of a bundle; "isolation_leak": it failed in a bundle and passed
 * alone; "parse_s": of duration_s, the fork servers' parses of the file's
 * pytest configuration first. */
static json_t *
file_json(const struct sr_file *f)
{
	const struct sr_attempt *a = sr_file_last(f);
	double start, end, dur;
	int has = sr_file_span(f, &start, &end, &dur);
	json_t *o = json_pack(
	    "{s:o, s:s, s:I, s:o, s:o, s:o, s:o, s:o, s:o, s:o,"
	    " s:o, s:b, s:b, s:o, s:o, s:I, s:I}",
	    "file", jstr(f->path), "outcome", sr_final_name(f->final),
	    "attempts", (json_int_t) f->natt, "duration_s", jreal(has, dur),
	    "start_s", jreal(has, start), "end_s", jreal(has, end), "agent",
	    jstr(has ? a->agent : NULL), "slot",
	    has ? json_integer(a->slot) : json_null(), "exit_code",
	    has && a->exit_code >= 0 ? json_integer(a->exit_code) : json_null(),
	    "signal", jstr(has && a->signal > 0 ? sr_signame(a->signal) : NULL),
	    "estimate_s", jreal(1, f->est_s), "serial", (int) f->serial,
	    "exclusive", (int) f->exclusive, "attempt_outcomes",
	    attempt_outcomes(f), "message", jstr(has ? a->message : NULL),
	    "tries", (json_int_t) (has ? a->tries : 0), "parts",
	    (json_int_t) (f->parts ? f->parts->n : 1));

	if (o != NULL &&
	    (json_object_set_new(o, "bundled",
	                         json_boolean(has && a->bundled)) != 0 ||
	     json_object_set_new(o, "parse_s", json_real(parse_s(f))) != 0 ||
	     json_object_set_new(o, "isolation_leak", json_boolean(f->leak)) !=
	         0)) {
		json_decref(o);
		return (NULL);
	}
	return (o);
}

static json_t *
counts_json(const struct sr_suite *s, int interrupted)
{
	unsigned c[SR_FINAL_COUNT];
	json_t *o = json_object();

	sr_report_counts(s, c);
	for (int i = interrupted ? 0 : 1; i < SR_FINAL_COUNT; i++) {
		if (json_object_set_new(o, words[i], json_integer(c[i])) != 0) {
			json_decref(o);
			return (NULL);
		}
	}
	return (o);
}

static json_t *
files_json(const struct sr_suite *s)
{
	json_t *arr = json_array();

	for (size_t i = 0; arr != NULL && i < s->n; i++) {
		if (json_array_append_new(arr, file_json(&s->files[i])) != 0) {
			json_decref(arr);
			return (NULL);
		}
	}
	return (arr);
}

int
sr_report_json(const struct sr_suite *s, const struct sr_run_info *ri,
               const char *path)
{
	char id[sizeof(ri->run_id)];
	struct sr_buf b;
	json_t *root;
	char *text;
	int rv;

	snprintf(id, sizeof(id), "%.*s", (int) sizeof(id) - 1, ri->run_id);
	root = json_pack(
	    "{s:o, s:o, s:o, s:I, s:b, s:o, s:o}", "run_id", jstr(id),
	    "makespan_s", jreal(1, ri->makespan_s), "lower_bound_s",
	    jreal(1, ri->lower_bound_s), "slots", (json_int_t) ri->slots,
	    "interrupted", ri->interrupted != 0, "counts",
	    counts_json(s, ri->interrupted), "files", files_json(s));
	if (root == NULL)
		return (SR_ENOMEM);
	(void) json_object_set_new(root, "backups",
	                           json_integer((json_int_t) ri->backups));
	(void) json_object_set_new(root, "backup_wins",
	                           json_integer((json_int_t) ri->backup_wins));
	(void) json_object_set_new(
	    root, "messages",
	    json_pack("{s:I, s:I}", "received", (json_int_t) ri->messages_in,
	              "sent", (json_int_t) ri->messages_out));
	text = json_dumps(root, JSON_INDENT(2) | JSON_REAL_PRECISION(12));
	json_decref(root);
	if (text == NULL)
		return (SR_ENOMEM);
	sr_buf_init(&b);
	if ((rv = sr_buf_printf(&b, "%s\n", text)) == 0)
		rv = sr_report_write_out(path, b.p, b.len);
	free(text);
	sr_buf_free(&b);
	return (rv);
}

/* "N passed, N failed, N flaky, N crashed, N timeout, N error" */
static void
print_counts(FILE *out, const unsigned *c, int interrupted, int color)
{
	for (int i = SR_FINAL_PASSED; i < SR_FINAL_COUNT; i++) {
		int on = color && c[i] > 0;

		fprintf(out, "%s%s%u %s%s", i > SR_FINAL_PASSED ? ", " : "",
		        on ? colors[i] : "", c[i], words[i], on ? RESET : "");
	}
	if (interrupted)
		fprintf(out, ", %s%u not run%s", color ? colors[0] : "",
		        c[SR_FINAL_PENDING], color ? RESET : "");
}

/* The last TAIL_LINES lines of tail, indented; control characters
 * (a test's colour codes too) show as '?', carriage returns vanish. */
static void
print_tail(FILE *out, const char *tail)
{
	size_t n = tail != NULL ? strlen(tail) : 0, i, lines = 0;

	while (n > 0 && (tail[n - 1] == '\n' || tail[n - 1] == '\r'))
		n--;
	for (i = n; i > 0; i--)
		if (tail[i - 1] == '\n' && ++lines == TAIL_LINES)
			break;
	for (fputs(n > 0 ? "    " : "", out); i < n; i++) {
		if (tail[i] == '\n')
			fputs("\n    ", out);
		else if (tail[i] != '\r')
			fputc(iscntrl((unsigned char) tail[i]) &&
			              tail[i] != '\t'
			          ? '?'
			          : tail[i],
			      out);
	}
	fputs(n > 0 ? "\n" : "", out);
}

/* "2 attempts (failed, passed), agent ci-3 slot 1" */
static void
print_attempts(FILE *out, const struct sr_file *f)
{
	const struct sr_attempt *a = sr_file_last(f);

	fprintf(out, "%u attempt%s", f->natt, f->natt == 1 ? "" : "s");
	for (size_t i = 0; i < f->natt; i++)
		fprintf(out, "%s%s", i ? ", " : " (",
		        sr_outcome_name(f->att[i].outcome));
	fputs(f->natt > 0 ? ")" : "", out);
	if (a != NULL)
		fprintf(out, ", agent %s slot %d",
		        a->agent != NULL ? a->agent : "?", a->slot);
}

static void
print_failure(FILE *out, const struct sr_file *f, const struct sr_profile *prof,
              int color)
{
	const struct sr_attempt *a = sr_file_last(f);
	struct sr_buf b;
	char msg[1024];

	sr_report_describe(f, 0, msg, sizeof(msg));
	fprintf(out, "\n%s%s%s %s: %s\n  ", color ? colors[f->final] : "",
	        shout[f->final], color ? RESET : "", f->path, msg);
	print_attempts(out, f);
	fputs("\n", out);
	print_tail(out, a != NULL ? a->tail : NULL);
	sr_buf_init(&b);
	if (prof != NULL && sr_profile_repro(prof, f->path, &b) == 0 &&
	    b.p != NULL)
		fprintf(out, "  reproduce: %s\n", (const char *) b.p);
	sr_buf_free(&b);
}

/* Flaky or unfinished files, one line each, at most BRIEF_MAX. */
static void
print_brief(FILE *out, const struct sr_suite *s, int final, int color)
{
	size_t shown = 0, total = 0;

	for (size_t i = 0; i < s->n; i++) {
		const struct sr_file *f = &s->files[i];

		if (f->final != final || total++ >= BRIEF_MAX)
			continue;
		fprintf(out, "%s%s%s%s %s: ", shown++ == 0 ? "\n" : "",
		        color ? colors[final] : "", shout[final],
		        color ? RESET : "", f->path);
		print_attempts(out, f);
		fputs("\n", out);
	}
	if (total > shown)
		fprintf(out, "... and %zu more %s\n", total - shown,
		        words[final]);
}

/* Files that failed in a bundle and passed alone, at most BRIEF_MAX. */
static void
print_leaks(FILE *out, const struct sr_suite *s, int color)
{
	size_t shown = 0, total = 0;

	for (size_t i = 0; i < s->n; i++) {
		if (!s->files[i].leak || total++ >= BRIEF_MAX)
			continue;
		fprintf(out,
		        "%s%sISOLATION LEAK%s %s: failed in a bundle, passed "
		        "alone\n",
		        shown++ == 0 ? "\n" : "",
		        color ? colors[SR_FINAL_FLAKY] : "", color ? RESET : "",
		        s->files[i].path);
	}
	if (total > shown)
		fprintf(out, "... and %zu more isolation leaks\n",
		        total - shown);
}

static double
last_duration(const struct sr_file *f)
{
	const struct sr_attempt *a = sr_file_last(f);

	return (a != NULL && isfinite(a->duration_s) ? a->duration_s : -1);
}

/* The SLOWEST files by final duration: one pass, insertion into top[]. */
static void
print_slowest(FILE *out, const struct sr_suite *s)
{
	const struct sr_file *top[SLOWEST];
	size_t k = 0, j;

	for (size_t i = 0; i < s->n; i++) {
		const struct sr_file *f = &s->files[i];
		double d = last_duration(f);

		if (d < 0 || (k == SLOWEST && d <= last_duration(top[k - 1])))
			continue;
		k += k < SLOWEST;
		for (j = k - 1; j > 0 && last_duration(top[j - 1]) < d; j--)
			top[j] = top[j - 1];
		top[j] = f;
	}
	if (k > 0)
		fputs("\nslowest files:\n", out);
	for (j = 0; j < k; j++)
		fprintf(out, "  %8.1fs  %s (estimate %.1fs)\n",
		        last_duration(top[j]), top[j]->path, top[j]->est_s);
}

void
sr_report_summary(FILE *out, const struct sr_suite *s,
                  const struct sr_run_info *ri, const struct sr_profile *prof,
                  int color)
{
	unsigned c[SR_FINAL_COUNT];

	sr_report_counts(s, c);
	print_counts(out, c, ri->interrupted, color);
	fprintf(out, " in %.1fs\n", ri->makespan_s);
	for (size_t i = 0; i < s->n; i++)
		if (sr_report_is_bad(s->files[i].final))
			print_failure(out, &s->files[i], prof, color);
	print_brief(out, s, SR_FINAL_FLAKY, color);
	print_leaks(out, s, color);
	if (ri->interrupted)
		print_brief(out, s, SR_FINAL_PENDING, color);
	print_slowest(out, s);
	fprintf(out, "\nmakespan %.1fs", ri->makespan_s);
	if (ri->lower_bound_s > 0)
		fprintf(out, ", lower bound %.1fs (%.2fx)", ri->lower_bound_s,
		        ri->makespan_s / ri->lower_bound_s);
	if (ri->backups > 0)
		fprintf(out, ", %u backup attempt%s (%u answered first)",
		        ri->backups, ri->backups == 1 ? "" : "s",
		        ri->backup_wins);
	/* Last line, never coloured: scripts read it. */
	fputs("\n", out);
	print_counts(out, c, ri->interrupted, 0);
	fputs("\n", out);
}
