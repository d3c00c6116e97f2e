#!/usr/bin/env bash
# ember quickstart: installs the build's Debian packages (only when some are
# missing), builds into build/plain, starts a private emberd on a fresh state
# directory under /tmp, walks through the control plane with emberctl, builds
# the ember-mini guest image (with ember-agent; only when the one in
# build/plain/image-mini was built from other inputs) and imports it as the
# default image. Then what ember is for, in QEMU guests without network:
# a VM created with --vsock --wait, vm exec in it, a host->guest connection
# through its vsock.sock with socat to the agent's echo service, a
# guest->host connection to a socat listener on vsock.sock_<port>, and a fork
# that gets its own CID. It ends with the time each step took.
#
# Each run uses its own state directory, so it can be run any number of
# times, before or after tests/run.sh (which builds build/plain too; the image
# is shared under the same lock the tests take); the directory is removed
# when everything succeeded and kept (with emberd.log) when something failed.
set -euo pipefail

# Debian 12 packages to build and run ember (tests/run.sh has the test set).
PACKAGES=(
	build-essential cmake pkg-config
	libevent-dev libjansson-dev libyaml-dev libcurl4-openssl-dev check
	qemu-system-x86 qemu-utils e2fsprogs cpio kmod lz4 util-linux socat
)
START_TIMEOUT=10	# seconds for emberd to create its socket
STOP_TIMEOUT=15		# seconds for emberd to exit after SIGTERM
WAIT_TIMEOUT=120	# seconds for a guest's agent to answer (vm create/start --wait)
IO_TIMEOUT=20		# seconds for one vsock exchange
ECHO_PORT=5000		# the agent's echo service in the guest (ember.echo=)
HOST_PORT=7000		# the host listener the guest connects to (vsock.sock_7000)
# QEMU's accelerator: auto uses KVM when /dev/kvm opens read-write, else TCG.
# Set EMBER_QEMU_ACCEL=tcg where /dev/kvm exists but does not work (nested).
QEMU_ACCEL=${EMBER_QEMU_ACCEL:-auto}

cd "$(dirname "${BASH_SOURCE[0]}")/.."

emberd_pid=""
listener_pid=""
state=""
ok=0

say() {
	printf '\n==> %s\n' "$*"
}

die() {
	echo "quickstart: $*" >&2
	exit 1
}

# Steps and their durations, for the closing summary. step LABEL TITLE ends
# the current step and starts the next one (LABEL in the summary, TITLE now).
step_names=()
step_usecs=()
step_name=""
step_t0=0
now_usec() { echo "${EPOCHREALTIME/./}"; }
end_step() {
	if [ -n "$step_name" ]; then
		step_names+=("$step_name")
		step_usecs+=($(($(now_usec) - step_t0)))
	fi
	step_name=""
}
step() {
	end_step
	step_name=$1
	step_t0=$(now_usec)
	say "$2"
}
summary() {
	local i total=0
	end_step
	printf '\n%-34s %8s\n' "step" "seconds"
	for i in "${!step_names[@]}"; do
		printf '%-34s %8.1f\n' "${step_names[$i]}" \
		    "$(awk -v u="${step_usecs[$i]}" 'BEGIN { print u / 1e6 }')"
		total=$((total + step_usecs[i]))
	done
	printf '%-34s %8.1f\n' "total" "$(awk -v u="$total" 'BEGIN { print u / 1e6 }')"
}

# Starts the private emberd with the config in $state and waits (with a
# deadline) for its socket.
start_emberd() {
	local deadline rc
	echo "starting emberd (state $state, log $state/emberd.log)"
	"$EMBERD" --state-dir "$state" --socket "$socket" --config "$state/emberd.yaml" \
	    >>"$state/emberd.log" 2>&1 &
	emberd_pid=$!
	deadline=$((SECONDS + START_TIMEOUT))
	until [ -S "$socket" ]; do
		if ! kill -0 "$emberd_pid" 2>/dev/null; then
			wait "$emberd_pid" && rc=0 || rc=$?
			emberd_pid=""
			die "emberd exited with status $rc before creating $socket"
		fi
		[ "$SECONDS" -lt "$deadline" ] ||
		    die "emberd did not create $socket within ${START_TIMEOUT}s"
		sleep 0.1	# poll interval
	done
}

write_config() {
	printf 'default_image: mini\nqemu:\n  accel: %s\n' "$1" >"$state/emberd.yaml"
}

# stop_emberd: SIGTERM, wait up to STOP_TIMEOUT, then SIGKILL. Returns 0
# only when emberd exited by itself with status 0.
stop_emberd() {
	local pid=$emberd_pid deadline rc=0
	emberd_pid=""
	kill -TERM "$pid" 2>/dev/null || true
	deadline=$((SECONDS + STOP_TIMEOUT))
	while kill -0 "$pid" 2>/dev/null; do
		if [ "$SECONDS" -ge "$deadline" ]; then
			echo "quickstart: emberd did not exit within ${STOP_TIMEOUT}s of SIGTERM; killing it" >&2
			kill -KILL "$pid" 2>/dev/null || true
			wait "$pid" 2>/dev/null || true
			return 1
		fi
		sleep 0.1	# poll interval
	done
	wait "$pid" || rc=$?
	if [ "$rc" -ne 0 ]; then
		echo "quickstart: emberd exited with status $rc after SIGTERM" >&2
		return 1
	fi
}

