#!/bin/sh
# /init of the ember-mini initramfs (busybox sh, PID 1; installed by
# build-mini.sh). It loads the modules listed in ember.order, mounts the root
# disk if one is given, runs the rc hooks, starts acpid and the agent (or says
# on the console that there is none), prints the one readiness line
# "EMBER-MINI READY <release>" and then waits. The power button (QMP
# system_powerdown), and SIGUSR1/SIGUSR2/SIGTERM (busybox halt/poweroff/
# reboot), power the guest off through /sbin/ember-shutdown.
#
# Kernel command line:
#   root=/dev/vdX | ember.root=/dev/vdX   ext4 disk to mount read-write at
#                                          /mnt/root; its /ember-rc is run
#   rootfstype=TYPE                       filesystem type (default ext4)
#   ember.hostname=NAME                   hostname (default /etc/hostname)
#   ember.debug=1                         print modules, devices and timings
#   ember.net=ADDR/PREFIX,GW[,DNS1[,DNS2[,DNS3]]]
#                                         emberd's network for the first
#                                         virtio-net device (eth0): IPv4
#                                         address and prefix, default
#                                         gateway (inside that subnet), and
#                                         up to three DNS servers (IPv4 or
#                                         IPv6) for /etc/resolv.conf (and,
#                                         with ember.workload and servers
#                                         given, bind-mounted over the
#                                         image's own regular
#                                         /etc/resolv.conf). A malformed
#                                         value is logged and ignored.
#   ember.workload=BASE64                 an OCI image's workload (emberd's):
#                                          the root disk is the image, left as
#                                          it is; proc, sys and dev are mounted
#                                          in it (where it has those
#                                          directories), its ember-rc is not
#                                          run, the agent's exec runs inside
#                                          it, and `ember-agent workload`
#                                          runs the entrypoint there, prints
#                                          EMBER-WORKLOAD-EXIT and powers off;
#                                          the agent logs to /run/ember-agent.log
# shellcheck shell=sh

export PATH=/sbin:/bin:/usr/sbin:/usr/bin
export HOME=/

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null || mdev -s
exec </dev/console >/dev/console 2>&1
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts 2>/dev/null
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run

say() {
	echo "ember-mini: $*"
}

krel=$(uname -r)
debug=0
root=
rootfstype=ext4
workload=0
net=
hostname=$(cat /etc/hostname 2>/dev/null)
# shellcheck disable=SC2013 # the command line is a list of words
for arg in $(cat /proc/cmdline); do
	case $arg in
	ember.debug=0) debug=0 ;;
	ember.debug | ember.debug=*) debug=1 ;;
	root=* | ember.root=*) root=${arg#*=} ;;
	rootfstype=*) rootfstype=${arg#*=} ;;
	ember.hostname=*) hostname=${arg#*=} ;;
	ember.workload=*) workload=1 ;;
	ember.net=*) net=${arg#*=} ;;
	esac
done

# debug MESSAGE: says MESSAGE with the uptime, under ember.debug=1.
debug() {
	[ "$debug" = 1 ] && say "[$(cut -d' ' -f1 /proc/uptime)] $*"
	return 0
}

shutdown_now() {
	exec /sbin/ember-shutdown "$1"
}
trap 'shutdown_now poweroff' USR1 USR2 TERM

# Modules, in the dependency order computed at build time. A failure is
# logged and the rest still load: a missing driver should cost one device,
# not the boot.
moddir=/lib/modules/$krel
debug "loading modules"
while read -r mod; do
	[ -n "$mod" ] || continue
	insmod "$moddir/$mod" || say "insmod $mod failed"
done <"$moddir/ember.order"
if [ "$debug" = 1 ]; then
	debug "modules: $(cut -d' ' -f1 /proc/modules | tr '\n' ' ')"
	for d in /sys/bus/virtio/devices/*; do
		[ -e "$d" ] || continue
		say "virtio ${d##*/}: device $(cat "$d/device") driver $(basename "$(readlink "$d/driver")" 2>/dev/null)"
	done
fi

[ -n "$hostname" ] && hostname "$hostname"
ip link set lo up 2>/dev/null

# --- ember.net= ---------------------------------------------------------------
# Every field is checked before anything is configured, so a value emberd
# did not write (or wrote wrong) leaves eth0 down instead of half set up.

