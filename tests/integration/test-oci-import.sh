#!/usr/bin/env bash
# OCI image import (no network, no VM): an image built here with umoci from
# busybox-static is imported from oci:DIR:TAG, oci-archive:FILE and
# docker-archive:FILE; image.json keeps the manifest digest and the config
# (Entrypoint, Cmd, Env, WorkingDir, User, ExposedPorts, Labels); importing
# the same digest under the same name again is a no-op that says so, a
# different one under that name is refused; a missing tag and a corrupt
# archive fail with skopeo's reason and leave nothing in the image store;
# and a non-root caller (uid 65534 in the socket's group) cannot import a
# path it cannot read, while it can import one it can.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
EMBERCTL=${EMBERCTL:?set EMBERCTL to the emberctl binary}
. "$(dirname "$0")/oci-lib.sh"
socket_group_setup embo

mkdir -m 0755 "$T/pub"
mkdir -m 0700 "$T/rootonly"
start_oci_store_emberd

note "building an OCI image with umoci"
build_oci_image "$T/pub/layout" v1
skopeo copy --quiet "oci:$T/pub/layout:v1" "oci-archive:$T/pub/hello.tar" || fail "skopeo oci-archive"
skopeo copy --quiet "oci:$T/pub/layout:v1" "docker-archive:$T/pub/hello-docker.tar:hello:v1" ||
    fail "skopeo docker-archive"
chmod -R a+rX "$T/pub"
digest=$(jq -r '.manifests[0].digest' "$T/pub/layout/index.json")

note "oci:DIR:TAG"
out=$(ctl --json image import hello --oci "oci:$T/pub/layout:v1") || fail "import oci: $out"
assert_eq "$digest" "$(jqr "$out" .oci.digest)" "the manifest digest is kept"
assert_jq "$out" '.oci.config.Entrypoint == ["/entry.sh"] and .oci.config.Cmd == ["first"]' \
    "Entrypoint and Cmd kept"
assert_jq "$out" '.oci.config.Env == ["FOO=bar","PATH=/bin"] and .oci.config.WorkingDir == "/work" and .oci.config.User == "1000:1000"' \
    "Env, WorkingDir and User kept"
assert_jq "$out" '.oci.config.Labels["org.example.test"] == "yes" and (.oci.config.ExposedPorts | has("8080/tcp"))' \
    "Labels and ExposedPorts kept"
assert_jq "$out" '.import_seconds >= 0 and .disk_bytes > 0' "size and time reported"
assert_jq "$out" '(.kernel == null) and (.rootfs | endswith("/hello/rootfs.ext4"))' \
    "no kernel of its own, an ext4 root disk"
if command -v debugfs >/dev/null; then
	assert_eq "image file" "$(debugfs -R 'cat /etc/image-marker' "$STATE/images/hello/rootfs.ext4" 2>/dev/null)" \
	    "the image's files are in rootfs.ext4"
fi
assert_eq "755" "$(stat -c %a "$STATE/images/hello")" "the stored image directory is readable"
assert_eq "hello " "$(store_names)" "no staging left behind"

note "the same digest again"
mark=$(stat -c %Y.%i "$STATE/images/hello/rootfs.ext4")
assert_eq "$digest" "$(jq -r .oci.source_digest "$STATE/images/hello/image.json")" \
    "the source's digest is kept for the next import"
logpos=$(log_mark)
out=$(ctl image import hello --oci "oci:$T/pub/layout:v1") || fail "re-import: $out"
[[ $out == *"already imported (same digest $digest)"* ]] || fail "re-import does not say so: $out"
pass "re-import says: $out"
assert_eq "$mark" "$(stat -c %Y.%i "$STATE/images/hello/rootfs.ext4")" "re-import left the image alone"
assert_eq "hello " "$(store_names)" "re-import left no staging"
# Only skopeo inspect ran: no copy, no unpack.
steps=$(log_since "$logpos" | grep -o 'image hello: step [0-9]* of [0-9]*: [a-z.0-9]*' | sort -u)
assert_eq "image hello: step 1 of 7: skopeo" "$steps" "re-import ran the digest probe only"

