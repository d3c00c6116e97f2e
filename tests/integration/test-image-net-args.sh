#!/usr/bin/env bash
# The ember-mini init's ember.net= parser (packaging/image/mini-init.sh),
# run under busybox sh, the shell it runs under in the guest: well-formed
# values give the address, prefix, gateway and DNS servers; each malformed
# one is refused with its reason, so a bad value leaves eth0 alone. No
# guest, no root: the functions are cut out of the init and run here.
set -euo pipefail

src=${EMBER_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
cache=${EMBER_IMAGE_CACHE:-${XDG_CACHE_HOME:-${HOME:-/var/tmp}/.cache}/ember/image}
bb=$(find "$cache/tree" -path '*busybox-static*/bin/busybox' -print -quit 2>/dev/null || true)
[[ -n $bb ]] || bb=$(command -v busybox || true)
[[ -n $bb ]] || { echo "SKIP: no busybox (neither in $cache nor installed)"; exit 77; }

T=$(mktemp -d "${TMPDIR:-/tmp}/ember-net-args.XXXXXX")
trap 'rm -rf "$T"' EXIT
fails=0
pass() { echo "ok: $*"; }
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }

sed -n '/^# --- ember.net=/,/^net_ok=0/p' "$src/packaging/image/mini-init.sh" >"$T/net.sh"
grep -q '^parse_net()' "$T/net.sh" || { echo "FAIL: no parse_net in mini-init.sh" >&2; exit 1; }
cat >>"$T/net.sh" <<'SH'
if parse_net "$1"; then
	echo "ok $net_addr $net_prefix $net_gw$net_dns"
else
	echo "refused: $net_error"
fi
SH

# accept VALUE EXPECTED: parse_net takes VALUE and yields EXPECTED.
accept() {
	local out
	out=$("$bb" sh "$T/net.sh" "$1" 2>&1)
	if [[ $out == "ok $2" ]]; then pass "accepted $1"; else fail "$1: got '$out', expected 'ok $2'"; fi
}
# refuse VALUE REASON: parse_net refuses VALUE saying REASON.
refuse() {
	local out
	out=$("$bb" sh "$T/net.sh" "$1" 2>&1)
	if [[ $out == "refused: $2"* ]]; then pass "refused $1 ($2)"; else fail "$1: got '$out', expected 'refused: $2'"; fi
}

accept 10.100.0.2/30,10.100.0.1 "10.100.0.2 30 10.100.0.1"
accept 10.100.0.2/30,10.100.0.1,192.0.2.53 "10.100.0.2 30 10.100.0.1 192.0.2.53"
accept 10.100.0.2/30,10.100.0.1,192.0.2.53,2001:db8::53,198.51.100.1 \
    "10.100.0.2 30 10.100.0.1 192.0.2.53 2001:db8::53 198.51.100.1"
accept 10.100.3.254/22,10.100.0.1 "10.100.3.254 22 10.100.0.1"
refuse "" "empty field"
refuse 10.100.0.2/30,10.100.0.1, "empty field"
refuse 10.100.0.2/30,,10.100.0.1 "empty field"
refuse 10.100.0.2/30 "no gateway"
refuse 10.100.0.2/30,10.100.0.1,192.0.2.1,192.0.2.2,192.0.2.3,192.0.2.4 "more than three DNS servers"
refuse 10.100.0.2,10.100.0.1 "address has no /PREFIX"
refuse 10.100.0.2/30/1,10.100.0.1 "address is not ADDR/PREFIX"
refuse 10.100.0.2/0,10.100.0.1 "bad prefix 0"
refuse 10.100.0.2/33,10.100.0.1 "bad prefix 33"
refuse 10.100.0.2/030,10.100.0.1 "bad prefix 030"
refuse 10.100.0.256/30,10.100.0.1 "bad address 10.100.0.256"
refuse 010.100.0.2/30,10.100.0.1 "bad address 010.100.0.2"
refuse 10.100.0/30,10.100.0.1 "bad address 10.100.0"
refuse 10.100.0.2/30,10.100.0.1.1 "bad gateway 10.100.0.1.1"
refuse 10.100.0.2/30,10.100.0.2 "gateway is the address"
refuse 10.100.0.2/30,10.100.0.5 "gateway 10.100.0.5 is outside 10.100.0.2/30"
refuse 10.100.0.2/30,10.100.0.1,example.org "unexpected character"
refuse '10.100.0.2/30,10.100.0.1;reboot' "unexpected character"
# shellcheck disable=SC2016 # a literal $(...) is the point
refuse '10.100.0.2/30,10.100.0.1,$(reboot)' "unexpected character"
refuse 10.100.0.2/30,10.100.0.1,fe80::1%eth0 "unexpected character"
refuse 10.100.0.2/30,10.100.0.1,1:2:::3 "bad DNS server 1:2:::3"
refuse 10.100.0.2/30,10.100.0.1,1::2::3 "bad DNS server 1::2::3"
refuse 10.100.0.2/30,10.100.0.1,abc "bad DNS server abc"

if ((fails > 0)); then
	echo "FAIL: $fails case(s)" >&2
	exit 1
fi
echo "PASS: ember.net parser"
