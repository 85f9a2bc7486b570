/*
 * log.c - leveled logging to stderr, one write(2) per line.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "sr/log.h"

static int level = SR_LOG_WARN;
static char prog[32] = "shardrun";

void
sr_log_init(const char *progname)
{
	const char *env = getenv("SHARDRUN_LOG");

	snprintf(prog, sizeof(prog), "%s", progname);
	if (env == NULL)
		return;
	if (strcasecmp(env, "error") == 0)
		level = SR_LOG_ERROR;
	else if (strcasecmp(env, "warn") == 0)
		level = SR_LOG_WARN;
	else if (strcasecmp(env, "info") == 0)
		level = SR_LOG_INFO;
	else if (strcasecmp(env, "debug") == 0)
		level = SR_LOG_DEBUG;
}

void
sr_log_set_level(int l)
{
	level = l;
}

int
sr_log_level(void)
{
	return (level);
}

/* One line, "prog: [tag: ]text\n", with one write(2). */
static void
vlog(const char *tag, const char *fmt, va_list ap)
{
	char line[2048];
	int n;

	n = snprintf(line, sizeof(line), "%s: %s%s", prog, tag ? tag : "",
	             tag ? ": " : "");
	n += vsnprintf(line + n, sizeof(line) - (size_t) n - 1, fmt, ap);
	if (n > (int) sizeof(line) - 2)
		n = (int) sizeof(line) - 2;
	line[n++] = '\n';
	(void) !write(STDERR_FILENO, line, (size_t) n);
}

void
sr_log(int l, const char *fmt, ...)
{
	static const char *const tags[] = {"error", "warning", "info", "debug"};
	va_list ap;

	if (l > level)
		return;
	va_start(ap, fmt);
	vlog(tags[l], fmt, ap);
	va_end(ap);
}

void
sr_notice(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(NULL, fmt, ap);
	va_end(ap);
}
