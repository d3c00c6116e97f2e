/*
 * libFuzzer harness for common/resolv.c: arbitrary bytes as a resolv.conf.
 * Whatever the input, every address that comes out must be a NUL-terminated
 * canonical numeric address (it parses back with inet_pton and prints the
 * same), none is loopback, none repeats, and no more than asked come out.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "resolv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define OUT_MAX 4

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char out[OUT_MAX + 1][INET6_ADDRSTRLEN];
	char again[INET6_ADDRSTRLEN];
	unsigned char addr[16];
	size_t n = 0, stubs = 0;
	int family;

	memset(out, 'X', sizeof(out));
	resolv_parse_nameservers((const char *)data, size, out, OUT_MAX, &n,
	    &stubs);
	if (n > OUT_MAX || out[OUT_MAX][0] != 'X')
		abort();
	for (size_t i = 0; i < n; i++) {
		if (memchr(out[i], '\0', INET6_ADDRSTRLEN) == NULL)
			abort();
		family = strchr(out[i], ':') != NULL ? AF_INET6 : AF_INET;
		if (inet_pton(family, out[i], addr) != 1)
			abort();
		if (inet_ntop(family, addr, again, sizeof(again)) == NULL ||
		    strcmp(again, out[i]) != 0)
			abort();
		if (family == AF_INET && addr[0] == 127)
			abort();
		if (strcmp(out[i], "::1") == 0)
			abort();
		for (size_t j = 0; j < i; j++)
			if (strcmp(out[i], out[j]) == 0)
				abort();
	}
	return 0;
}
