/*
 * Size strings as users write them in YAML and on the command line: a
 * number and a unit, which is required ("512M", "2G", "1.5G", "64MiB",
 * "10GB" all binary multiples). Overflow and junk are errors.
 */
#ifndef EMBER_SIZE_H
#define EMBER_SIZE_H

#include <stdint.h>

/* Parses s into bytes. Returns 0, -EINVAL (syntax, missing unit) or -ERANGE. */
int size_parse(const char *s, uint64_t *bytes);
/* Parses s into whole MiB; -EINVAL also when not a whole number of MiB. */
int size_parse_mib(const char *s, uint64_t *mib);
/* Formats bytes as the shortest exact "NG"/"NM"/"NK"/"N" string. */
void size_format(uint64_t bytes, char *buf, int len);

#endif
