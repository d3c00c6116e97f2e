#!/usr/bin/env bash
# OCI import from a docker:// registry (no VM): the whole test runs in a
# network namespace of its own (unshare -n, only lo up), where Debian's
# docker-registry (the distribution registry) serves plain HTTP on
# 127.0.0.1. An image built with umoci (oci-lib.sh) is pushed with skopeo,
# then imported through docker://127.0.0.1:PORT/...: refused with skopeo's
# reason while TLS is verified (the default), imported with
# --no-tls-verify (the registry's manifest digest kept as source_digest,
# the config kept), imported again with nothing copied, and imported by an
# unprivileged caller (uid 65534 in the socket's group, whose skopeo runs as
# itself). --no-tls-verify with a local source is refused. Nothing leaves
# the namespace.
set -euo pipefail
if [[ ${EMBER_OCI_REGISTRY_NETNS:-} != 1 ]]; then
	command -v docker-registry >/dev/null ||
	    { echo "SKIP: docker-registry not installed (apt-get install docker-registry)"; exit 77; }
	command -v unshare >/dev/null || { echo "SKIP: unshare not installed"; exit 77; }
	[[ $(id -u) -eq 0 ]] || { echo "SKIP: needs root (a network namespace, other uids)"; exit 77; }
	EMBER_OCI_REGISTRY_NETNS=1 exec unshare -n -- "$BASH" "$0" "$@"
fi
. "$(dirname "$0")/lib.sh"
EMBERCTL=${EMBERCTL:?set EMBERCTL to the emberctl binary}
. "$(dirname "$0")/oci-lib.sh"
command -v ip >/dev/null || { echo "SKIP: ip not installed (iproute2)"; exit 77; }
socket_group_setup embr

ip link set lo up || fail "ip link set lo up in the test's namespace"
PORT=5000
mkdir -m 0755 "$T/pub" "$T/registry"
cat >"$T/registry.yml" <<EOF
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $T/registry
http:
  addr: 127.0.0.1:$PORT
EOF
docker-registry serve "$T/registry.yml" >"$T/registry.log" 2>&1 &
_ember_pids+=("$!")
deadline=$((SECONDS + 30))
until curl -fsS "http://127.0.0.1:$PORT/v2/" >/dev/null 2>&1; do
	((SECONDS < deadline)) || fail "the registry did not answer within 30 s: $(tail -n 5 "$T/registry.log")"
	sleep 0.05	# poll interval
done
pass "docker-registry serves 127.0.0.1:$PORT in the test's namespace"

start_oci_store_emberd

note "pushing an image to the registry"
build_oci_image "$T/pub/layout" v1
REF=docker://127.0.0.1:$PORT/ember/app:v1
skopeo copy --quiet --dest-tls-verify=false "oci:$T/pub/layout:v1" "$REF" || fail "skopeo push to $REF"
digest=$(skopeo inspect --no-tags --tls-verify=false --format '{{.Digest}}' "$REF") ||
    fail "skopeo inspect $REF"
pass "pushed $REF ($digest)"

note "TLS verified by default: plain HTTP is refused"
before=$(store_names)
out=$(ctl image import reg --oci "$REF" 2>&1) && fail "imported over plain HTTP without --no-tls-verify"
[[ $out == *"HTTP response to HTTPS client"* ]] || fail "unclear error for plain HTTP: $out"
pass "refused: $out"
assert_eq "$before" "$(store_names)" "nothing left behind"

note "--no-tls-verify with a local source"
out=$(ctl image import loc --oci "oci:$T/pub/layout:v1" --no-tls-verify 2>&1) &&
    fail "--no-tls-verify accepted for an oci: source"
[[ $out == *"docker:// source only"* ]] || fail "unclear error: $out"
pass "refused: $out"

note "docker:// with --no-tls-verify"
out=$(ctl --json image import reg --oci "$REF" --no-tls-verify) || fail "import $REF: $out"
assert_eq "$digest" "$(jqr "$out" .oci.source_digest)" "the registry's manifest digest is kept"
assert_jq "$out" '.oci.config.Entrypoint == ["/entry.sh"] and .oci.config.User == "1000:1000"' \
    "the config is kept"
assert_jq "$out" '.oci.source == "'"$REF"'" and .disk_bytes > 0' "source and root disk recorded"

note "the same digest again: nothing copied"
logpos=$(log_mark)
out=$(ctl image import reg --oci "$REF" --no-tls-verify) || fail "re-import: $out"
[[ $out == *"already imported (same digest $digest)"* ]] || fail "re-import does not say so: $out"
steps=$(log_since "$logpos" | grep -o 'image reg: step [0-9]* of [0-9]*: [a-z.0-9]*' | sort -u)
assert_eq "image reg: step 1 of 7: skopeo" "$steps" "re-import ran the digest probe only"

note "an unprivileged caller"
out=$(nctl --json image import nreg --oci "$REF" --no-tls-verify) || fail "nobody's import: $out"
assert_jq "$out" '.owner_uid == 65534' "nobody's import is nobody's"
assert_eq "$digest" "$(jqr "$out" .oci.source_digest)" "nobody's import has the same digest"
assert_eq "root:root" "$(stat -c %U:%G "$STATE/images/nreg/rootfs.ext4")" "its root disk is emberd's own file"
assert_eq "nreg reg " "$(store_names)" "no staging left behind"
echo "PASS"
