/*
 * Base64 (RFC 4648, standard alphabet, with padding). encode returns a
 * malloc'd NUL-terminated string and its length (out_len may be NULL), or
 * NULL when memory runs out. decode accepts input with or without padding
 * and nothing else (no whitespace); it returns 0 with a malloc'd buffer
 * (never NULL, even for empty output) or -EINVAL / -ENOMEM.
 */
#ifndef EMBER_BASE64_H
#define EMBER_BASE64_H

#include <stddef.h>

char *base64_encode(const void *data, size_t len, size_t *out_len);
int base64_decode(const char *s, size_t len, unsigned char **out, size_t *out_len);
/* Bytes that len characters of base64 decode to, at most. */
size_t base64_decoded_max(size_t len);

#endif
