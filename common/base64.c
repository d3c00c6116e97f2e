/*
 * Base64 (RFC 4648, standard alphabet) for the bytes that cross JSON:
 * command output and file chunks between emberctl, emberd and ember-agent.
 * No libraries: ember-agent compiles this file into its static binary.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#include "base64.h"

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *
base64_encode(const void *data, size_t len, size_t *out_len)
{
	const unsigned char	*p = data;
	size_t			 i, o = 0;
	uint32_t		 v;
	char			*s;

	if (len > (SIZE_MAX - 1) / 4 * 3 - 3)
		return NULL;
	if ((s = malloc((len + 2) / 3 * 4 + 1)) == NULL)
		return NULL;
	for (i = 0; i + 2 < len; i += 3) {
		v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
		s[o++] = b64_alphabet[v >> 18];
		s[o++] = b64_alphabet[(v >> 12) & 63];
		s[o++] = b64_alphabet[(v >> 6) & 63];
		s[o++] = b64_alphabet[v & 63];
	}
	if (i < len) {
		v = (uint32_t)p[i] << 16;
		if (i + 1 < len)
			v |= (uint32_t)p[i + 1] << 8;
		s[o++] = b64_alphabet[v >> 18];
		s[o++] = b64_alphabet[(v >> 12) & 63];
		s[o++] = i + 1 < len ? b64_alphabet[(v >> 6) & 63] : '=';
		s[o++] = '=';
	}
	s[o] = '\0';
	if (out_len != NULL)
		*out_len = o;
	return s;
}

/* The 6-bit value of base64 character c, or -1. */
static int
b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

size_t
base64_decoded_max(size_t len)
{
	return len / 4 * 3 + (len % 4 == 0 ? 0 : len % 4 - 1);
}

int
base64_decode(const char *s, size_t len, unsigned char **out,
    size_t *out_len)
{
	unsigned char	*buf;
	size_t		 i, o = 0, pad = 0;
	uint32_t	 v = 0;
	int		 d, n = 0;

	*out = NULL;
	*out_len = 0;
	/* Padding: only at the end, only to a multiple of four. */
	while (pad < 2 && pad < len && s[len - 1 - pad] == '=')
		pad++;
	if (pad > 0 && len % 4 != 0)
		return -EINVAL;
	len -= pad;
	if (len % 4 == 1)
		return -EINVAL;
	if ((buf = malloc(base64_decoded_max(len) + 1)) == NULL)
		return -ENOMEM;
	for (i = 0; i < len; i++) {
		if ((d = b64_value((unsigned char)s[i])) < 0) {
			free(buf);
			return -EINVAL;
		}
		v = v << 6 | (uint32_t)d;
		if (++n == 4) {
			buf[o++] = (unsigned char)(v >> 16);
			buf[o++] = (unsigned char)(v >> 8);
			buf[o++] = (unsigned char)v;
			v = 0;
			n = 0;
		}
	}
	if (n == 2) {
		buf[o++] = (unsigned char)(v >> 4);
	} else if (n == 3) {
		buf[o++] = (unsigned char)(v >> 10);
		buf[o++] = (unsigned char)(v >> 2);
	}
	*out = buf;
	*out_len = o;
	return 0;
}
