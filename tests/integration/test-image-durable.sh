#!/usr/bin/env bash
# An image import's record reaches the disk through the group-commit writer
# (daemon/durable.c), not on the event loop: strace attached to every
# thread of emberd sees image.json fsync'd and renamed into the staging
# directory by the writer thread, then the staging directory renamed to
# images/<name>, then images/ fsync'd, and no fsync, fdatasync or syncfs
# on the loop's thread (emberd's main thread, whose tid is its pid). The
# files the import wrote (rootfs, kernel) are synced by the writer before
# image.json is renamed into place. The imported image survives a kill -9;
# a second import of the name is refused. image.delete takes the image out
# of the store at once (a rename to trash on the loop) and is answered only
# after the writer fsync'd images/ (its reply is written after that fsync),
# an import of the name in the same JSON-RPC batch is refused busy rather
# than meeting the delete's move, a kill -9 right after the answer leaves
# no image of that name, and the tree is unlinked by another thread (no
# unlink under the trash on the loop's); trash and staging directories a
# crash left are removed after a restart.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

head -c 65536 /dev/urandom >"$T/kernel"
head -c $((4 << 20)) /dev/zero >"$T/rootfs"
start_emberd

strace_emberd "$T/strace.out" -y -s 256 \
    -e trace=fsync,fdatasync,syncfs,rename,renameat,renameat2,unlink,unlinkat,rmdir,writev

r=$(call_ok image.import "{\"name\":\"img1\",\"kernel\":\"$T/kernel\",\"rootfs\":\"$T/rootfs\"}")
assert_jq "$r" '.name == "img1"' "image.import answers the image"
[[ -s $STATE/images/img1/image.json ]] || fail "no $STATE/images/img1/image.json after the import"
pass "images/img1/image.json is in place when the import is answered"
shopt -s nullglob
left=("$STATE"/images/.import-*)
shopt -u nullglob
assert_eq 0 "${#left[@]}" "no staging directory left behind"

