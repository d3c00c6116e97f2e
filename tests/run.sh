#!/usr/bin/env bash
# ember's one test command. Installs the Debian packages the build and the
# tests need (only when some are missing), then runs, from the repo root:
#   1. the plain build (build/plain) and its ctest suite,
#   2. the same suite built with ASan and UBSan (build/asan),
#   3. every libFuzzer harness tests/fuzz/fuzz_*.c, built with clang, ASan
#      and UBSan (build/fuzz), each for FUZZ_SECONDS on a copy of its seed
#      corpus tests/fuzz/corpus/<name without fuzz_>/.
# It keeps going after a failure and ends with a summary whose last line is
# "N passed, N failed, N skipped" over all ctest tests and fuzzers; the
# tests ctest did not run (a test that exits 77 after "SKIP: reason", or a
# disabled one) are listed by name and are not passes. A build that fails
# counts as one failure. Exit status 0 only when nothing failed.
#
# Environment:
#   EMBER_SKIP_ASAN=1   skip step 2
#   EMBER_SKIP_FUZZ=1   skip step 3
#   FUZZ_SECONDS=N      seconds per fuzzer (default 20)
#   CTEST_ARGS="..."    extra ctest arguments for steps 1 and 2, e.g. "-R unit_"
set -euo pipefail

# Debian 12 packages needed to build and run the tests; add new ones here.
PACKAGES=(
	build-essential cmake pkg-config
	clang libclang-rt-dev		# clang's sanitizer and libFuzzer runtimes
	libevent-dev libjansson-dev libyaml-dev libcurl4-openssl-dev check
	socat jq util-linux procps
	systemd libxml2-utils man-db dpkg-dev file	# service, plist, manual and .deb checks (cpack's DEB generator runs file)
	curl python3	# the Firecracker double's HTTP checks
	qemu-system-x86 qemu-utils e2fsprogs kmod cpio lz4	# guest images, QEMU backend (qemu-img overlays)
	skopeo umoci busybox-static	# OCI image import, and the images its tests build
	prometheus	# promtool checks emberd's /metrics (about 19 MB download, 96 MB installed)
	iproute2 nftables	# network nat: the tests' namespaces and checks; emberd runs nft
	strace	# it_image-durable and bench-control see which thread syncs
	docker-registry	# it_oci-registry: a docker:// registry inside the test's namespace
)

FUZZ_SECONDS=${FUZZ_SECONDS:-20}
CTEST_TIMEOUT=900	# per test, for tests that set no TIMEOUT of their own

cd "$(dirname "${BASH_SOURCE[0]}")/.."

read -r -a ctest_extra <<<"${CTEST_ARGS:-}"
jobs=$(nproc)
passed=0
failed=0
skipped=0
summary=()
workdir=""

cleanup() {
	if [ -n "$workdir" ]; then rm -rf "$workdir"; fi
}
trap cleanup EXIT

step() {
	printf '\n==> %s\n' "$*"
}

# configure_and_build LABEL DIR [cmake args...]: configures and builds
# everything in DIR; a failure is counted and returns 1.
configure_and_build() {
	local label=$1 dir=$2
	shift 2
	step "$label: configure and build in $dir"
	if cmake -S . -B "$dir" -DEMBER_WERROR=ON "$@" && cmake --build "$dir" -j"$jobs"; then
		return 0
	fi
	failed=$((failed + 1))
	summary+=("$label: build FAILED")
	return 1
}

