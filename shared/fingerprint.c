/*
 * fingerprint.c - file hashes and the checked-out commit.
 */
#include <ctype.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "sr/err.h"
#include "sr/fingerprint.h"
#include "sr/util.h"

int
sr_hash_file(const char *path, uint8_t out[SR_HASH_BYTES])
{
	crypto_generichash_state st;
	uint8_t buf[65536];
	ssize_t n;
	int fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return (SR_ENOENT);
	crypto_generichash_init(&st, NULL, 0, SR_HASH_BYTES);
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		crypto_generichash_update(&st, buf, (size_t) n);
	close(fd);
	if (n < 0)
		return (SR_EIO);
	crypto_generichash_final(&st, out, SR_HASH_BYTES);
	return (0);
}

static bool
is_sha(const char *s)
{
	for (int i = 0; i < 40; i++)
		if (!isxdigit((unsigned char) s[i]))
			return (false);
	return (true);
}

/* First line of a small file, trimmed. */
static int
read_line(const char *path, char *out, size_t outsz)
{
	char *text;
	int rv;

	if ((rv = sr_read_file(path, 4096, &text, NULL)) != 0)
		return (rv);
	text[strcspn(text, "\r\n")] = '\0';
	snprintf(out, outsz, "%s", text);
	free(text);
	return (0);
}

/* Look a ref up in packed-refs ("SHA REF" lines). */
static int
packed_ref(const char *gitdir, const char *ref, char out[41])
{
	char path[4096];
	char *text;
	char *save = NULL;
	int rv = SR_ENOENT;

	if (snprintf(path, sizeof(path), "%s/packed-refs", gitdir) >=
	        (int) sizeof(path) ||
	    sr_read_file(path, 64u << 20, &text, NULL) != 0)
		return (SR_ENOENT);
	for (char *l = strtok_r(text, "\n", &save); l != NULL;
	     l = strtok_r(NULL, "\n", &save)) {
		if (strlen(l) > 41 && is_sha(l) && l[40] == ' ' &&
		    strcmp(l + 41, ref) == 0) {
			memcpy(out, l, 40);
			out[40] = '\0';
			rv = 0;
			break;
		}
	}
	free(text);
	return (rv);
}

int
sr_git_commit(const char *root, char out[41])
{
	char gitdir[4096];
	char head[512];
	char path[4608];
	char sha[64];

	snprintf(gitdir, sizeof(gitdir), "%s/.git", root);
	/* A worktree or submodule: .git is a file "gitdir: PATH". */
	if (read_line(gitdir, head, sizeof(head)) == 0 &&
	    strncmp(head, "gitdir: ", 8) == 0)
		snprintf(gitdir, sizeof(gitdir), "%s", head + 8);
	snprintf(path, sizeof(path), "%s/HEAD", gitdir);
	if (read_line(path, head, sizeof(head)) != 0)
		return (SR_ENOENT);
	if (strlen(head) == 40 && is_sha(head)) {
		memcpy(out, head, 41);
		return (0);
	}
	if (strncmp(head, "ref: ", 5) != 0)
		return (SR_ENOENT);
	snprintf(path, sizeof(path), "%s/%s", gitdir, head + 5);
	if (read_line(path, sha, sizeof(sha)) == 0 && strlen(sha) == 40 &&
	    is_sha(sha)) {
		memcpy(out, sha, 41);
		return (0);
	}
	return (packed_ref(gitdir, head + 5, out));
}
