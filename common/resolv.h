/*
 * The DNS servers a guest should use, taken from the host's resolver
 * configuration. A loopback nameserver in resolv.conf (systemd-resolved's
 * 127.0.0.53, a local dnsmasq at 127.0.0.1, ::1) is a stub the guest cannot
 * reach, so it is replaced by the upstreams systemd-resolved lists in
 * /run/systemd/resolve/resolv.conf. Results are numeric addresses in
 * canonical form (inet_ntop), deduplicated, in file order, at most `max`.
 * Returns 0 or -errno and never logs.
 */
#ifndef EMBER_RESOLV_H
#define EMBER_RESOLV_H

#include <arpa/inet.h>
#include <stddef.h>

#define RESOLV_CONF_DEFAULT	"/etc/resolv.conf"
#define RESOLV_STUB_UPSTREAMS	"/run/systemd/resolve/resolv.conf"
/* A resolv.conf larger than this is refused with -EFBIG. */
#define RESOLV_FILE_MAX		(64 * 1024)
/* glibc's MAXNS: the resolver uses no more than three. */
#define RESOLV_NAMESERVERS_MAX	3

/*
 * Appends to out[*n..max) the nameservers of the resolv.conf text buf[0..len)
 * that are not already in out[0..*n). Lines that are not a well-formed
 * "nameserver ADDRESS" are skipped; so are link-local IPv6 addresses with a
 * zone ("fe80::1%eth0"), which mean nothing inside a guest. Loopback and
 * unspecified addresses are skipped too and counted in *stubs (may be NULL).
 * Never fails: a full out[] simply stops the appending.
 */
void resolv_parse_nameservers(const char *buf, size_t len,
    char out[][INET6_ADDRSTRLEN], size_t max, size_t *n, size_t *stubs);

/*
 * The upstream nameservers for a guest, from resolv_conf_path (NULL means
 * /etc/resolv.conf), with loopback stubs replaced by the nameservers of
 * stub_upstreams_path (NULL means /run/systemd/resolve/resolv.conf), put
 * where the first stub was so they keep its priority.
 * *n is set to the count (0 is possible: a resolv.conf without
 * nameservers). Errors: reading resolv_conf_path (-ENOENT, -EFBIG, ...), or
 * reading stub_upstreams_path when resolv.conf named only stubs.
 */
int resolv_upstreams_from(const char *resolv_conf_path,
    const char *stub_upstreams_path, char out[][INET6_ADDRSTRLEN], size_t max,
    size_t *n);

/* resolv_upstreams_from(resolv_conf_path, RESOLV_STUB_UPSTREAMS, ...). */
int resolv_upstreams(const char *resolv_conf_path,
    char out[][INET6_ADDRSTRLEN], size_t max, size_t *n);

#endif
