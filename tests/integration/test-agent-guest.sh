#!/usr/bin/env bash
# ember-agent inside a real guest kernel, before emberd has a vsock device:
# builds ember-mini with the agent (packaging/image/build-mini.sh), adds the
# kernel's vsock_loopback module as an extra initramfs layer, and boots it
# under QEMU TCG with ember.echo=5000. A guest rc script then talks to the
# agent through the guest's own vsock stack (CID 1, VMADDR_CID_LOCAL) with
# "ember-agent connect" and reports on the console: ping/info/error replies,
# 1 MiB echoed byte for byte, 16 echo connections at once, a refused port,
# and the agent's open fds before and after.
#
# Skips without QEMU or when the image cannot be built (no apt access).
# EMBER_TEST_BOOT_TIMEOUT (seconds, default 600) bounds the wait: TCG on a
# loaded machine can take minutes to boot.
set -euo pipefail

src=${EMBER_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
AGENT=${EMBER_AGENT:-${EMBER_BUILD_DIR:?set EMBER_BUILD_DIR or EMBER_AGENT}/packaging/agent/ember-agent}
timeout_s=${EMBER_TEST_BOOT_TIMEOUT:-600}
command -v qemu-system-x86_64 >/dev/null || { echo "SKIP: qemu-system-x86_64 not installed"; exit 77; }
[[ -x $AGENT ]] || { echo "FAIL: no agent binary at $AGENT" >&2; exit 1; }

T=$(mktemp -d "${TMPDIR:-/tmp}/ember-agent-guest.XXXXXX")
QEMU_PID=
cleanup() {
	if [[ -n $QEMU_PID ]]; then
		kill "$QEMU_PID" 2>/dev/null || true
		wait "$QEMU_PID" 2>/dev/null || true
	fi
	rm -rf "$T"
}
trap cleanup EXIT

pass() { echo "ok: $*"; }
fail() {
	echo "FAIL: $*" >&2
	[[ -s $T/console.log ]] && tail -n 40 "$T/console.log" | sed 's/^/  | /' >&2
	exit 1
}

cat >"$T/rc.local" <<'EOF'
insmod /lib/modules/$(uname -r)/vsock_loopback.ko || echo "AGENT-TEST no vsock_loopback"
(
	n=0
	while [ ! -e /run/ember-agent.pid ] && [ $n -lt 600 ]; do sleep 0.1; n=$((n + 1)); done
	pid=$(cat /run/ember-agent.pid)
	sleep 1
	echo "AGENT-TEST fds-before $(ls /proc/$pid/fd | wc -l)"
	echo "AGENT-TEST cid $(/sbin/ember-agent cid 2>&1)"
	printf '{"op":"ping","id":1}\n{"op":"info"}\nbad\n' |
	    /sbin/ember-agent connect 1 1024 | sed 's/^/AGENT-TEST reply /'
	head -c 1048576 /dev/urandom >/tmp/blob
	a=$(sha256sum </tmp/blob | cut -d' ' -f1)
	b=$(/sbin/ember-agent connect 1 5000 </tmp/blob | sha256sum | cut -d' ' -f1)
	[ "$a" = "$b" ] && echo "AGENT-TEST echo ok" || echo "AGENT-TEST echo bad $a $b"
	i=0
	while [ $i -lt 16 ]; do
		(/sbin/ember-agent connect 1 5000 </tmp/blob | sha256sum | cut -d' ' -f1 >/tmp/sum.$i) &
		i=$((i + 1))
	done
	wait
	echo "AGENT-TEST parallel-match $(cat /tmp/sum.* | grep -c "$a")"
	/sbin/ember-agent connect 1 4999 </dev/null 2>/dev/null
	echo "AGENT-TEST refused-exit $?"
	sleep 1
	echo "AGENT-TEST fds-after $(ls /proc/$pid/fd | wc -l)"
	echo "AGENT-TEST done"
) &
EOF

note() { echo "--- $*"; }
note "building ember-mini with the agent"
if ! EMBER_AGENT=$AGENT EMBER_RC_LOCAL=$T/rc.local \
    bash "$src/packaging/image/build-mini.sh" "$T/img" >"$T/build.log" 2>&1; then
	echo "SKIP: build-mini.sh failed: $(tail -n 1 "$T/build.log")"
	exit 77
fi
krel=$(jq -r .kernel_release "$T/img/image.json")
cache=${EMBER_IMAGE_CACHE:-${XDG_CACHE_HOME:-${HOME:-/var/tmp}/.cache}/ember/image}
ko=$(find "$cache/tree" -path "*/lib/modules/$krel/*" -name 'vsock_loopback.ko*' -print -quit)
[[ -n $ko ]] || fail "no vsock_loopback module for $krel in $cache/tree"
mkdir -p "$T/extra/lib/modules/$krel"
case $ko in
*.ko) cp "$ko" "$T/extra/lib/modules/$krel/vsock_loopback.ko" ;;
*.ko.xz) xz -dc "$ko" >"$T/extra/lib/modules/$krel/vsock_loopback.ko" ;;
*.ko.zst) zstd -qdc "$ko" >"$T/extra/lib/modules/$krel/vsock_loopback.ko" ;;
*) fail "unknown module format: $ko" ;;
esac
# The kernel unpacks concatenated initramfs archives in order.
(cd "$T/extra" && find . -mindepth 1 | cpio -o -H newc -R 0:0 --quiet | gzip) |
    cat "$T/img/initrd.gz" - >"$T/initrd.gz"

