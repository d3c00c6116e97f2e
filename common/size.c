/*
 * Size strings: digits, an optional decimal fraction, and a unit that is
 * required so "512" cannot silently mean bytes to one reader and MiB to
 * another. K, M, G and T (alone or followed by "iB" or "B", any case) are
 * all powers of 1024. A fraction is accepted only when the result is a
 * whole number of bytes ("1.5G" yes, "1.3K" no). The string is checked for
 * syntax before any arithmetic, so junk is -EINVAL even when it is huge.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "size.h"

#define FRAC_DIGITS_MAX 19	/* 10^19 still fits a uint64_t */

static bool
is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* Binary shift for a unit, or -1. */
static int
unit_shift(const char *u)
{
	int shift;

	switch (*u) {
	case 'k': case 'K':
		shift = 10;
		break;
	case 'm': case 'M':
		shift = 20;
		break;
	case 'g': case 'G':
		shift = 30;
		break;
	case 't': case 'T':
		shift = 40;
		break;
	default:
		return -1;
	}
	u++;
	if (*u == 'i' || *u == 'I')
		u++;
	else if (*u == '\0')
		return shift;
	if (*u != 'b' && *u != 'B')
		return -1;
	return u[1] == '\0' ? shift : -1;
}

int
size_parse(const char *s, uint64_t *bytes)
{
	const char *ip, *fp = NULL, *u;
	size_t ilen, flen = 0;
	uint64_t whole = 0, frac = 0, pow5 = 1, mult, part;
	int shift;

	if (s == NULL || bytes == NULL)
		return -EINVAL;

	/* Syntax: DIGITS [ "." DIGITS ] UNIT */
	ip = s;
	for (u = s; is_digit(*u); u++)
		;
	ilen = (size_t)(u - ip);
	if (ilen == 0)
		return -EINVAL;
	if (*u == '.') {
		fp = ++u;
		for (; is_digit(*u); u++)
			;
		flen = (size_t)(u - fp);
		if (flen == 0)
			return -EINVAL;
	}
	if ((shift = unit_shift(u)) < 0)
		return -EINVAL;
	mult = (uint64_t)1 << shift;

	for (size_t i = 0; i < ilen; i++) {
		unsigned d = (unsigned)(ip[i] - '0');

		if (whole > (UINT64_MAX - d) / 10)
			return -ERANGE;
		whole = whole * 10 + d;
	}
	if (whole > UINT64_MAX / mult)
		return -ERANGE;
	whole *= mult;

	/* "1.50G" is "1.5G". */
	while (flen > 0 && fp[flen - 1] == '0')
		flen--;
	if (flen == 0) {
		*bytes = whole;
		return 0;
	}
	/*
	 * frac / 10^flen * 2^shift is whole only if 5^flen divides frac and
	 * flen <= shift (frac ends in 5, so it is odd). Then the bytes are
	 * (frac / 5^flen) << (shift - flen).
	 */
	if (flen > FRAC_DIGITS_MAX || flen > (size_t)shift)
		return -EINVAL;
	for (size_t i = 0; i < flen; i++) {
		frac = frac * 10 + (unsigned)(fp[i] - '0');
		pow5 *= 5;
	}
	if (frac % pow5 != 0)
		return -EINVAL;
	part = (frac / pow5) << (shift - (int)flen);
	if (whole > UINT64_MAX - part)
		return -ERANGE;
	*bytes = whole + part;
	return 0;
}

int
size_parse_mib(const char *s, uint64_t *mib)
{
	uint64_t bytes;
	int r;

	if (mib == NULL)
		return -EINVAL;
	if ((r = size_parse(s, &bytes)) < 0)
		return r;
	if (bytes % (1024 * 1024) != 0)
		return -EINVAL;
	*mib = bytes / (1024 * 1024);
	return 0;
}

void
size_format(uint64_t bytes, char *buf, int len)
{
	static const struct {
		char unit;
		int shift;
	} units[] = { { 'T', 40 }, { 'G', 30 }, { 'M', 20 }, { 'K', 10 } };
	size_t i;

	if (buf == NULL || len <= 0)
		return;
	if (bytes != 0) {
		for (i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
			uint64_t mask = ((uint64_t)1 << units[i].shift) - 1;

			if ((bytes & mask) == 0) {
				snprintf(buf, (size_t)len, "%llu%c",
				    (unsigned long long)(bytes >> units[i].shift),
				    units[i].unit);
				return;
			}
		}
	}
	snprintf(buf, (size_t)len, "%llu", (unsigned long long)bytes);
}
