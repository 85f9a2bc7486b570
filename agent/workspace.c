/*
 * workspace.c - the fingerprint check, a bounded step at a time.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sr/err.h"
#include "sr/fingerprint.h"
#include "sr/path.h"
#include "sr/util.h"
#include "workspace.h"

int
sr_wscheck_init(struct sr_wscheck *w, const Shardrun__Welcome *welcome)
{
	size_t n = welcome->n_files;

	memset(w, 0, sizeof(*w));
	snprintf(w->commit, sizeof(w->commit), "%.40s", welcome->commit);
	w->paths = calloc(n ? n : 1, sizeof(*w->paths));
	w->hashes = calloc(n ? n : 1, sizeof(*w->hashes));
	if (w->paths == NULL || w->hashes == NULL) {
		sr_wscheck_free(w);
		return (SR_ENOMEM);
	}
	for (size_t i = 0; i < n; i++) {
		const Shardrun__FileHash *fh = welcome->files[i];

		if ((w->paths[i] = strdup(fh->path)) == NULL) {
			sr_wscheck_free(w);
			return (SR_ENOMEM);
		}
		w->n++;
		if (fh->hash.len == 32)
			memcpy(w->hashes[i], fh->hash.data, 32);
		else
			memset(w->hashes[i], 0, 32); /* can never match */
	}
	return (0);
}

void
sr_wscheck_free(struct sr_wscheck *w)
{
	for (size_t i = 0; w->paths != NULL && i < w->n; i++)
		free(w->paths[i]);
	free(w->paths);
	free(w->hashes);
	memset(w, 0, sizeof(*w));
}

static int
mismatch(struct sr_wscheck *w, const char *why, const char *file)
{
	w->why = why;
	w->file = file;
	return (-1);
}

static int
check_commit(struct sr_wscheck *w, const char *workspace)
{
	char mine[41];

	if (w->commit[0] == '\0' || sr_git_commit(workspace, mine) != 0 ||
	    strcmp(mine, w->commit) == 0)
		return (0);
	return (mismatch(w, "the workspace is at another commit than the run",
	                 w->commit));
}

static int
check_file(struct sr_wscheck *w, const char *workspace, size_t i)
{
	char path[PATH_MAX * 2];
	uint8_t h[SR_HASH_BYTES];

	if (sr_path_check(w->paths[i]) != 0)
		return (mismatch(w,
		                 "the run names a path outside any workspace",
		                 w->paths[i]));
	snprintf(path, sizeof(path), "%s/%s", workspace, w->paths[i]);
	if (sr_hash_file(path, h) != 0)
		return (mismatch(w,
		                 "a file of the run is missing from the "
		                 "workspace",
		                 w->paths[i]));
	if (memcmp(h, w->hashes[i], SR_HASH_BYTES) != 0)
		return (mismatch(w,
		                 "a file of the run differs from the workspace",
		                 w->paths[i]));
	return (0);
}

int
sr_wscheck_step(struct sr_wscheck *w, const char *workspace, double budget_s)
{
	double end = sr_now() + budget_s;

	if (w->next == 0 && check_commit(w, workspace) != 0)
		return (-1);
	while (w->next < w->n) {
		if (check_file(w, workspace, w->next) != 0)
			return (-1);
		w->next++;
		if (sr_now() >= end)
			return (w->next == w->n ? 1 : 0);
	}
	return (1);
}
