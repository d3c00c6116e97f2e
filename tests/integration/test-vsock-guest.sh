#!/usr/bin/env bash
# Guest-initiated vsock under TCG: the guest's root disk runs an ember-rc at
# boot that connects to the host (CID 2) with ember-agent:
#   - port 7000 reaches the program listening on <vsock.sock>_7000, which
#     sees "hello" and answers;
#   - port 7001, where nobody listens, is reset at once: the agent reports
#     "Connection reset" well within the 2 s a timeout would take;
#   - port 7002 carries 1 MiB of random bytes to a socat listener; the md5
#     the guest prints matches the file the host received.
set -u
. "$(dirname "${BASH_SOURCE[0]}")/vsock-lib.sh"

ensure_agent_image
start_emberd

mkdir -p "$T/rootdir"
cat >"$T/rootdir/ember-rc" <<'EOF'
#!/bin/sh
r=$(echo hello | ember-agent connect 2 7000 2>&1)
echo "G2H-REPLY rc=$? [$r]"
t0=$(cut -d' ' -f1 /proc/uptime)
e=$(echo x | ember-agent connect 2 7001 2>&1)
rc=$?
t1=$(cut -d' ' -f1 /proc/uptime)
echo "G2H-NOLISTENER rc=$rc t0=$t0 t1=$t1 [$e]"
dd if=/dev/urandom of=/tmp/blob bs=1024 count=1024 2>/dev/null
echo "G2H-BLOB md5=$(md5sum </tmp/blob | cut -d' ' -f1)"
ember-agent connect 2 7002 </tmp/blob >/dev/null 2>/tmp/err
echo "G2H-BLOB-SENT rc=$? [$(cat /tmp/err)]"
EOF
ctl image import g2h --kernel "$IMAGE_DIR/vmlinuz" --initrd "$IMAGE_DIR/initrd.gz" \
    --boot-args "$BOOT_ARGS" --rootfs-dir "$T/rootdir" --rootfs-size 16M >/dev/null ||
    fail "image import g2h"
ctl vm create g --image g2h --vsock --no-start >/dev/null || fail "vm create g --no-start"
S=$(vsock_of g)

"$VSOCK_CLIENT" listen "${S}_7000" --reply hello-from-host --timeout 150 >"$T/listen.out" 2>&1 &
lpid=$!
socat -u "UNIX-LISTEN:${S}_7002" "CREATE:$T/blob" 2>"$T/socat.err" &
spid=$!
wait_file_line "$T/listen.out" 'listening on' 10 || fail "listener: $(cat "$T/listen.out")"
deadline=$((SECONDS + 10))
until [[ -S ${S}_7002 ]]; do
	((SECONDS < deadline)) || fail "socat did not listen on ${S}_7002: $(cat "$T/socat.err")"
	sleep 0.05	# poll interval
done
start_booted g
c=$(console_since g "$BOOT_OFFSET")

note "guest -> host listener on vsock.sock_7000"
line=$(grep 'G2H-REPLY' <<<"$c") || fail "no G2H-REPLY on the console: $(tail -n 20 <<<"$c")"
echo "$line"
grep -q 'G2H-REPLY rc=0 \[hello-from-host\]' <<<"$line" || fail "the guest's connect got: $line"
wait_exit "$lpid" 10
cat "$T/listen.out"
grep -q "received 'hello'" "$T/listen.out" || fail "the listener did not see hello: $(cat "$T/listen.out")"
pass "the host listener saw 'hello' and the guest printed its answer"

note "guest -> host port with no listener: a reset at once"
line=$(grep 'G2H-NOLISTENER' <<<"$c") || fail "no G2H-NOLISTENER on the console"
echo "$line"
grep -q 'G2H-NOLISTENER rc=1 ' <<<"$line" || fail "the agent did not fail: $line"
grep -qi 'connection reset' <<<"$line" || fail "the agent did not report a reset: $line"
t0=$(sed -n 's/.* t0=\([0-9.]*\) .*/\1/p' <<<"$line")
t1=$(sed -n 's/.* t1=\([0-9.]*\) .*/\1/p' <<<"$line")
awk -v a="$t0" -v b="$t1" 'BEGIN { exit !(b - a < 1.5) }' ||
    fail "the reset took $t0 -> $t1 s of guest uptime, as long as a timeout"
pass "connect to port 7001 was reset in $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }') s: ${line#*\[}"

note "1 MiB guest -> host"
line=$(grep 'G2H-BLOB-SENT' <<<"$c") || fail "no G2H-BLOB-SENT on the console"
grep -q 'rc=0' <<<"$line" || fail "the guest failed to send: $line"
wait_exit "$spid" 10
[[ $EXIT_STATUS == 0 ]] || fail "socat failed: $(cat "$T/socat.err")"
want=$(sed -n 's/.*G2H-BLOB md5=\([0-9a-f]*\).*/\1/p' <<<"$c")
got=$(md5sum <"$T/blob" | cut -d' ' -f1)
assert_eq 1048576 "$(stat -c %s "$T/blob")" "the host received 1 MiB"
assert_eq "$want" "$got" "md5 of the guest's 1 MiB as received on the host"

grep 'vsock' "$LOG" | grep -E 'guest connection to .*_7001' >/dev/null ||
    fail "emberd logged no refused guest connection to _7001"
pass "emberd logged the refused guest connection: $(grep -m1 -E 'guest connection to .*_7001' "$LOG")"
ctl vm stop g >/dev/null || fail "vm stop g"
stop_emberd
echo "PASS"
