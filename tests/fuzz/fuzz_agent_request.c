/*
 * libFuzzer harness for ember-agent's request parser: every input is one
 * request line as the agent's transport would hand it over. Handles it and
 * aborts unless the reply is exactly one line of JSON, an object with a
 * boolean "ok" and, when not ok, a string "error". The same bytes also go
 * through the ember.echo command-line parser.
 *
 * tests/CMakeLists.txt links fuzz harnesses with ember-common only, so the
 * agent's core sources are included here rather than linked. agent_dry_run
 * is set: exec, read_file and write_file check their parameters (and
 * decode their base64) but run nothing and touch no file. Each input is
 * also decoded as base64, and what decodes must encode back to the same
 * text once padding is added.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/base64.c"
#include "../../packaging/agent/agent.c"
#include "../../packaging/agent/agent-ops.c"
#include "../../packaging/agent/agent-exec.c"
#include "../../packaging/agent/agent-files.c"
#include "../../packaging/agent/agent-net.c"
#include "../../packaging/agent/agent-workload.c"

static void
check_base64(const uint8_t *data, size_t size)
{
	unsigned char	*dec;
	size_t		 dec_len, enc_len;
	char		*enc;

	if (base64_decode((const char *)data, size, &dec, &dec_len) != 0)
		return;
	if (dec_len > base64_decoded_max(size))
		abort();
	if ((enc = base64_encode(dec, dec_len, &enc_len)) == NULL)
		abort();
	/* Same text up to padding; trailing bits may differ (not canonical). */
	if (enc_len < size || enc_len > size + 2 ||
	    (size >= 4 && memcmp(enc, data, size - size % 4 - (size % 4 == 0 ? 4 : 0)) != 0))
		abort();
	free(enc);
	free(dec);
}

static void
check_reply(const char *out, size_t len)
{
	json_t	*reply, *ok;

	if (len == 0 || out[len - 1] != '\n' || strlen(out) != len ||
	    memchr(out, '\n', len) != out + len - 1)
		abort();
	if ((reply = json_loadb(out, len, 0, NULL)) == NULL)
		abort();
	ok = json_object_get(reply, "ok");
	if (!json_is_boolean(ok))
		abort();
	if (json_is_false(ok) &&
	    !json_is_string(json_object_get(reply, "error")))
		abort();
	json_decref(reply);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint32_t	 ports[AGENT_MAX_ECHO_PORTS];
	size_t		 len, n, i;
	char		*out, *s;

	agent_dry_run = 1;
	check_base64(data, size);
	out = agent_handle_line((const char *)data, size, &len);
	if (out != NULL)
		check_reply(out, len);
	free(out);

	if ((s = malloc(size + 1)) == NULL)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	n = agent_parse_echo_ports(s, ports, AGENT_MAX_ECHO_PORTS);
	if (n > AGENT_MAX_ECHO_PORTS)
		abort();
	for (i = 0; i < n; i++) {
		if (ports[i] == 0 || ports[i] == UINT32_MAX)
			abort();
	}
	free(s);
	return 0;
}
