/*
 * Golden-file runner shared by check_spec.c and check_config.c. Every
 * pass-*.yaml in a directory must parse; every fail-*.yaml must fail with
 * EK_INVALID_SPEC and the message on the first line of its sibling
 * fail-*.expected (and the hint on the second line, when there is one).
 * Files are parsed from memory under their base name so messages do not
 * depend on where the tree is. EMBER_GOLDEN_UPDATE=1 rewrites the
 * .expected files instead of comparing; review the diff before committing.
 */
#ifndef EMBER_TESTS_GOLDEN_YAML_H
#define EMBER_TESTS_GOLDEN_YAML_H

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "error.h"

typedef int (*golden_parse_fn)(const char *text, size_t len,
    const char *filename, struct ember_error *err);

static char *
golden_read(const char *path, size_t *lenp)
{
	FILE *f;
	char *buf;
	long n;

	if ((f = fopen(path, "rb")) == NULL)
		return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc((size_t)n + 1);
	ck_assert_ptr_nonnull(buf);
	ck_assert_uint_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = '\0';
	fclose(f);
	if (lenp != NULL)
		*lenp = (size_t)n;
	return buf;
}

static int
golden_filter(const struct dirent *d)
{
	size_t n = strlen(d->d_name);

	return n > 5 && strcmp(d->d_name + n - 5, ".yaml") == 0 &&
	    (strncmp(d->d_name, "pass-", 5) == 0 ||
	    strncmp(d->d_name, "fail-", 5) == 0);
}

/* Runs every case in dir; counts them so callers can insist on coverage. */
static void
golden_run(const char *dir, golden_parse_fn parse, int *npass, int *nfail)
{
	struct dirent **names;
	struct ember_error err;
	char path[4096], *text, *expected, *hint;
	size_t len;
	int n, r;
	bool update = getenv("EMBER_GOLDEN_UPDATE") != NULL;
	FILE *f;

	*npass = *nfail = 0;
	n = scandir(dir, &names, golden_filter, alphasort);
	ck_assert_msg(n >= 0, "cannot read %s", dir);
	for (int i = 0; i < n; i++) {
		const char *name = names[i]->d_name;

		snprintf(path, sizeof(path), "%s/%s", dir, name);
		text = golden_read(path, &len);
		ck_assert_msg(text != NULL, "cannot read %s", path);
		ember_error_clear(&err);
		r = parse(text, len, name, &err);
		free(text);
		if (strncmp(name, "pass-", 5) == 0) {
			ck_assert_msg(r == 0, "%s should parse, got: %s", name,
			    err.message);
			(*npass)++;
			free(names[i]);
			continue;
		}
		ck_assert_msg(r == -1, "%s should fail but parsed", name);
		ck_assert_int_eq(err.kind, EK_INVALID_SPEC);
		snprintf(path + strlen(path) - 5, 10, ".expected");
		if (update) {
			ck_assert_ptr_nonnull(f = fopen(path, "w"));
			fprintf(f, "%s\n", err.message);
			if (err.hint[0] != '\0')
				fprintf(f, "%s\n", err.hint);
			fclose(f);
		}
		expected = golden_read(path, NULL);
		ck_assert_msg(expected != NULL, "%s has no .expected file", name);
		if ((hint = strchr(expected, '\n')) != NULL) {
			*hint++ = '\0';
			hint[strcspn(hint, "\n")] = '\0';
		}
		ck_assert_msg(strcmp(err.message, expected) == 0,
		    "%s:\n  expected: %s\n  got:      %s", name, expected,
		    err.message);
		if (hint != NULL && *hint != '\0')
			ck_assert_msg(strcmp(err.hint, hint) == 0,
			    "%s hint:\n  expected: %s\n  got:      %s", name, hint,
			    err.hint);
		free(expected);
		(*nfail)++;
		free(names[i]);
	}
	free(names);
}

#endif
