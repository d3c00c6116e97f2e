/*
 * Text tables for emberctl. Cells are copied in, widths are computed at
 * print time, so rows can be added in any order the caller likes.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "table.h"

struct table {
	int ncols;
	size_t nrows, caprows;
	char **cells;		/* (nrows + 1) * ncols; row 0 is the header */
};

static int
add_row(struct table *t, const char *const *cells)
{
	if (t->nrows + 1 >= t->caprows) {
		size_t ncap = t->caprows == 0 ? 8 : t->caprows * 2;
		char **n = realloc(t->cells, ncap * (size_t)t->ncols * sizeof(*n));

		if (n == NULL)
			return -ENOMEM;
		t->cells = n;
		t->caprows = ncap;
	}
	for (int i = 0; i < t->ncols; i++) {
		char *s = strdup(cells[i] != NULL ? cells[i] : "-");

		if (s == NULL) {
			for (int j = 0; j < i; j++)
				free(t->cells[t->nrows * (size_t)t->ncols + (size_t)j]);
			return -ENOMEM;
		}
		t->cells[t->nrows * (size_t)t->ncols + (size_t)i] = s;
	}
	t->nrows++;
	return 0;
}

struct table *
table_new(int ncols, const char *const *headers)
{
	struct table *t = calloc(1, sizeof(*t));

	if (t == NULL)
		return NULL;
	t->ncols = ncols;
	if (add_row(t, headers) < 0) {
		free(t);
		return NULL;
	}
	return t;
}

void
table_free(struct table *t)
{
	if (t == NULL)
		return;
	for (size_t i = 0; i < t->nrows * (size_t)t->ncols; i++)
		free(t->cells[i]);
	free(t->cells);
	free(t);
}

int
table_add_row(struct table *t, const char *const *cells)
{
	return add_row(t, cells);
}

void
table_print(const struct table *t, FILE *fp)
{
	size_t *width = calloc((size_t)t->ncols, sizeof(*width));

	if (width == NULL)
		return;
	for (size_t r = 0; r < t->nrows; r++)
		for (int c = 0; c < t->ncols; c++) {
			size_t w = strlen(t->cells[r * (size_t)t->ncols + (size_t)c]);

			if (w > width[c])
				width[c] = w;
		}
	for (size_t r = 0; r < t->nrows; r++) {
		for (int c = 0; c < t->ncols; c++) {
			const char *s = t->cells[r * (size_t)t->ncols + (size_t)c];

			if (c == t->ncols - 1)
				fprintf(fp, "%s\n", s);
			else
				fprintf(fp, "%-*s  ", (int)width[c], s);
		}
	}
	free(width);
}
