/*
 * profile.h - how to run one file: the command template and the meaning of
 * its exit codes.
 *
 * A profile is configuration held by each agent; the wire carries only
 * file paths, never a command line. The template is an argv (no shell) with
 * placeholders substituted per attempt:
 *   {file}   the file (relative to the workspace); an argument that is
 *            exactly "{file}" expands to the unit's selectors when a chunk
 *            of test ids is run
 *   {junit}  path of the JUnit XML report the attempt should write
 *   {tmp}    the attempt's private temp directory
 *   {python} the interpreter chosen for the pytest profile
 * Exit codes map to attempt outcomes (Shardrun__Outcome values) or to
 * SR_EXIT_TRANSIENT: "retry if the file is still present" (pytest's 4).
 *
 * Ownership: a profile owns its strings; sr_profile_free releases them.
 * Read-only after construction, so it may be shared between threads.
 */
#ifndef SR_PROFILE_H
#define SR_PROFILE_H

#include <stdbool.h>
#include <stddef.h>

#include "sr/util.h"

#define SR_EXIT_TRANSIENT 100
#define SR_PROFILE_MAXMAP 32

struct sr_exitmap {
	int code;
	int outcome;
};

struct sr_profile {
	char name[16];       /* "pytest" or "generic" */
	char python[512];    /* pytest: chosen interpreter */
	struct sr_strv argv; /* template */
	struct sr_exitmap map[SR_PROFILE_MAXMAP];
	size_t nmap;
	int other;  /* outcome of an unmapped exit code */
	bool junit; /* the template writes {junit} */
};

/* pytest: {python} -m pytest -q -p no:cacheprovider --junitxml={junit}
 * {file}; exits 0 passed, 1 failed, 2 and 3 error, 4 transient, 5 no tests.
 * python may be NULL: sr_find_python() picks one. */
int sr_profile_pytest(struct sr_profile *p, const char *python);
/*
 * generic: tmpl is split like a shell would split words (quotes and
 * backslashes, no expansion) and must contain {file}. exitmap is NULL or
 * "CODE=OUTCOME,..." with OUTCOME one of passed, failed, no_tests,
 * transient, error, and "*" for any other code (default: 0=passed,
 * *=failed).
 */
int sr_profile_generic(struct sr_profile *p, const char *tmpl,
                       const char *exitmap);
void sr_profile_free(struct sr_profile *p);

/* Build one attempt's argv from the template. files holds one file or a
 * chunk's selectors. out is initialised by the caller and filled here. */
int sr_profile_argv(const struct sr_profile *p, const struct sr_strv *files,
                    const char *junit, const char *tmp, struct sr_strv *out);
/* Outcome for a normal exit code (never for a signal). */
int sr_profile_classify(const struct sr_profile *p, int exit_code);
/* A command a person can paste to rerun one file locally. */
int sr_profile_repro(const struct sr_profile *p, const char *file,
                     struct sr_buf *out);

/* Split a command line into words: '...' literal, "..." with \" \\ escapes,
 * backslash escapes outside quotes; no variables, globs or operators.
 * SR_EINVAL on an unterminated quote. */
int sr_split_words(const char *s, struct sr_strv *out);

/*
 * Find an interpreter that can import pytest: $SHARDRUN_PYTHON, else
 * python3 on PATH if it imports pytest, else /usr/bin/python3. On failure
 * returns SR_ENOENT and writes into why which ones were tried.
 */
int sr_find_python(char *out, size_t outsz, char *why, size_t whysz);

/* Outcome names: "passed", "failed", "no_tests", "crashed", "timeout",
 * "missing", "error", "refused". */
const char *sr_outcome_name(int outcome);

#endif /* SR_PROFILE_H */
