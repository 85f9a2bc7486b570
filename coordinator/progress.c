/*
 * progress.c - the live line and the plain progress lines.
 */
#include <stdio.h>

#include "progress.h"
#include "sr/util.h"

#define RED    "\033[31m"
#define GREEN  "\033[32m"
#define YELLOW "\033[33m"
#define RESET  "\033[0m"

void
sr_progress_init(struct sr_progress *p, const struct sr_suite *s, bool tty,
                 bool color)
{
	*p = (struct sr_progress){0};
	p->tty = tty;
	p->color = color && tty;
	p->total = s->n;
	p->t0 = sr_now();
	for (size_t i = 0; i < s->n; i++)
		p->left_s += s->files[i].est_s;
}

static const char *
paint(const struct sr_progress *p, int final)
{
	if (!p->color)
		return ("");
	if (final == SR_FINAL_PASSED)
		return (GREEN);
	if (final == SR_FINAL_FLAKY)
		return (YELLOW);
	return (RED);
}

static void
clear_line(struct sr_progress *p)
{
	if (p->drawn)
		fputs("\r\033[K", stderr);
	p->drawn = false;
}

void
sr_progress_file(struct sr_progress *p, const struct sr_file *f)
{
	const struct sr_attempt *at = sr_file_last(f);
	size_t decile;

	p->done++;
	p->left_s -= f->est_s;
	if (f->final != SR_FINAL_PASSED && f->final != SR_FINAL_FLAKY)
		p->failed++;
	if (f->final != SR_FINAL_PASSED) {
		clear_line(p);
		fprintf(stderr, "%s%-7s%s %s (%.2fs, %u attempt%s)\n",
		        paint(p, f->final), sr_final_name(f->final),
		        p->color ? RESET : "", f->path,
		        at ? at->duration_s : 0.0, f->natt,
		        f->natt == 1 ? "" : "s");
	}
	decile = p->total ? p->done * 10 / p->total : 10;
	if (!p->tty && decile > p->last_decile) {
		p->last_decile = decile;
		fprintf(stderr, "[%zu/%zu] %zu failed, %.1fs\n", p->done,
		        p->total, p->failed, sr_now() - p->t0);
	}
}

void
sr_progress_tick(struct sr_progress *p, double now)
{
	if (!p->tty || now - p->last_draw < 0.1)
		return;
	p->last_draw = now;
	fprintf(stderr,
	        "\r\033[K[%*zu/%zu] %s%zu failed%s  slots %u  %.0fs  "
	        "ETA %.0fs",
	        p->total >= 1000 ? 4 : 3, p->done, p->total,
	        p->failed && p->color ? RED : "", p->failed,
	        p->failed && p->color ? RESET : "", p->slots, now - p->t0,
	        (p->left_s > 0 ? p->left_s : 0) / (p->slots ? p->slots : 1));
	fflush(stderr);
	p->drawn = true;
}

void
sr_progress_end(struct sr_progress *p)
{
	clear_line(p);
	fflush(stderr);
}
