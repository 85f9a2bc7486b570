/*
 * path.c - validation of file paths that cross a trust boundary.
 *
 * Every path here may come from the network, so the checks are strict and
 * syntactic first: a path that is not already in canonical relative form is
 * refused rather than repaired (sr_path_normalize repairs, but only for
 * paths a person typed). Only then is the file system asked, and the answer
 * of realpath(3) is compared with the workspace root component-wise, so
 * "/ws2/x" is not mistaken for a file below "/ws".
 *
 * A path that does not resolve is classified by walking its prefixes with
 * lstat(2): it is SR_ENOENT only when an existing directory inside the
 * workspace lacks the next component; a dangling symbolic link (whose
 * target cannot be checked) or a missing file below a link that leads out
 * of the workspace is SR_EPATH.
 */
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "sr/err.h"
#include "sr/path.h"

static bool
bad_byte(unsigned char c)
{
	return (c < 0x20 || c == 0x7f);
}

/* Is the component [s, s+n) one that a canonical path must not contain? */
static bool
bad_component(const char *s, size_t n)
{
	return (n == 0 || (n == 1 && s[0] == '.') ||
	        (n == 2 && s[0] == '.' && s[1] == '.'));
}

int
sr_path_check(const char *rel)
{
	size_t len;
	const char *start;

	if (rel == NULL || rel[0] == '\0' || rel[0] == '/')
		return (SR_EPATH);
	if ((len = strnlen(rel, PATH_MAX)) >= PATH_MAX)
		return (SR_EPATH);
	start = rel;
	for (const char *s = rel;; s++) {
		if (*s != '/' && *s != '\0') {
			if (bad_byte((unsigned char) *s))
				return (SR_EPATH);
			continue;
		}
		if (bad_component(start, (size_t) (s - start)))
			return (SR_EPATH);
		if (*s == '\0')
			break;
		start = s + 1;
	}
	return (0);
}

int
sr_path_normalize(const char *in, char *out, size_t outsz)
{
	char buf[PATH_MAX];
	size_t n = 0;
	const char *s = in;
	int rv;

	if (in == NULL || in[0] == '/' || strnlen(in, PATH_MAX) >= PATH_MAX)
		return (SR_EPATH);
	while (*s != '\0') {
		size_t len = strcspn(s, "/");

		if (len == 2 && s[0] == '.' && s[1] == '.')
			return (SR_EPATH);
		if (len > 0 && !(len == 1 && s[0] == '.')) {
			if (n > 0)
				buf[n++] = '/';
			memcpy(buf + n, s, len);
			n += len;
		}
		s += len;
		while (*s == '/')
			s++;
	}
	buf[n] = '\0';
	/* Control characters and emptiness are still refused here. */
	if ((rv = sr_path_check(buf)) != 0)
		return (rv);
	if (n >= outsz)
		return (SR_ETOOBIG);
	memcpy(out, buf, n + 1);
	return (0);
}

/* Root length without trailing slashes: 0 for "/" itself. */
static size_t
root_len(const char *root)
{
	size_t n = strlen(root);

	while (n > 0 && root[n - 1] == '/')
		n--;
	return (n);
}

/* Is the resolved absolute path abs the root or below it? */
static bool
inside(const char *root, const char *abs)
{
	size_t n = root_len(root);

	if (abs[0] != '/')
		return (false);
	return (strncmp(abs, root, n) == 0 &&
	        (abs[n] == '\0' || abs[n] == '/'));
}

static int
errno_to_err(int e)
{
	switch (e) {
	case ENOENT:
	case ENOTDIR:
		return (SR_ENOENT);
	case ELOOP:
	case ENAMETOOLONG:
		return (SR_EPATH);
	case ENOMEM:
		return (SR_ENOMEM);
	default:
		return (SR_EIO);
	}
}

/* realpath(path) must exist and lie inside root. */
static int
check_inside(const char *root, const char *path)
{
	char res[PATH_MAX];

	if (realpath(path, res) == NULL)
		return (errno_to_err(errno));
	return (inside(root, res) ? 0 : SR_EPATH);
}

/*
 * realpath failed with ENOENT or ENOTDIR on full, "root/rel". Find the
 * first prefix of rel that does not exist and decide whether that is a
 * missing file inside the workspace or an escape.
 */
static int
classify_missing(const char *root, char *full, size_t relpos)
{
	struct stat st;
	char *s = full + relpos;
	int rv;

	for (;;) {
		char *slash = strchr(s, '/');
		char save;

		if (slash == NULL)
			slash = s + strlen(s);
		save = *slash;
		*slash = '\0';
		rv = lstat(full, &st) != 0 ? errno_to_err(errno) : 0;
		if (rv == 0 && S_ISLNK(st.st_mode) && stat(full, &st) != 0)
			rv = SR_EPATH; /* dangling link: target unknowable */
		if (rv == SR_ENOENT) {
			/* The parent exists; it decides inside or outside. */
			if (s == full + relpos)
				return (SR_ENOENT); /* the parent is root */
			s[-1] = '\0';
			rv = check_inside(root, full);
			return (rv != 0 ? rv : SR_ENOENT);
		}
		*slash = save;
		if (rv != 0 || save == '\0')
			return (rv != 0 ? rv : SR_ENOENT);
		s = slash + 1;
	}
}

int
sr_path_resolve(const char *root, const char *rel, char *out, size_t outsz)
{
	char full[PATH_MAX];
	char res[PATH_MAX];
	size_t rl;
	int n;

	if (sr_path_check(rel) != 0)
		return (SR_EPATH);
	if (root == NULL || root[0] != '/')
		return (SR_EINVAL);
	rl = root_len(root);
	n = snprintf(full, sizeof(full), "%.*s/%s", (int) rl, root, rel);
	if (n < 0 || (size_t) n >= sizeof(full))
		return (SR_EPATH);
	if (realpath(full, res) == NULL) {
		int rv = errno_to_err(errno);

		if (rv != SR_ENOENT)
			return (rv);
		return (classify_missing(root, full, rl + 1));
	}
	if (!inside(root, res))
		return (SR_EPATH);
	if (strlen(res) >= outsz)
		return (SR_ETOOBIG);
	memcpy(out, res, strlen(res) + 1);
	return (0);
}