# is_ipv4 TEXT: dotted quad, each part 0-255 without leading zeros.
is_ipv4() {
	case $1 in
	'' | *[!0-9.]* | .* | *. | *..*) return 1 ;;
	esac
	# shellcheck disable=SC2046 # split on the dots
	set -- $(echo "$1" | tr . ' ')
	[ $# -eq 4 ] || return 1
	for octet; do
		case $octet in
		[0-9] | [1-9][0-9] | [12][0-9][0-9]) ;;
		*) return 1 ;;
		esac
		[ "$octet" -le 255 ] || return 1
	done
}

# ipv4_int A.B.C.D: the address as a 32-bit number.
ipv4_int() {
	# shellcheck disable=SC2046
	set -- $(echo "$1" | tr . ' ')
	echo $((($1 << 24) | ($2 << 16) | ($3 << 8) | $4))
}

# is_ipv6 TEXT: hex groups and colons (an IPv4 tail allowed), one "::" at
# most, no zone; the kernel's parser has the last word.
is_ipv6() {
	case $1 in
	*[!0-9a-fA-F:.]* | *:::* | *::*::*) return 1 ;;
	*:*) ;;
	*) return 1 ;;
	esac
	[ ${#1} -le 45 ]
}

# parse_net VALUE: sets net_addr, net_prefix, net_gw and net_dns (a list),
# or returns 1 with net_error saying what is wrong.
parse_net() {
	net_addr='' net_prefix='' net_gw='' net_dns='' net_error=''
	case $1 in
	'' | ,* | *, | *,,*) net_error="empty field"; return 1 ;;
	*[!0-9a-fA-F:.,/]*) net_error="unexpected character"; return 1 ;;
	esac
	# shellcheck disable=SC2046 # split on the commas
	set -- $(echo "$1" | tr , ' ')
	[ $# -ge 2 ] || { net_error="no gateway"; return 1; }
	[ $# -le 5 ] || { net_error="more than three DNS servers"; return 1; }
	case $1 in
	*/*/* | */ | /*) net_error="address is not ADDR/PREFIX"; return 1 ;;
	*/*) ;;
	*) net_error="address has no /PREFIX"; return 1 ;;
	esac
	net_addr=${1%/*}
	net_prefix=${1#*/}
	is_ipv4 "$net_addr" || { net_error="bad address $net_addr"; return 1; }
	case $net_prefix in
	[1-9] | [12][0-9] | 3[0-2]) ;;
	*) net_error="bad prefix $net_prefix"; return 1 ;;
	esac
	net_gw=$2
	is_ipv4 "$net_gw" || { net_error="bad gateway $net_gw"; return 1; }
	a=$(ipv4_int "$net_addr")
	g=$(ipv4_int "$net_gw")
	mask=$(((0xffffffff << (32 - net_prefix)) & 0xffffffff))
	[ "$a" != "$g" ] || { net_error="gateway is the address"; return 1; }
	[ $((a & mask)) = $((g & mask)) ] ||
	    { net_error="gateway $net_gw is outside $net_addr/$net_prefix"; return 1; }
	shift 2
	for dns; do
		is_ipv4 "$dns" || is_ipv6 "$dns" ||
		    { net_error="bad DNS server $dns"; return 1; }
		net_dns="$net_dns $dns"
	done
}

# net_apply: eth0 up with the address and the default route, and
# /etc/resolv.conf. The driver publishes eth0 asynchronously.
net_apply() {
	n=0
	while [ ! -e /sys/class/net/eth0 ] && [ $n -lt 200 ]; do
		sleep 0.05
		n=$((n + 1))
	done
	if [ ! -e /sys/class/net/eth0 ]; then
		say "ember.net: no eth0 appeared (is there a virtio-net device?)"
		return 1
	fi
	if ! { ip addr add "$net_addr/$net_prefix" dev eth0 &&
	    ip link set eth0 up &&
	    ip route add default via "$net_gw" dev eth0; }; then
		say "ember.net: configuring eth0 failed"
		return 1
	fi
	: >/etc/resolv.conf
	for dns in $net_dns; do
		echo "nameserver $dns" >>/etc/resolv.conf
	done
	debug "eth0 $net_addr/$net_prefix via $net_gw, DNS:${net_dns:- none}"
}

net_ok=0
if [ -n "$net" ]; then
	if parse_net "$net"; then
		net_apply && net_ok=1
	else
		say "ignoring malformed ember.net=$net: $net_error"
	fi
