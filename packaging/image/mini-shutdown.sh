#!/bin/sh
# /sbin/ember-shutdown of the ember-mini initramfs: stops the agent, flushes
# and unmounts the root disk, then powers off (or reboots) at once. Called by
# /init's signal traps and by acpid on a power-button press.
# Usage: ember-shutdown [poweroff|reboot]
# shellcheck shell=sh

export PATH=/sbin:/bin:/usr/sbin:/usr/bin
action=${1:-poweroff}

echo "ember-mini: $action" >/dev/console
if [ -f /run/ember-agent.pid ]; then
	kill "$(cat /run/ember-agent.pid)" 2>/dev/null
fi
sync
if grep -q ' /mnt/root ' /proc/mounts; then
	umount /mnt/root 2>/dev/null || mount -o remount,ro /mnt/root 2>/dev/null
fi
sync
case $action in
reboot) reboot -f ;;
*) poweroff -f ;;
esac