# run_ctest LABEL DIR [VAR=value...]: runs the suite in DIR with the
# variables set and adds its counts to the totals.
run_ctest() {
	local label=$1 dir=$2 log=$2/ctest.log rc=0 line
	shift 2
	step "$label: ctest"
	env "$@" ctest --test-dir "$dir" --output-on-failure -j2 \
	    --timeout "$CTEST_TIMEOUT" "${ctest_extra[@]}" 2>&1 | tee "$log" || rc=$?
	line=$(grep -E '[0-9]+ tests? failed out of [0-9]+' "$log" | tail -n 1 || true)
	if [[ $line =~ ([0-9]+)\ tests?\ failed\ out\ of\ ([0-9]+) ]]; then
		local nfail=${BASH_REMATCH[1]} total=${BASH_REMATCH[2]} notrun=() nskip=0
		# "The following tests did not run:" lists "N - name (Skipped)"
		# (SKIP_RETURN_CODE), which ctest counts in the total and in its
		# pass percentage, and "(Disabled)", which it leaves out of both.
		mapfile -t notrun < <(sed -n '/The following tests did not run:/,/^$/p' "$log" |
		    grep -E '^[[:space:]]+[0-9]+ - ' | sed 's/^[[:space:]]*//')
		for line in "${notrun[@]}"; do
			if [[ $line == *"(Skipped)" ]]; then
				nskip=$((nskip + 1))
			fi
		done
		passed=$((passed + total - nfail - nskip))
		failed=$((failed + nfail))
		skipped=$((skipped + ${#notrun[@]}))
		summary+=("$label: $((total - nfail - nskip)) passed, $nfail failed, ${#notrun[@]} skipped")
		for line in "${notrun[@]}"; do
			summary+=("$label:   not run: $line")
		done
		while IFS= read -r line; do
			summary+=("$label:   $line")
		done < <(sed -n '/The following tests FAILED:/,$p' "$log" |
		    grep -E '^[[:space:]]+[0-9]+ - ' | sed 's/^[[:space:]]*//')
		if [ "$rc" -ne 0 ] && [ "$nfail" -eq 0 ]; then
			failed=$((failed + 1))
			summary+=("$label: ctest exited with status $rc")
		fi
	elif grep -q 'No tests were found' "$log"; then
		summary+=("$label: no tests were found")
		if [ "$rc" -ne 0 ]; then
			failed=$((failed + 1))
			summary+=("$label: ctest exited with status $rc")
		fi
	else
		failed=$((failed + 1))
		summary+=("$label: ctest gave no result line (exit status $rc)")
	fi
}

run_fuzzers() {
	local srcs=() names=() src name bin seed corpus art log stats
	shopt -s nullglob
	srcs=(tests/fuzz/fuzz_*.c)
	shopt -u nullglob
	if [ ${#srcs[@]} -eq 0 ]; then
		summary+=("fuzz: no harnesses in tests/fuzz")
		return 0
	fi
	for src in "${srcs[@]}"; do
		names+=("$(basename "$src" .c)")
	done

	# Everything is compiled with coverage instrumentation
	# (fuzzer-no-link) so libFuzzer sees inside ember-common too. Each
	# harness is built on its own so one that does not compile stops no other.
	step "fuzz: configure build/fuzz"
	if ! cmake -S . -B build/fuzz -DCMAKE_C_COMPILER=clang -DEMBER_WERROR=ON \
	    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEMBER_FUZZ=ON -DEMBER_SANITIZE=ON \
	    -DCMAKE_C_FLAGS=-fsanitize=fuzzer-no-link; then
		failed=$((failed + 1))
		summary+=("fuzz: configure FAILED")
		return 0
	fi

	workdir=$(mktemp -d "${TMPDIR:-/tmp}/ember-fuzz.XXXXXX")
	for name in "${names[@]}"; do
		step "$name: build, then fuzz for ${FUZZ_SECONDS}s"
		if ! cmake --build build/fuzz -j"$jobs" --target "$name"; then
			failed=$((failed + 1))
			summary+=("$name: build FAILED")
			continue
		fi
		bin=$(find build/fuzz -type f -name "$name" -perm -u+x -print -quit)
		corpus=$workdir/$name
		seed=tests/fuzz/corpus/${name#fuzz_}
		art=build/fuzz/artifacts/$name
		log=build/fuzz/$name.log
		mkdir -p "$corpus" "$art"
		if [ -d "$seed" ]; then
			cp -R "$seed/." "$corpus/"
		fi
		if [ -n "$bin" ] &&
		    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		    timeout $((FUZZ_SECONDS + 300)) "$bin" \
		    -max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=2048 \
		    -artifact_prefix="$art/" "$corpus" >"$log" 2>&1; then
			stats=$(grep -oE 'Done [0-9]+ runs in [0-9]+ second' "$log" | tail -n 1 || true)
			passed=$((passed + 1))
			summary+=("$name: ok (${stats:-finished})")
			echo "$name: ok (${stats:-finished})"
		else
			failed=$((failed + 1))
			tail -n 60 "$log" || true
			summary+=("$name: FAILED (log $log, inputs in $art/)")
		fi
	done
}

start=$SECONDS
step "checking Debian packages"
# shellcheck source=packaging/install-packages.sh
. packaging/install-packages.sh
install_packages run.sh

if configure_and_build plain build/plain -DCMAKE_BUILD_TYPE=RelWithDebInfo; then
	run_ctest plain build/plain
fi

if [ "${EMBER_SKIP_ASAN:-0}" = 1 ]; then
	summary+=("asan: skipped (EMBER_SKIP_ASAN=1)")
elif configure_and_build asan build/asan -DCMAKE_BUILD_TYPE=Debug -DEMBER_SANITIZE=ON; then
	run_ctest asan build/asan \
	    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
fi

if [ "${EMBER_SKIP_FUZZ:-0}" = 1 ]; then
	summary+=("fuzz: skipped (EMBER_SKIP_FUZZ=1)")
else
	run_fuzzers
fi

printf '\n==> summary (%ds)\n' $((SECONDS - start))
printf '%s\n' "${summary[@]}"
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