on_exit() {
	if [ -n "$listener_pid" ]; then
		kill "$listener_pid" 2>/dev/null || true
		wait "$listener_pid" 2>/dev/null || true
	fi
	if [ -n "$emberd_pid" ]; then
		# emberd leaves running VMs alone when it stops; take them down
		# first so that no QEMU outlives a failed quickstart.
		"$EMBERCTL" --socket "$socket" vm delete --force hello >/dev/null 2>&1 || true
		"$EMBERCTL" --socket "$socket" vm delete --force hello2 >/dev/null 2>&1 || true
		stop_emberd || true
	fi
	if [ -n "$state" ]; then
		if [ "$ok" = 1 ]; then
			rm -rf "$state"
		else
			echo "quickstart: FAILED; state directory kept: $state" >&2
			if [ -f "$state/emberd.log" ]; then
				echo "quickstart: last lines of $state/emberd.log:" >&2
				tail -n 20 "$state/emberd.log" >&2
			fi
		fi
	fi
}
trap on_exit EXIT

# Echoes and runs an emberctl command against the private emberd.
ctl() {
	printf '\n$ emberctl %s\n' "$*"
	"$EMBERCTL" --socket "$socket" "$@"
}

# Echoes a shell command line, then runs it with bash.
show() {
	printf '\n$ %s\n' "$1"
	bash -c "$1"
}

# wait_path PATH SECONDS: until PATH exists.
wait_path() {
	local deadline=$((SECONDS + $2))
	until [ -e "$1" ]; do
		[ "$SECONDS" -lt "$deadline" ] || return 1
		sleep 0.05	# poll interval
	done
}

# guest_cid NAME: the CID as the guest's agent sees it.
guest_cid() {
	"$EMBERCTL" --socket "$socket" vm exec "$1" -- ember-agent cid
}

step "Debian packages" "checking Debian packages"
# shellcheck source=packaging/install-packages.sh
. packaging/install-packages.sh
install_packages quickstart

step "build (build/plain)" "building into build/plain"
cmake -S . -B build/plain -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build build/plain -j"$(nproc)"
EMBERD=$PWD/build/plain/daemon/emberd
EMBERCTL=$PWD/build/plain/client/emberctl

state=$(mktemp -d /tmp/ember-quickstart.XXXXXX)
socket=$state/emberd.sock
image_dir=$PWD/build/plain/image-mini
# The private emberd boots the mini image when vm create names none.
write_config "$QEMU_ACCEL"

step "control plane" "the control plane: emberd, a VM record, vsock CIDs"
start_emberd
ctl daemon info
ctl vm create demo --vsock --no-start
ctl vm list
ctl vm inspect demo
ctl vsock allocations

# The image carries build/plain's ember-agent; it is rebuilt only when the
# agent or the image scripts differ (by sha256) from what image.json records.
# tests/run.sh's tests share this directory and take the same lock.
step "guest image" "the ember-mini guest image in $image_dir"
(
	flock -w 900 9 || die "cannot lock $image_dir.lock"
	if why=$(EMBER_BUILD_DIR=$PWD/build/plain bash packaging/image/build-mini.sh \
	    --check "$image_dir" 2>&1); then
		echo "up to date (agent sha256 $(sed -n 's/^ *"agent_sha256": "\([0-9a-f]*\)",$/\1/p' \
		    "$image_dir/image.json"))"
	else
		echo "building: ${why#build-mini.sh: }"
		EMBER_BUILD_DIR=$PWD/build/plain bash packaging/image/build-mini.sh "$image_dir"
	fi
) 9>"$image_dir.lock"
boot_args=$(sed -n 's/^  "boot_args": "\(.*\)",$/\1/p' "$image_dir/image.json")
[ -n "$boot_args" ] || die "no boot_args in $image_dir/image.json"
# ember.echo asks the guest's agent for a byte-for-byte echo service on that
# vsock port: a guest service for the host to talk to.
ctl image import mini --kernel "$image_dir/vmlinuz" --vmlinux "$image_dir/vmlinux" \
    --initrd "$image_dir/initrd.gz" --boot-args "$boot_args ember.echo=$ECHO_PORT"
ctl image list

# No --image: the config's default_image (mini) is booted. --wait returns once
# the guest's agent answers on vsock. Where /dev/kvm exists but cannot run
# guests (nested virtualization often), QEMU fails at once: say so and use
# TCG instead.
step "boot hello (--vsock --wait)" "a VM with vsock: vm create hello --vsock --wait"
if ! ctl vm create hello --vsock --wait "$WAIT_TIMEOUT"; then
	[ "$QEMU_ACCEL" = auto ] || exit 1
	say "the guest did not start with accel auto (KVM unusable here?); retrying with TCG"
	"$EMBERCTL" --socket "$socket" vm delete --force hello >/dev/null 2>&1 || true
	stop_emberd
	write_config tcg
	start_emberd
	ctl vm create hello --vsock --wait "$WAIT_TIMEOUT"
