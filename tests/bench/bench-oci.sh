#!/usr/bin/env bash
# OCI image figures (prints numbers, asserts nothing): import time and disk
# use of a ~100 MiB image (the test image of oci-lib.sh plus 100 MiB of
# random bytes in one layer) from oci:, oci-archive: and docker-archive:,
# importing each again (the same digest: nothing copied), and, under TCG,
# the time from `vm create --image` to the entrypoint's first output line on
# the console (read through vm logs), over RUNS boots.
#
# Usage (as root, from a build directory's environment):
#   EMBERD=build/x/daemon/emberd EMBERCTL=build/x/client/emberctl \
#   EMBER_BUILD_DIR=build/x bash tests/bench/bench-oci.sh [RUNS]
set -euo pipefail
here=$(cd "$(dirname "$0")/../integration" && pwd)
. "$here/qemu-lib.sh"
. "$here/oci-lib.sh"
RUNS=${1:-3}

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

ensure_image
printf 'default_image: mini\n' >>"$CONFIG"
start_emberd
import_image mini >/dev/null

build_oci_image "$T/layout" small
# A second layer of 100 MiB of incompressible bytes.
bundle=$T/big-bundle
umoci unpack --rootless --image "$T/layout:small" "$bundle" >/dev/null
head -c $((100 * 1024 * 1024)) /dev/urandom >"$bundle/rootfs/payload.bin"
umoci repack --image "$T/layout:small" "$bundle" >/dev/null
umoci tag --image "$T/layout:small" big
rm -rf "$bundle"
skopeo copy --quiet "oci:$T/layout:big" "oci-archive:$T/big.tar"
skopeo copy --quiet "oci:$T/layout:big" "docker-archive:$T/big-docker.tar:big:latest"
echo "image: $(du -sm "$T/layout" | cut -f1) MiB OCI layout (both tags), $(du -m "$T/big.tar" | cut -f1) MiB oci-archive"

n=0
for src in "oci:$T/layout:big" "oci-archive:$T/big.tar" "docker-archive:$T/big-docker.tar"; do
	name=big$((++n))
	t0=$(now)
	out=$(ctl --json image import "$name" --oci "$src")
	t1=$(now)
	printf '%-16s import %6s s wall (emberd says %.2f s), root disk %s MiB allocated of %s MiB\n' \
	    "${src%%:*}" "$(secs "$t0" "$t1")" "$(jq -r .import_seconds <<<"$out")" \
	    "$(( $(jq -r .disk_bytes <<<"$out") / 1048576 ))" \
	    "$(( $(stat -c %s "$STATE/images/$name/rootfs.ext4") / 1048576 ))"
done
# The same digest again is answered after skopeo inspect, without a copy.
n=0
for src in "oci:$T/layout:big" "oci-archive:$T/big.tar" "docker-archive:$T/big-docker.tar"; do
	t0=$(now)
	ctl image import "big$((++n))" --oci "$src" >/dev/null
	printf '%-16s re-import of the same digest: %s s\n' "${src%%:*}" "$(secs "$t0" "$(now)")"
done

ctl image import small --oci "oci:$T/layout:small" >/dev/null
for i in $(seq "$RUNS"); do
	t0=$(now)
	ctl vm create "b$i" --image small --env SLEEP_FOR=0 >/dev/null
	deadline=$((SECONDS + 120))
	until ctl vm logs "b$i" | grep -q '^entry:'; do
		((SECONDS < deadline)) || { echo "run $i: no output within 120 s"; continue 2; }
		sleep 0.05	# poll interval
	done
	echo "run $i: vm create --image to the entrypoint's first line: $(secs "$t0" "$(now)") s (TCG)"
	ctl vm delete --force "b$i" >/dev/null
done
