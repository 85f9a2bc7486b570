/*
 * collect_cfg.h - the part of pytest's configuration that decides which
 * files a suite has. Private to the collect*.c files.
 *
 * sr_pycfg_load picks the file pytest would pick in the workspace root:
 * the first of pytest.ini (used even without a [pytest] section),
 * .pytest.ini, pyproject.toml ([tool.pytest.ini_options]), tox.ini
 * ([pytest]) and setup.cfg ([tool:pytest]) that has a pytest section. It
 * takes testpaths, python_files and norecursedirs from it and warns about
 * the keys that change what pytest collects but that fast collection does
 * not honour (python_classes, python_functions, paths or collection
 * options in addopts, ...). Only as much ini and TOML is parsed as that
 * needs.
 *
 * Ownership: the lists belong to the struct, sr_pycfg_free releases them;
 * root is borrowed and must outlive it. Not thread safe.
 */
#ifndef SR_COLLECT_CFG_H
#define SR_COLLECT_CFG_H

#include "sr/util.h"

struct sr_pycfg {
	const char *file;            /* the file in use, NULL if none */
	const char *root;            /* the workspace root */
	struct sr_strv testpaths;    /* globs; empty if not set */
	struct sr_strv python_files; /* default "test_*.py", "*_test.py" */
	struct sr_strv norecurse;    /* default pytest's norecursedirs */
};

/* Defaults, then whatever the configuration file sets. */
int sr_pycfg_load(struct sr_pycfg *c, const char *root);
void sr_pycfg_free(struct sr_pycfg *c);

#endif /* SR_COLLECT_CFG_H */
