/*
 * log.h - leveled logging to stderr.
 *
 * One global level (SR_LOG_WARN by default, set from -v/-q or the
 * SHARDRUN_LOG environment variable: error, warn, info, debug). Each line is
 * prefixed with the program name set by sr_log_init(). Thread safe: a line is
 * written with one write(2).
 */
#ifndef SR_LOG_H
#define SR_LOG_H

enum sr_log_level {
	SR_LOG_ERROR = 0,
	SR_LOG_WARN = 1,
	SR_LOG_INFO = 2,
	SR_LOG_DEBUG = 3,
};

void sr_log_init(const char *progname);
void sr_log_set_level(int level);
int sr_log_level(void);
void sr_log(int level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* A line other programs read (an address, say): written at every level,
 * without a level tag. */
void sr_notice(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#define sr_error(...) sr_log(SR_LOG_ERROR, __VA_ARGS__)
#define sr_warn(...)  sr_log(SR_LOG_WARN, __VA_ARGS__)
#define sr_info(...)  sr_log(SR_LOG_INFO, __VA_ARGS__)
#define sr_debug(...) sr_log(SR_LOG_DEBUG, __VA_ARGS__)

#endif /* SR_LOG_H */
