#!/usr/bin/env bash
# Proves that the scripts hold every install step: on a minimal Debian 12 root
# (`debootstrap --variant=minbase bookworm`, nothing else installed) with the
# project cloned into it, runs the README's two commands as root in a chroot,
#   packaging/quickstart.sh
#   tests/run.sh            (EMBER_SKIP_FUZZ=1 EMBER_SKIP_ASAN=1 by default)
# and reports each one's status and wall time. Anything the scripts forget to
# install fails here, where this machine's own packages cannot hide it.
#
# The debootstrap result is built once and kept as a pristine base under the
# cache directory; every run starts from a fresh copy of it (so packages a
# previous run installed cannot hide a missing step) and removes the copy
# afterwards unless EMBER_FRESH_KEEP=1. It takes tens of minutes (the whole
# suite runs, after apt installs everything), so it is not part of
# tests/run.sh or CI: run it by hand before a release and after changing a
# PACKAGES list, install-packages.sh or the build's dependencies.
#
# Usage: tests/fresh-root/run.sh          (as root; needs debootstrap)
# Environment:
#   EMBER_FRESH_CACHE   cache directory (default /var/tmp/ember-fresh-root)
#   EMBER_FRESH_MIRROR  Debian mirror (default: the first Debian URI in this
#                       machine's apt sources, else http://deb.debian.org/debian)
#   EMBER_FRESH_SOURCE  "head" (default) clones the checkout's HEAD, as a user
#                       would; "worktree" copies the tracked and untracked,
#                       not-ignored files as they are now (uncommitted changes)
#   EMBER_FRESH_REBUILD=1  debootstrap the base again
#   EMBER_FRESH_KEEP=1  keep this run's root (its path is printed)
#   EMBER_FRESH_ORDER   the steps to run in the one root, in order (default
#                       "quickstart tests"); e.g. "tests quickstart
#                       quickstart tests" checks both orders, each twice
#   EMBER_SKIP_ASAN, EMBER_SKIP_FUZZ, FUZZ_SECONDS, CTEST_ARGS
#                       passed to tests/run.sh in the chroot (the two skips
#                       default to 1 here)
# Exit status 0 only when both commands succeeded and no test skipped because
# a tool was not installed (skips for want of /dev/kvm are only listed).
set -euo pipefail

prog=fresh-root
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CACHE=${EMBER_FRESH_CACHE:-/var/tmp/ember-fresh-root}
SUITE=bookworm
BASE=$CACHE/base
BASE_DONE=$CACHE/base.done	# written once debootstrap finished
PROJECT_IN_ROOT=/root/ember	# where the project lives inside the chroot
PATH_IN_ROOT=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

die() {
	echo "$prog: $*" >&2
	exit 1
}

say() {
	printf '\n==> %s: %s\n' "$prog" "$*"
}

[ "$(id -u)" -eq 0 ] || die "must run as root (debootstrap, chroot, mounts)"
command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] ||
	die "debootstrap is not installed: apt-get install debootstrap"
PATH=$PATH:/usr/sbin:/sbin