# Under TCG the guest calibrates its TSC against the PIT, which fails on a
# busy host and can hang the boot; give it the host's rate instead (as the
# QEMU backend does).
mhz=$(awk -F: '/^cpu MHz/ { printf "%d", $2 * 1000; exit }' /proc/cpuinfo)
tsc=${mhz:+ tsc_early_khz=$mhz}

note "booting under TCG (up to $timeout_s s)"
qemu-system-x86_64 -M microvm -accel tcg -cpu max -m 256M -smp 1 \
    -nodefaults -no-user-config -nographic -no-reboot \
    -chardev file,id=con,path="$T/console.log" -serial chardev:con \
    -global virtio-mmio.force-legacy=false \
    -kernel "$T/img/vmlinuz" -initrd "$T/initrd.gz" \
    -append "console=ttyS0 reboot=t panic=-1 quiet ember.echo=5000$tsc" \
    >"$T/qemu.log" 2>&1 &
QEMU_PID=$!
deadline=$((SECONDS + timeout_s))
until grep -qa 'AGENT-TEST done' "$T/console.log" 2>/dev/null; do
	kill -0 "$QEMU_PID" 2>/dev/null || fail "QEMU exited: $(cat "$T/qemu.log")"
	((SECONDS < deadline)) || fail "no 'AGENT-TEST done' within $timeout_s s"
	sleep 1
done

line() { grep -a "^AGENT-TEST $1" "$T/console.log" | head -n 1 | sed "s/^AGENT-TEST $1 *//" | tr -d '\r'; }
grep -qa '^ember-agent: listening on vsock port 1024' "$T/console.log" ||
    fail "no 'listening on vsock port 1024' line"
pass "agent started in the guest"
grep -qa '^ember-agent: echo service on vsock port 5000' "$T/console.log" ||
    fail "no echo service line"
pass "ember.echo=5000 honoured"
replies=$(grep -a '^AGENT-TEST reply ' "$T/console.log" | sed 's/^AGENT-TEST reply //' | tr -d '\r')
[[ $(sed -n 1p <<<"$replies") == '{"ok":true,"id":1,"pong":true,"version":"0.1.0"}' ]] ||
    fail "ping reply: $replies"
pass "ping over vsock"
jq -e ".ok and .kernel == \"$krel\" and .uptime_s > 0 and .hostname == \"ember-mini\"" \
    <<<"$(sed -n 2p <<<"$replies")" >/dev/null || fail "info reply: $replies"
pass "info over vsock"
jq -e '.ok == false' <<<"$(sed -n 3p <<<"$replies")" >/dev/null || fail "error reply: $replies"
pass "malformed request gets an error over vsock"
[[ $(line echo) == ok ]] || fail "echo: $(line echo)"
pass "1 MiB each way through the echo service"
[[ $(line parallel-match) == 16 ]] || fail "parallel echo: $(line parallel-match) of 16 matched"
pass "16 echo connections at once"
[[ $(line refused-exit) == 1 ]] || fail "connect to a closed port: exit $(line refused-exit)"
pass "a port nobody listens on is refused"
[[ $(line fds-before) == "$(line fds-after)" ]] ||
    fail "agent fds: $(line fds-before) before, $(line fds-after) after"
pass "no fd leaked in the guest"
