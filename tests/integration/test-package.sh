#!/usr/bin/env bash
# The Debian package: builds it with cpack in a private build directory,
# checks its metadata and contents, then (as root on a throwaway machine
# only) installs it with dpkg -i, runs the installed emberctl and emberd,
# has systemd-analyze verify the installed units, renders the installed
# manual pages with man -l, checks the launchd plist with xmllint, and
# purges the package, leaving no trace the package itself would not.
#
# Installing is skipped (with a SKIP line) when not root, when
# EMBER_SKIP_DPKG_INSTALL=1, or when an ember package is already installed
# (it is not ours to replace).
set -euo pipefail

SRC=${EMBER_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
for tool in cmake cpack dpkg-deb dpkg-shlibdeps xmllint; do
	command -v "$tool" >/dev/null || { echo "FAIL: $tool not installed (see PACKAGES in tests/run.sh)" >&2; exit 1; }
done

T=$(mktemp -d "${TMPDIR:-/tmp}/ember-pkg.XXXXXX")
installed=
group_before=
dirs_before=()
cleanup() {
	if [[ -n $installed ]]; then
		dpkg --purge ember >/dev/null 2>&1 || true
	fi
	rm -rf "$T"
}
trap cleanup EXIT

note() { echo "--- $*"; }
pass() { echo "ok: $*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }

note "build the .deb"
# A build of its own (not the suite's, which may be ASan's), niced and on
# two jobs so the tests running next to it keep their timing.
cmake -S "$SRC" -B "$T/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEMBER_TESTS=OFF \
    -DCMAKE_INSTALL_PREFIX=/usr >"$T/configure.log" 2>&1 ||
	{ tail -n 30 "$T/configure.log" >&2; fail "cmake configure"; }
nice -n 10 cmake --build "$T/build" -j2 >"$T/build.log" 2>&1 ||
	{ tail -n 30 "$T/build.log" >&2; fail "cmake build"; }
(cd "$T/build" && cpack -G DEB) >"$T/cpack.log" 2>&1 ||
	{ tail -n 30 "$T/cpack.log" >&2; fail "cpack -G DEB"; }
deb=$(find "$T/build" -maxdepth 1 -name 'ember_*.deb' -print -quit)
[[ -n $deb ]] || fail "cpack made no ember_*.deb"
pass "built $(basename "$deb")"

fields=$(dpkg-deb -f "$deb" Package Version Depends Recommends)
grep -q '^Depends: .*libevent' <<<"$fields" || fail "Depends lacks libevent (shlibdeps): $fields"
grep -q '^Depends: .*libjansson' <<<"$fields" || fail "Depends lacks libjansson: $fields"
grep -q '^Recommends: .*qemu-utils' <<<"$fields" || fail "Recommends lacks qemu-utils: $fields"
grep -q '^Recommends: .*nftables' <<<"$fields" || fail "Recommends lacks nftables (network nat): $fields"
pass "Depends computed by dpkg-shlibdeps, hypervisors and nftables recommended"
contents=$(dpkg-deb -c "$deb" | awk '{print $NF}')
for f in ./usr/sbin/emberd ./usr/bin/emberctl ./etc/ember/emberd.yaml \
    ./usr/lib/systemd/system/emberd.service ./usr/lib/systemd/system/emberd.socket \
    ./usr/lib/sysusers.d/ember.conf ./usr/lib/tmpfiles.d/ember.conf \
    ./usr/share/man/man8/emberd.8 ./usr/share/man/man1/emberctl.1 \
    ./usr/share/bash-completion/completions/emberctl; do
	grep -qx -- "$f" <<<"$contents" || fail "$f missing from the package"
done
pass "package holds binaries, config, units, sysusers/tmpfiles, manuals, completion"
mkdir "$T/control"
dpkg-deb -e "$deb" "$T/control"
grep -qx /etc/ember/emberd.yaml "$T/control/conffiles" || fail "emberd.yaml is not a conffile"
pass "/etc/ember/emberd.yaml is a conffile"

xmllint --noout "$SRC/packaging/launchd/dev.ember.emberd.plist" || fail "xmllint on the plist"
pass "launchd plist is well-formed XML"
bash -n "$SRC/packaging/completion/emberctl.bash" || fail "completion script does not parse"
cmp -s <("$T/build/client/emberctl" completion bash) "$SRC/packaging/completion/emberctl.bash" ||
	fail "'emberctl completion bash' differs from packaging/completion/emberctl.bash"
pass "'emberctl completion bash' prints the packaged script"

if [[ ${EMBER_SKIP_DPKG_INSTALL:-0} = 1 ]]; then
	echo "SKIP: dpkg -i and the installed checks (EMBER_SKIP_DPKG_INSTALL=1)"
	exit 77
fi
if [[ $(id -u) != 0 ]]; then
	echo "SKIP: dpkg -i and the installed checks need root (CI runs them as root)"
	exit 77
fi
if dpkg-query -W -f='${Status}' ember 2>/dev/null | grep -q 'ok installed'; then
	echo "SKIP: an ember package is already installed on this machine; not replacing it"
	exit 77
fi
for tool in man systemd-analyze; do
	command -v "$tool" >/dev/null || fail "$tool not installed (see PACKAGES in tests/run.sh)"
done

note "dpkg -i"
getent group ember >/dev/null && group_before=1
for d in /var/lib/ember /run/ember /etc/ember; do
	[[ -e $d ]] && dirs_before+=("$d")
done
installed=1
dpkg -i "$deb" >"$T/dpkg.log" 2>&1 || { cat "$T/dpkg.log" >&2; fail "dpkg -i"; }
pass "dpkg -i $(basename "$deb")"
getent group ember >/dev/null || fail "postinst did not create group ember"
pass "group ember exists"

out=$(/usr/bin/emberctl --version) || fail "emberctl --version"
[[ $out == "emberctl "* ]] || fail "emberctl --version printed '$out'"
pass "installed emberctl --version: $out"
out=$(/usr/sbin/emberd --check-config /etc/ember/emberd.yaml) ||
	fail "emberd --check-config /etc/ember/emberd.yaml: $out"
pass "installed emberd --check-config /etc/ember/emberd.yaml: $out"
/usr/sbin/emberd --version >/dev/null || fail "emberd --version"

# Checks unit syntax, directives, the executable and the man: links; works
# without systemd as PID 1 (it loads the units offline).
if ! systemd-analyze verify /usr/lib/systemd/system/emberd.socket \
    /usr/lib/systemd/system/emberd.service >"$T/verify.log" 2>&1 ||
    grep -Eiq 'unknown|invalid|failed|not executable|missing' "$T/verify.log"; then
	cat "$T/verify.log" >&2
	fail "systemd-analyze verify rejects the installed units"
fi
pass "systemd-analyze verify accepts emberd.service and emberd.socket"

for page in /usr/share/man/man8/emberd.8 /usr/share/man/man1/emberctl.1; do
	warnings=$(MANWIDTH=80 man --warnings -l "$page" 2>&1 >/dev/null) ||
		fail "man -l $page"
	[[ -z $warnings ]] || fail "man -l $page warns: $warnings"
	MANWIDTH=80 man -l "$page" | grep 'SYNOPSIS' >/dev/null || fail "man -l $page rendered no SYNOPSIS"
done
pass "man -l renders emberd(8) and emberctl(1) without warnings"

note "dpkg --purge"
dpkg --purge ember >"$T/dpkg.log" 2>&1 || { cat "$T/dpkg.log" >&2; fail "dpkg --purge"; }
installed=
[[ ! -e /usr/sbin/emberd && ! -e /usr/lib/systemd/system/emberd.service ]] ||
	fail "files left behind after dpkg --purge"
pass "dpkg --purge removed the package"
# What the package deliberately keeps (the group, /var/lib/ember) goes too
# when this test made it.
[[ -n $group_before ]] || groupdel ember 2>/dev/null || true
for d in /var/lib/ember /run/ember /etc/ember; do
	[[ " ${dirs_before[*]} " == *" $d "* ]] || rmdir "$d" 2>/dev/null || true
done
echo "package checks passed"