# debian_mirror: the first plain Debian archive URI apt uses here (one-line
# or deb822 sources), so the root comes from the mirror this machine reaches.
debian_mirror() {
	local uri
	uri=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
	    /etc/apt/sources.list.d/*.sources 2>/dev/null |
	    grep -oE 'https?://[^ ]+/debian/?( |$)' | grep -v security |
	    head -n 1 | tr -d ' ' || true)
	echo "${uri:-http://deb.debian.org/debian}"
}
MIRROR=${EMBER_FRESH_MIRROR:-$(debian_mirror)}

run_root=""
mounted=()

# Unmounts what this run mounted (newest first) and removes its root.
# shellcheck disable=SC2317 # called from the EXIT trap
cleanup() {
	local i
	for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
		umount -R "${mounted[i]}" 2>/dev/null || umount -lR "${mounted[i]}" 2>/dev/null || true
	done
	mounted=()
	if [ -n "$run_root" ] && [ "${EMBER_FRESH_KEEP:-0}" != 1 ]; then
		# Refuse to delete through a mount that failed to go away.
		if findmnt -rn -o TARGET | grep -q "^$run_root/"; then
			echo "$prog: $run_root still has mounts; not removing it" >&2
		else
			rm -rf --one-file-system "$run_root"
		fi
	elif [ -n "$run_root" ]; then
		echo "$prog: kept $run_root"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$CACHE"
if [ "${EMBER_FRESH_REBUILD:-0}" = 1 ] || [ ! -e "$BASE_DONE" ]; then
	rm -rf --one-file-system "$BASE" "$BASE_DONE"
	say "debootstrap --variant=minbase $SUITE from $MIRROR into $BASE"
	t0=$SECONDS
	debootstrap --variant=minbase "$SUITE" "$BASE" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 ||
		{ tail -n 30 "$CACHE/debootstrap.log" >&2; die "debootstrap failed (log $CACHE/debootstrap.log)"; }
	# The same suites as this machine's own Debian sources: security updates
	# included, so the root installs what a user's up-to-date machine would.
	cat >"$BASE/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb ${MIRROR%/debian*}/debian-security $SUITE-security main
EOF
	echo "$((SECONDS - t0))" >"$BASE_DONE"
	say "base root ready in $((SECONDS - t0))s"
fi

run_root=$(mktemp -d "$CACHE/run.XXXXXX")
say "copying the base root to $run_root"
cp -a --reflink=auto "$BASE/." "$run_root/"
# No service may start inside the chroot when a package is installed.
printf '#!/bin/sh\nexit 101\n' >"$run_root/usr/sbin/policy-rc.d"
chmod 0755 "$run_root/usr/sbin/policy-rc.d"
cp -L /etc/resolv.conf "$run_root/etc/resolv.conf"

mkdir -p "$run_root$PROJECT_IN_ROOT"
case ${EMBER_FRESH_SOURCE:-head} in
head)
	say "cloning $(git -C "$SRC" rev-parse --short HEAD) of $SRC into the root"
	rmdir "$run_root$PROJECT_IN_ROOT"
	git clone -q --no-hardlinks "$SRC" "$run_root$PROJECT_IN_ROOT"
	;;
worktree)
	say "copying the working tree of $SRC into the root"
	# shellcheck disable=SC2016 # expanded by the inner sh
	git -C "$SRC" ls-files -z --cached --others --exclude-standard |
		(cd "$SRC" && xargs -0 -r sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' sh) |
		tar -C "$SRC" --null -T - -cf - | tar -C "$run_root$PROJECT_IN_ROOT" -xf -
	;;
*) die "EMBER_FRESH_SOURCE must be head or worktree" ;;
esac

# The root is a mount point of its own, as / is on a real machine: `ip netns
# exec` (the network tests) makes / an rslave mount, which fails with EINVAL
# on a directory that is not one.
mount --bind "$run_root" "$run_root"
mount --make-rprivate "$run_root"
mounted+=("$run_root")

# The kernel file systems; rslave so unmounting here never touches the host's.
for fs in proc sys dev; do
	mount --rbind "/$fs" "$run_root/$fs"
	mount --make-rslave "$run_root/$fs"
	mounted+=("$run_root/$fs")
done

# in_root LABEL COMMAND...: runs COMMAND in the project directory inside the
# chroot with a clean environment, logs it and records its wall time.
results=()
in_root() {
	local label=$1 log=$CACHE/$1.log t0=$SECONDS rc=0
	shift
	say "$label (log $log)"
	# shellcheck disable=SC2016 # expanded by bash in the chroot
	chroot "$run_root" /usr/bin/env -i HOME=/root PATH="$PATH_IN_ROOT" LANG=C.UTF-8 \
	    TERM="${TERM:-dumb}" /bin/bash -c 'cd "$0" && exec "$@"' "$PROJECT_IN_ROOT" "$@" \
	    2>&1 | tee "$log" || rc=$?
	results+=("$label: exit $rc, $((SECONDS - t0))s")
	return "$rc"
}

total0=$SECONDS
status=0
# The README's commands, in its order by default: the quickstart first
# installs the build packages, then the test command installs the rest.
# EMBER_FRESH_ORDER runs another sequence in the same root, e.g.
# "tests quickstart quickstart tests" for the other order and each twice.
rm -f "$CACHE"/[0-9]*-quickstart.log "$CACHE"/[0-9]*-run.sh.log
n=0
for cmd in ${EMBER_FRESH_ORDER:-quickstart tests}; do
	n=$((n + 1))
	case $cmd in
	quickstart)
		in_root "$n-quickstart" packaging/quickstart.sh || status=1
		;;
	tests)
		in_root "$n-run.sh" env \
		    EMBER_SKIP_ASAN="${EMBER_SKIP_ASAN:-1}" EMBER_SKIP_FUZZ="${EMBER_SKIP_FUZZ:-1}" \
		    ${FUZZ_SECONDS:+FUZZ_SECONDS="$FUZZ_SECONDS"} ${CTEST_ARGS:+CTEST_ARGS="$CTEST_ARGS"} \
		    tests/run.sh || status=1
		;;
	*) die "EMBER_FRESH_ORDER: unknown step \"$cmd\" (use quickstart and tests)" ;;
	esac
done

# A test that skips because a tool is missing is a missing install step too.
skips=$(grep -h '^SKIP' "$run_root$PROJECT_IN_ROOT"/build/*/Testing/Temporary/LastTest.log \
    2>/dev/null | sort | uniq -c || true)
if grep -q 'not installed' <<<"$skips"; then
	results+=("run.sh: tests skipped for want of a tool (a missing install step)")
	status=1
fi

say "summary (${SUITE} minbase, $((SECONDS - total0))s in the chroot)"
printf '%s\n' "${results[@]}"
if [ -n "$skips" ]; then
	echo "skips in the suite:"
	printf '%s\n' "$skips"
fi
for log in "$CACHE"/[0-9]*-run.sh.log; do
	[ -e "$log" ] && echo "$(basename "$log" .log): $(tail -n 1 "$log")"
done
[ "$status" -eq 0 ] && echo "fresh root: both commands passed" || echo "fresh root: FAILED"
exit "$status"
