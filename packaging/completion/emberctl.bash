# bash completion for emberctl(1). Installed as
# /usr/share/bash-completion/completions/emberctl; `emberctl completion bash`
# prints this same script (it is built into emberctl), so
#   source <(emberctl completion bash)
# works without installing anything.
#
# Nothing here is a copy of emberctl's verb table: commands come from
# `emberctl --help` and each command's options from `emberctl CMD --help`,
# so the completion always matches the emberctl it runs. VM and image names
# come from emberd (`emberctl vm list --json`, `emberctl image list --json`)
# over the socket the command line names, and complete to nothing when
# emberd cannot be reached.

# _emberctl_commands EMBERCTL: "group" or "group name" per line.
_emberctl_commands()
{
	"$1" --help 2>/dev/null | while IFS= read -r line; do
		case $line in
		commands:) on=1 ;;
		'') [ -n "${on:-}" ] && break ;;
		'  '[a-z]*)
			[ -n "${on:-}" ] || continue
			set -- $line
			case ${2:-} in
			[a-z]*) echo "$1 $2" ;;
			*) echo "$1" ;;
			esac
			;;
		esac
	done
}

# _emberctl_names EMBERCTL-AND-GLOBAL-ARGS... GROUP: names from `GROUP list`.
_emberctl_names()
{
	local json
	json=$("$@" list --json 2>/dev/null) || return 0
	if command -v jq >/dev/null 2>&1; then
		jq -r '.[]? | arrays | .[] | .name? // empty' <<<"$json" 2>/dev/null
	else
		grep -o '"name": *"[^"]*"' <<<"$json" | sed 's/.*: *"\(.*\)"/\1/'
	fi
}

_emberctl()
{
	local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
	local ctl=${COMP_WORDS[0]} i word group= name= nargs=0
	local -a global=() cmds=()

	# The global options given so far (so names come from the same emberd)
	# and the command words.
	for ((i = 1; i < COMP_CWORD; i++)); do
		word=${COMP_WORDS[i]}
		if [ -z "$group" ]; then
			case $word in
			--socket|--timeout)
				global+=("$word" "${COMP_WORDS[i+1]}")
				((i++))
				continue ;;
			-*) global+=("$word"); continue ;;
			esac
			group=$word
			continue
		fi
		case $word in
		-f|--file|--image|--kernel|--vmlinux|--initrd|--rootfs|--rootfs-dir|\
		--rootfs-size|--cpus|--memory|--disk-size|--boot-args|--backend|\
		--network|--timeout|--vm|--type|--since)
			((i++)); continue ;;
		-*) continue ;;
		esac
		if [ -z "$name" ] && _emberctl_commands "$ctl" | grep -qx "$group $word"; then
			name=$word
		else
			((nargs++))
		fi
	done

	# Option values.
	case $prev in
	--socket)
		COMPREPLY=($(compgen -f -- "$cur")); return ;;
	-f|--file|--kernel|--vmlinux|--initrd|--rootfs)
		COMPREPLY=($(compgen -f -- "$cur")); return ;;
	--rootfs-dir)
		COMPREPLY=($(compgen -d -- "$cur")); return ;;
	--image)
		COMPREPLY=($(compgen -W "$(_emberctl_names "$ctl" "${global[@]}" image)" -- "$cur"))
		return ;;
	--vm)
		COMPREPLY=($(compgen -W "$(_emberctl_names "$ctl" "${global[@]}" vm)" -- "$cur"))
		return ;;
	--type)
		COMPREPLY=($(compgen -W "vm.status vm.exited vm.deleted agent.ready agent.lost
		    vsock.opened vsock.closed image.progress disk.progress daemon.reload
		    daemon.shutdown" -- "$cur")); return ;;
	--since)
		return ;;
	--backend)
		COMPREPLY=($(compgen -W "auto qemu firecracker" -- "$cur")); return ;;
	--network)
		COMPREPLY=($(compgen -W "none user" -- "$cur")); return ;;
	--timeout|--cpus|--memory|--disk-size|--rootfs-size|--boot-args)
		return ;;
	esac

	mapfile -t cmds < <(_emberctl_commands "$ctl")
	if [ -z "$group" ]; then
		if [[ $cur == -* ]]; then
			COMPREPLY=($(compgen -W "--socket --json --timeout --version --help" -- "$cur"))
		else
			COMPREPLY=($(compgen -W "$(printf '%s\n' "${cmds[@]}" | cut -d' ' -f1 | sort -u) help" -- "$cur"))
		fi
		return
	fi
	if [ -z "$name" ] && printf '%s\n' "${cmds[@]}" | grep -q "^$group "; then
		COMPREPLY=($(compgen -W "$(printf '%s\n' "${cmds[@]}" | sed -n "s/^$group //p") --help" -- "$cur"))
		return
	fi
	if [[ $cur == -* ]]; then
		COMPREPLY=($(compgen -W "$("$ctl" $group $name --help 2>/dev/null |
		    grep -oE -- '(^|[^a-z-])--?[a-z][a-z-]*' | grep -oE -- '--?[a-z][a-z-]*' |
		    sort -u) --json --help" -- "$cur"))
		return
	fi
	# Positional arguments that name an existing VM or image.
	case "$group $name $nargs" in
	"vm create "*|"vm list "*|"image import "*|"image list "*) ;;
	"vm fork 0"|"vm "*" 0")
		COMPREPLY=($(compgen -W "$(_emberctl_names "$ctl" "${global[@]}" vm)" -- "$cur")) ;;
	"image "*" 0")
		COMPREPLY=($(compgen -W "$(_emberctl_names "$ctl" "${global[@]}" image)" -- "$cur")) ;;
	esac
}

complete -F _emberctl emberctl