fi
console=$state/vms/hello/console.log
vsock=$state/vms/hello/vsock.sock
grep -q 'EMBER-MINI READY' "$console" || die "hello's agent answered but its console has no READY line"
echo
echo "the last lines of hello's console:"
tail -n 5 "$console"

step "vm exec" "vm exec: commands in the guest, through its agent"
ctl vm exec hello -- uname -sr
# shellcheck disable=SC2016 # expanded in the guest
guest_cmd='echo "$(hostname): up $(cut -d" " -f1 /proc/uptime) s, CID $(ember-agent cid)"'
printf '\n$ emberctl vm exec hello -- sh -c '\''%s'\''\n' "$guest_cmd"
"$EMBERCTL" --socket "$socket" vm exec hello -- sh -c "$guest_cmd"
cid_hello=$(guest_cid hello)

step "host -> guest (CONNECT $ECHO_PORT)" "host -> guest: socat to $vsock, CONNECT $ECHO_PORT"
echo "(the guest's agent echoes port $ECHO_PORT; emberd answers OK <host port> once the guest accepted)"
msg="hello guest, from the host at $(date +%T)"
printf '\n$ printf "CONNECT %s\\n%s\\n" | socat - UNIX-CONNECT:%s\n' "$ECHO_PORT" "$msg" "$vsock"
reply=$(printf 'CONNECT %s\n%s\n' "$ECHO_PORT" "$msg" |
    timeout "$IO_TIMEOUT" socat -t "$IO_TIMEOUT" - "UNIX-CONNECT:$vsock") ||
    die "socat through $vsock failed: $reply"
printf '%s\n' "$reply"
printf '%s\n' "$reply" | head -n 1 | grep -qE '^OK [0-9]+$' || die "no OK line from CONNECT $ECHO_PORT"
[ "$(printf '%s\n' "$reply" | sed -n 2p)" = "$msg" ] || die "the guest did not echo our line"

step "guest -> host (port $HOST_PORT)" "guest -> host: the guest connects to CID 2 port $HOST_PORT (${vsock}_$HOST_PORT)"
# One connection: the host service reads the guest's line, writes it to a
# file and answers it.
cat >"$state/host-service.sh" <<'EOF'
#!/bin/sh
IFS= read -r line
printf '%s\n' "$line" >"$1"
echo "hello guest, the host got your line"
EOF
printf '\n$ socat UNIX-LISTEN:%s EXEC:"sh host-service.sh" &\n' "${vsock}_$HOST_PORT"
socat "UNIX-LISTEN:${vsock}_$HOST_PORT" \
    "EXEC:sh $state/host-service.sh $state/from-guest.txt" 2>"$state/socat.err" &
listener_pid=$!
wait_path "${vsock}_$HOST_PORT" 10 || die "socat did not listen on ${vsock}_$HOST_PORT: $(cat "$state/socat.err")"
guest_cmd="echo \"hello host, from \$(hostname)\" | ember-agent connect 2 $HOST_PORT"
printf '\n$ emberctl vm exec hello -- sh -c '\''%s'\''\n' "$guest_cmd"
answer=$("$EMBERCTL" --socket "$socket" vm exec hello -- sh -c "$guest_cmd") ||
    die "the guest could not connect to the host listener: $answer"
printf '%s\n' "$answer"
deadline=$((SECONDS + IO_TIMEOUT))
while kill -0 "$listener_pid" 2>/dev/null; do
	[ "$SECONDS" -lt "$deadline" ] || die "the host listener did not finish within ${IO_TIMEOUT}s"
	sleep 0.05	# poll interval
done
wait "$listener_pid" || die "the host listener failed: $(cat "$state/socat.err")"
listener_pid=""
echo "the host listener received: $(cat "$state/from-guest.txt")"
grep -q '^hello host, from ' "$state/from-guest.txt" || die "the host listener did not get the guest's line"
printf '%s\n' "$answer" | grep -q '^hello guest, the host got your line$' ||
    die "the guest did not get the host's answer"

step "fork hello2 (stop, fork, start)" "a fork with its own CID: vm stop hello; vm fork hello hello2; vm start hello2 --wait"
ctl vm stop hello
ctl vm fork hello hello2 --no-start
ctl vm start hello2 --wait "$WAIT_TIMEOUT"
cid_hello2=$(guest_cid hello2)
ctl vsock allocations
echo
echo "hello's guest saw CID $cid_hello; its fork hello2's guest sees CID $cid_hello2"
[ "$cid_hello" != "$cid_hello2" ] || die "the fork has the same CID as its parent"

step "clean up" "cleaning up: stop and delete the VMs, stop emberd"
ctl vm stop hello2
ctl vm delete hello2
ctl vm delete hello
ctl vm delete demo
echo "stopping emberd (pid $emberd_pid)"
stop_emberd

ok=1
summary
say "quickstart finished: emberd, emberctl, QEMU guests with their agent, and vsock both ways work"
