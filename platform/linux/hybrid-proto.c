/*
 * CONNECT line parsing and OK line formatting (see hybrid-proto.h). The
 * rules follow Firecracker's muxer: words split on whitespace, the keyword
 * compared without case, the port a decimal u32. Port 0xFFFFFFFF
 * (VMADDR_PORT_ANY) names no listener and is refused.
 */
#include <errno.h>
#include <stdio.h>
#include <strings.h>

#include "hybrid-proto.h"

static int
is_space(char c)
{
	return c == ' ' || c == '\t';
}

int
hybrid_parse_connect(const char *line, size_t len, uint32_t *port)
{
	size_t i = 0, start;
	uint64_t value = 0;

	if (len > 0 && line[len - 1] == '\r')
		len--;
	if (len + 1 > HYBRID_LINE_MAX)
		return -EINVAL;
	while (i < len && is_space(line[i]))
		i++;
	start = i;
	while (i < len && !is_space(line[i]))
		i++;
	if (i - start != 7 || strncasecmp(line + start, "connect", 7) != 0)
		return -EINVAL;
	while (i < len && is_space(line[i]))
		i++;
	start = i;
	while (i < len && line[i] >= '0' && line[i] <= '9') {
		value = value * 10 + (uint64_t)(line[i] - '0');
		if (value > UINT32_MAX)
			return -EINVAL;
		i++;
	}
	if (i == start)
		return -EINVAL;
	while (i < len && is_space(line[i]))
		i++;
	if (i != len || value == UINT32_MAX)
		return -EINVAL;
	*port = (uint32_t)value;
	return 0;
}

int
hybrid_format_ok(uint32_t host_port, char *buf, size_t len)
{
	return snprintf(buf, len, "OK %u\n", host_port);
}
