/*
 * Column-aligned text tables for emberctl's listings (vm list, vsock
 * allocations): a header row, then rows of strings; each column is as wide
 * as its widest cell, columns are two spaces apart, nothing trails a line.
 */
#ifndef EMBER_CLIENT_TABLE_H
#define EMBER_CLIENT_TABLE_H

#include <stdio.h>

struct table;

/* A table with ncols columns named by headers[0..ncols-1]; NULL on ENOMEM. */
struct table *table_new(int ncols, const char *const *headers);
void table_free(struct table *t);
/* Appends a row of ncols cells (copied; NULL prints as "-"). 0 or -ENOMEM. */
int table_add_row(struct table *t, const char *const *cells);
void table_print(const struct table *t, FILE *fp);

#endif