fi

# The power button: button.ko registers it as an input device; acpid reads
# /dev/input/event* (it scans them once, at start) and runs
# /etc/acpi/PWRF/00000080 on KEY_POWER.
n=0
while [ ! -e /dev/input/event0 ] && [ $n -lt 20 ]; do
	sleep 0.05
	n=$((n + 1))
done
if [ -e /dev/input/event0 ]; then
	debug "starting acpid"
	acpid -c /etc/acpi -l /run/acpid.log -p /run/acpid.pid || say "acpid failed to start"
else
	say "no input device for the power button; system_powerdown will not work"
fi

# The root disk: wait briefly for the driver to publish it, then mount it
# read-write at /mnt/root.
if [ -n "$root" ]; then
	n=0
	while [ ! -b "$root" ] && [ $n -lt 100 ]; do
		sleep 0.05
		n=$((n + 1))
	done
	if [ ! -b "$root" ]; then
		say "root device $root did not appear"
	elif mount -t "$rootfstype" -o rw "$root" /mnt/root; then
		debug "mounted $root ($rootfstype) at /mnt/root"
	else
		say "cannot mount $root ($rootfstype) at /mnt/root"
	fi
fi

# An OCI image's root: the kernel's file systems inside it, for the
# workload and exec, which run chrooted there.
rc_hooks="/etc/ember/rc.local /mnt/root/ember-rc"
agent_root=
if [ "$workload" = 1 ]; then
	rc_hooks=/etc/ember/rc.local
	if grep -q ' /mnt/root ' /proc/mounts; then
		agent_root=/mnt/root
		[ -d /mnt/root/proc ] && mount -t proc proc /mnt/root/proc
		[ -d /mnt/root/sys ] && mount -t sysfs sysfs /mnt/root/sys
		if [ -d /mnt/root/dev ]; then
			mount -t devtmpfs devtmpfs /mnt/root/dev &&
			    mkdir -p /mnt/root/dev/pts &&
			    mount -t devpts devpts /mnt/root/dev/pts
		fi
		# The DNS servers, shown over the image's own resolv.conf
		# without writing to the image. A symlink (to a resolver's
		# runtime file) or a missing file cannot be covered this way.
		# Without servers from emberd the image keeps its own.
		if [ "$net_ok" = 1 ] && [ -n "$net_dns" ]; then
			if [ -f /mnt/root/etc/resolv.conf ] &&
			    [ ! -L /mnt/root/etc/resolv.conf ]; then
				mount --bind /etc/resolv.conf /mnt/root/etc/resolv.conf ||
				    say "ember.net: cannot bind /etc/resolv.conf into the image"
			else
				say "ember.net: the image has no regular /etc/resolv.conf; its workload gets no DNS servers"
			fi
		fi
	else
		say "the workload's root disk is not mounted; powering off"
		echo "EMBER-WORKLOAD-EXIT code=127"
		shutdown_now poweroff
	fi
fi

# Hooks: first the image's own, then the root disk's.
for rc in $rc_hooks; do
	[ -f "$rc" ] || continue
	debug "running $rc"
	EMBER_ROOT=/mnt/root sh "$rc" || say "$rc exited with status $?"
done
sync

if [ -x /sbin/ember-agent ]; then
	if [ -n "$agent_root" ]; then
		# The console is the workload's output: the agent logs aside.
		/sbin/ember-agent --root "$agent_root" 2>>/run/ember-agent.log &
	else
		/sbin/ember-agent &
	fi
	echo $! >/run/ember-agent.pid
	debug "started /sbin/ember-agent (pid $!)"
else
	say "NO AGENT: /sbin/ember-agent is missing, so vm exec, vm cp and --wait cannot reach this guest (rebuild the image with packaging/image/build-mini.sh)"
fi

echo "EMBER-MINI READY $krel"

if [ -n "$agent_root" ]; then
	if [ -x /sbin/ember-agent ]; then
		/sbin/ember-agent workload "$agent_root" &
	else
		say "no /sbin/ember-agent to run the workload; powering off"
		echo "EMBER-WORKLOAD-EXIT code=127"
		shutdown_now poweroff
	fi
fi

# Wait in the background so that the traps run as soon as a signal arrives;
# wait also reaps orphans that the kernel reparents to PID 1.
while :; do
	sleep 3600 &
	wait $!
done
