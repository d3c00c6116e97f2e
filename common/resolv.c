/*
 * Reading the host's resolv.conf for the DNS servers handed to guests.
 * The syntax followed is the one glibc's resolver reads: one directive per
 * line, a line starting with '#' or ';' is a comment, "nameserver" then
 * blanks then one address (ended by a blank, '#' or ';'), anything after
 * the address ignored. The text is
 * untrusted in the sense that it may be anything (it is fuzzed): every line
 * is bounded by the buffer, and an address is only accepted after
 * inet_pton() has parsed it, so what leaves this file is always a canonical
 * numeric address.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "fsutil.h"
#include "resolv.h"

#define KEYWORD		"nameserver"
#define KEYWORD_LEN	(sizeof(KEYWORD) - 1)

static bool
is_blank(char c)
{
	return c == ' ' || c == '\t';
}

/* True for addresses only the host itself can reach (loopback, 0.0.0.0, ::). */
static bool
is_local_only(int family, const unsigned char *a)
{
	static const unsigned char v4mapped[12] =
	    { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	static const unsigned char zero[16];

	if (family == AF_INET)
		return a[0] == 127 || memcmp(a, zero, 4) == 0;
	if (memcmp(a, v4mapped, sizeof(v4mapped)) == 0)
		return is_local_only(AF_INET, a + 12);
	/* ::1 and :: */
	return memcmp(a, zero, 15) == 0 && (a[15] == 1 || a[15] == 0);
}

/*
 * Canonical form of the address token tok[0..len) in canon, or -1 when it is
 * not an address a guest could use (malformed, or scoped). Returns 1 for a
 * local-only address, 0 for a usable one.
 */
static int
parse_address(const char *tok, size_t len, char canon[INET6_ADDRSTRLEN])
{
	char text[INET6_ADDRSTRLEN];
	unsigned char addr[16];
	int family;

	if (len == 0 || len >= sizeof(text) || memchr(tok, '\0', len) != NULL)
		return -1;
	memcpy(text, tok, len);
	text[len] = '\0';
	family = memchr(text, ':', len) != NULL ? AF_INET6 : AF_INET;
	/* inet_pton refuses a zone ("%eth0"), which is what we want. */
	if (inet_pton(family, text, addr) != 1)
		return -1;
	if (inet_ntop(family, addr, canon, INET6_ADDRSTRLEN) == NULL)
		return -1;
	return is_local_only(family, addr) ? 1 : 0;
}

static bool
already_listed(char out[][INET6_ADDRSTRLEN], size_t n, const char *addr)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(out[i], addr) == 0)
			return true;
	return false;
}

/*
 * Where a loopback stub is met in a resolv.conf, the stub's upstreams go in
 * its place (once, at the first stub), so their priority is the stub's.
 */
struct stub_replacement {
	const char *upstreams_path;	/* NULL: stubs are only counted */
	bool done;
	int err;			/* reading upstreams_path failed */
};

static void parse_text(const char *buf, size_t len,
    char out[][INET6_ADDRSTRLEN], size_t max, size_t *n, size_t *stubs,
    struct stub_replacement *repl);

/* Reads path and appends its nameservers; returns 0 or -errno. */
static int
parse_file(const char *path, char out[][INET6_ADDRSTRLEN], size_t max,
    size_t *n, size_t *stubs, struct stub_replacement *repl)
{
	char *buf;
	size_t len;
	int r;

	if ((r = read_file(path, RESOLV_FILE_MAX, &buf, &len)) < 0)
		return r;
	parse_text(buf, len, out, max, n, stubs, repl);
	free(buf);
	return 0;
}

/* Handles one line p[0..len); appends or counts its nameserver if any. */
static void
parse_line(const char *p, size_t len, char out[][INET6_ADDRSTRLEN],
    size_t max, size_t *n, size_t *stubs, struct stub_replacement *repl)
{
	char canon[INET6_ADDRSTRLEN];
	size_t i = KEYWORD_LEN, start, ignored = 0;
	int kind;

	if (len <= KEYWORD_LEN || memcmp(p, KEYWORD, KEYWORD_LEN) != 0 ||
	    !is_blank(p[i]))
		return;
	while (i < len && is_blank(p[i]))
		i++;
	start = i;
	/* As glibc: the address ends at a blank or a comment character. */
	while (i < len && !is_blank(p[i]) && p[i] != '\r' && p[i] != '#' &&
	    p[i] != ';')
		i++;
	kind = parse_address(p + start, i - start, canon);
	if (kind < 0)
		return;
	if (kind == 1) {
		if (stubs != NULL)
			(*stubs)++;
		if (repl != NULL && repl->upstreams_path != NULL &&
		    !repl->done) {
			repl->done = true;
			/* Loopback entries among the upstreams: dropped. */
			repl->err = parse_file(repl->upstreams_path, out, max,
			    n, &ignored, NULL);
		}
		return;
	}
	if (*n < max && !already_listed(out, *n, canon)) {
		memcpy(out[*n], canon, INET6_ADDRSTRLEN);
		(*n)++;
	}
}

static void
parse_text(const char *buf, size_t len, char out[][INET6_ADDRSTRLEN],
    size_t max, size_t *n, size_t *stubs, struct stub_replacement *repl)
{
	const char *line = buf, *end = buf + len, *nl;

	if (buf == NULL)
		return;
	while (line < end) {
		nl = memchr(line, '\n', (size_t)(end - line));
		if (nl == NULL)
			nl = end;
		parse_line(line, (size_t)(nl - line), out, max, n, stubs,
		    repl);
		line = nl + 1;
	}
}

void
resolv_parse_nameservers(const char *buf, size_t len,
    char out[][INET6_ADDRSTRLEN], size_t max, size_t *n, size_t *stubs)
{
	parse_text(buf, len, out, max, n, stubs, NULL);
}

int
resolv_upstreams_from(const char *resolv_conf_path,
    const char *stub_upstreams_path, char out[][INET6_ADDRSTRLEN], size_t max,
    size_t *n)
{
	struct stub_replacement repl = { 0 };
	size_t count = 0, stubs = 0;
	int r;

	if (n == NULL || (out == NULL && max > 0))
		return -EINVAL;
	*n = 0;
	if (resolv_conf_path == NULL)
		resolv_conf_path = RESOLV_CONF_DEFAULT;
	repl.upstreams_path = stub_upstreams_path != NULL ?
	    stub_upstreams_path : RESOLV_STUB_UPSTREAMS;
	r = parse_file(resolv_conf_path, out, max, &count, &stubs, &repl);
	if (r < 0)
		return r;
	/* Stubs whose upstreams could not be read: an error only if that
	 * leaves the guest without any server. */
	if (repl.err < 0 && count == 0)
		return repl.err;
	*n = count;
	return 0;
}

int
resolv_upstreams(const char *resolv_conf_path, char out[][INET6_ADDRSTRLEN],
    size_t max, size_t *n)
{
	return resolv_upstreams_from(resolv_conf_path, RESOLV_STUB_UPSTREAMS,
	    out, max, n);
}