# A delete: the name is free when it is answered, the tree goes off the loop.
head -c $((4 << 20)) /dev/zero >"$T/rootfs2"
call_ok image.import "{\"name\":\"img2\",\"kernel\":\"$T/kernel\",\"rootfs\":\"$T/rootfs2\"}" >/dev/null
r=$(rpc '{"jsonrpc":"2.0","id":"del-img2","method":"image.delete","params":{"name":"img2"}}')
assert_jq "$r" '.result.name == "img2"' "image.delete answers the image it deleted"
[[ ! -e $STATE/images/img2 ]] || fail "images/img2 still there when image.delete is answered"
pass "images/img2 is gone when image.delete is answered"
r=$(call image.inspect '{"name":"img2"}')
assert_jq "$r" '.error.data.kind == "not_found"' "img2 is not found after its delete"
deadline=$((SECONDS + 20))
shopt -s nullglob
until trash=("$STATE"/images/.trash-*); [[ ${#trash[@]} -eq 0 ]]; do
	((SECONDS < deadline)) || fail "trash left 20 s after image.delete: ${trash[*]}"
	sleep 0.05	# poll interval, not synchronisation
done
shopt -u nullglob
pass "the deleted image's trash is removed"

# A delete and an import of the same name in one batch: the import is
# dispatched while the delete waits for the writer, and is refused.
call_ok image.import "{\"name\":\"img3\",\"kernel\":\"$T/kernel\"}" >/dev/null
batch="[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"image.delete\",\"params\":{\"name\":\"img3\"}},"
batch+="{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"image.import\",\"params\":{\"name\":\"img3\",\"kernel\":\"$T/kernel\"}}]"
r=$(rpc "$batch")
assert_jq "$r" '(.[] | select(.id == 1) | .result.name) == "img3"' "the batch's image.delete answers"
assert_jq "$r" '(.[] | select(.id == 2) | .error.data.kind) == "busy"' \
    "an import of a name whose delete is not durable yet is refused busy"
r=$(call image.inspect '{"name":"img3"}')
assert_jq "$r" '.error.data.kind == "not_found"' "img3 is not found after the batch"

kill -INT "$STRACE_PID"
wait "$STRACE_PID" 2>/dev/null || true
trace=$(cat "$T/strace.out")

loop_syncs=$(grep -E "^$EMBERD_PID +(fsync|fdatasync|syncfs)\(" <<<"$trace" || true)
[[ -z $loop_syncs ]] || fail "the loop's thread synced: $loop_syncs"
pass "no fsync, fdatasync or syncfs on the loop's thread"

# Line numbers of the steps, in the order strace saw them.
step() { grep -nE "$1" <<<"$trace" | head -n 1 | cut -d: -f1; }
json_sync=$(step "^[0-9]+ +fsync\([0-9]+<[^>]*/images/\.import-img1-[^>]*/\.image\.json\.tmp")
json_rename=$(step "^[0-9]+ +rename\(\"[^\"]*/\.import-img1-[^\"]*/\.image\.json\.tmp[^\"]*\", \"[^\"]*/image\.json\"")
dir_rename=$(step "^$EMBERD_PID +rename\(\"[^\"]*/images/\.import-img1-[^\"]*\", \"$STATE/images/img1\"")
[[ -n $json_sync && -n $json_rename && -n $dir_rename ]] ||
    fail "missing steps (image.json fsync '$json_sync', its rename '$json_rename', staging rename '$dir_rename') in: $trace"
images_sync=$(tail -n +"$dir_rename" <<<"$trace" | grep -nE "fsync\([0-9]+<$STATE/images>\)" | head -n 1 | cut -d: -f1)
[[ -n $images_sync ]] || fail "images/ was not fsync'd after the staging rename: $trace"
((json_sync < json_rename && json_rename < dir_rename)) ||
    fail "order: image.json fsync at $json_sync, renamed at $json_rename, staging renamed at $dir_rename"
pass "image.json fsync'd and renamed, then the staging directory renamed, then images/ fsync'd"
writer=$(sed -n "${json_sync}p" <<<"$trace" | awk '{print $1}')
[[ $writer != "$EMBERD_PID" ]] || fail "image.json was fsync'd on the loop's thread"
pass "image.json fsync'd by another thread (tid $writer, the writer)"

# The data: rootfs.img and vmlinuz synced (fdatasync, or one syncfs of
# their file system in a large batch) in the staging directory, by the
# writer, before image.json's rename.
for f in rootfs.img vmlinuz; do
	data_sync=$(step "^[0-9]+ +(fdatasync|fsync|syncfs)\([0-9]+<[^>]*/images/\.import-img1-[^>]*/$f>")
	[[ -n $data_sync ]] || fail "$f was not synced in the staging directory: $trace"
	((data_sync < json_rename)) ||
	    fail "order: $f synced at line $data_sync, after image.json's rename at $json_rename"
	tid=$(sed -n "${data_sync}p" <<<"$trace" | awk '{print $1}')
	[[ $tid != "$EMBERD_PID" ]] || fail "$f was synced on the loop's thread"
	pass "$f synced by another thread (tid $tid) before image.json's rename"
done

# The delete: renamed to trash on the loop, unlinked elsewhere.
trash_rename=$(step "^$EMBERD_PID +rename\(\"$STATE/images/img2\", \"$STATE/images/\.trash-img2-[^\"]*\"")
[[ -n $trash_rename ]] || fail "images/img2 was not renamed to trash on the loop: $trace"
pass "image.delete renamed images/img2 to trash on the loop's thread"
# The answer: written to the client after images/ was fsync'd (by the
# writer) following the rename.
reply_line=$(step "^$EMBERD_PID +writev\\([0-9]+<socket:.*del-img2")
[[ -n $reply_line ]] || fail "no reply to the image.delete (id del-img2) in: $trace"
img2_sync=$(tail -n +"$trash_rename" <<<"$trace" |
    grep -nE "(fsync|syncfs)\\([0-9]+<$STATE/images>\\)" | head -n 1 | cut -d: -f1)
[[ -n $img2_sync ]] || fail "images/ was not fsync'd after img2's move to trash: $trace"
img2_sync=$((trash_rename + img2_sync - 1))
((img2_sync < reply_line)) ||
    fail "image.delete answered (line $reply_line) before images/ was fsync'd (line $img2_sync)"
pass "image.delete answered after images/ was fsync'd following the move to trash"
loop_unlinks=$(grep -E "^$EMBERD_PID +(unlink|unlinkat|rmdir)\(.*\.trash-img2-" <<<"$trace" || true)
[[ -z $loop_unlinks ]] || fail "the loop's thread removed trash: $loop_unlinks"
removed=$(grep -E "^[0-9]+ +unlinkat\([0-9]+<[^>]*/images/\.trash-img2-[^>]*>, \"rootfs\.img\"" <<<"$trace" | awk '{print $1}' | head -n 1)
[[ -n $removed && $removed != "$EMBERD_PID" ]] ||
    fail "trash's rootfs.img was not unlinked by another thread: $trace"
pass "the trash's rootfs.img unlinked by another thread (tid $removed), none on the loop"

r=$(call image.import "{\"name\":\"img1\",\"kernel\":\"$T/kernel\",\"rootfs\":\"$T/rootfs\"}")
assert_jq "$r" '.error.data.kind == "already_exists"' "a second import of img1 is refused"

# What a crash leaves: trash and a staging directory, removed at start.
mkdir -p "$STATE/images/.trash-old-1" "$STATE/images/.import-old-1-1"
head -c 65536 /dev/zero >"$STATE/images/.trash-old-1/rootfs.img"
head -c 65536 /dev/zero >"$STATE/images/.import-old-1-1/rootfs.img"
# Killed right after a delete's answer: the image stays deleted.
call_ok image.import "{\"name\":\"img4\",\"kernel\":\"$T/kernel\"}" >/dev/null
call_ok image.delete '{"name":"img4"}' >/dev/null
restart_emberd
r=$(call image.inspect '{"name":"img4"}')
assert_jq "$r" '.error.data.kind == "not_found"' "img4, deleted and answered just before a kill -9, stays deleted"
[[ ! -e $STATE/images/img4 ]] || fail "images/img4 is back after the restart"
deadline=$((SECONDS + 20))
shopt -s nullglob
until left=("$STATE"/images/.trash-* "$STATE"/images/.import-*); [[ ${#left[@]} -eq 0 ]]; do
	((SECONDS < deadline)) || fail "left 20 s after the restart: ${left[*]}"
	sleep 0.05	# poll interval, not synchronisation
done
shopt -u nullglob
pass "a crash's trash and staging directories are removed after the restart"
r=$(call_ok image.list)
assert_jq "$r" '[.[] | .name? // .] | tostring | test("img1")' "img1 is listed after a kill -9 restart"
r=$(call_ok image.inspect '{"name":"img1"}')
assert_jq "$r" '.name == "img1" and (.rootfs | endswith("/images/img1/rootfs.img"))' \
    "image.inspect reads img1's record after the restart"
stop_emberd
echo "PASS"
