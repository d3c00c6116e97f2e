/*
 * Firecracker's hybrid vsock host protocol, the part that is pure text: a
 * host client of <vm>/vsock.sock writes "CONNECT <port>\n" (keyword in any
 * case, at most 32 bytes with the newline) and gets "OK <hostport>\n" once
 * the guest accepts. Shared by the vsock device and the tests.
 */
#ifndef EMBER_HYBRID_PROTO_H
#define EMBER_HYBRID_PROTO_H

#include <stddef.h>
#include <stdint.h>

#define HYBRID_LINE_MAX 32	/* bytes, including the newline */

/* Parses one line without its '\n' (a trailing '\r' is tolerated).
 * 0 with *port, or -EINVAL. */
int hybrid_parse_connect(const char *line, size_t len, uint32_t *port);
/* Writes "OK <port>\n" into buf; returns its length. */
int hybrid_format_ok(uint32_t host_port, char *buf, size_t len);

#endif