note "oci-archive and docker-archive"
out=$(ctl --json image import harch --oci "oci-archive:$T/pub/hello.tar") || fail "import oci-archive: $out"
assert_eq "$digest" "$(jqr "$out" .oci.digest)" "oci-archive: same manifest digest"
out=$(ctl --json image import hdock --oci "docker-archive:$T/pub/hello-docker.tar") ||
    fail "import docker-archive: $out"
assert_jq "$out" '.oci.config.Entrypoint == ["/entry.sh"] and .oci.config.User == "1000:1000"' \
    "docker-archive: config kept"

note "docker-archive again: its own digest, not the layout's, is compared"
logpos=$(log_mark)
out=$(ctl image import hdock --oci "docker-archive:$T/pub/hello-docker.tar") ||
    fail "re-import docker-archive: $out"
[[ $out == *"already imported (same digest"* ]] || fail "docker-archive re-import does not say so: $out"
log_since "$logpos" | grep -q 'image hdock: step 2 of' && fail "docker-archive re-import copied"
pass "docker-archive re-import: $out"

note "another digest under an existing name"
logpos=$(log_mark)
out=$(ctl image import hello --oci "docker-archive:$T/pub/hello-docker.tar" 2>&1) &&
    fail "a different digest replaced image hello: $out"
[[ $out == *"already exists with another digest"* ]] || fail "unexpected error: $out"
log_since "$logpos" | grep -q 'image hello: step 2 of' && fail "a different digest was copied first"
pass "a different digest is refused before any copy: $out"

note "errors leave nothing behind"
before=$(store_names)
out=$(ctl image import nope --oci "oci:$T/pub/layout:missing" 2>&1) && fail "a missing tag imported"
[[ $out == *missing* ]] || fail "the missing-tag error does not name the tag: $out"
pass "missing tag: $out"
head -c 20000 "$T/pub/hello.tar" >"$T/pub/corrupt.tar"
out=$(ctl image import corrupt --oci "oci-archive:$T/pub/corrupt.tar" 2>&1) && fail "a corrupt archive imported"
[[ $out == *"cannot read the OCI image"* ]] || fail "unclear corrupt-archive error: $out"
pass "corrupt archive: $out"
out=$(ctl image import bad --oci "http://example.invalid/x" 2>&1) && fail "an unknown transport was accepted"
pass "unknown transport: $out"
assert_eq "$before" "$(store_names)" "the image store is as before"

note "a non-root caller"
cp "$T/pub/hello.tar" "$T/rootonly/hello.tar"
out=$(nctl image import stolen --oci "oci-archive:$T/rootonly/hello.tar" 2>&1) &&
    fail "nobody imported a root-only archive"
[[ $out == *"ermission denied"* ]] || fail "unexpected error for a root-only archive: $out"
pass "root-only archive refused: $out"
mkdir -m 0755 "$T/rootonly/layout"
cp -r "$T/pub/layout/." "$T/rootonly/layout/"
out=$(nctl image import stolendir --oci "oci:$T/rootonly/layout:v1" 2>&1) &&
    fail "nobody imported a layout under a directory it cannot search"
[[ $out == *"ermission denied"* ]] || fail "unexpected error for a root-only layout: $out"
pass "a layout under a root-only directory refused: $out"
assert_eq "$before" "$(store_names)" "nothing left after the refusals"
out=$(nctl --json image import mine --oci "oci-archive:$T/pub/hello.tar") || fail "nobody's import: $out"
assert_jq "$out" '.owner_uid == 65534' "nobody's import is nobody's"
assert_eq "$digest" "$(jqr "$out" .oci.digest)" "nobody's import has the same digest"
assert_eq "root:root" "$(stat -c %U:%G "$STATE/images/mine/rootfs.ext4")" "its root disk is emberd's own file"
echo "PASS"
