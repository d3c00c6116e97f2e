#!/usr/bin/env bash
# A VM is listed while its create is still being made durable, and answered
# once its record is on disk (a few ms later). Requests that name it in that
# window are not refused as busy: vm.inspect answers at once, and vm.pause,
# vm.resume and vm.stop queue behind the create's durability and then run
# (on this stopped VM: answered invalid_state, as after the create). A
# client creates VMs on one connection while another sends those requests
# back to back on a second; no reply may say busy, and some requests must
# have met the window (sent before the create was answered, and answered
# for the VM), else the test cannot tell and says SKIP.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

start_emberd

python3 - "$SOCK" >"$T/window.out" <<'PY'
import json, socket, sys, threading, time

sock_path = sys.argv[1]
ROUNDS = 30
METHODS = ["vm.inspect", "vm.pause", "vm.resume", "vm.stop"]

def connect():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sock_path)
    return s, s.makefile("r")

def call(s, f, rid, method, params):
    s.sendall((json.dumps({"jsonrpc": "2.0", "id": rid, "method": method,
                           "params": params}) + "\n").encode())
    line = f.readline()
    if not line:
        raise SystemExit("emberd closed the connection")
    return json.loads(line)

a, af = connect()
b, bf = connect()
busy, in_window, kinds = [], 0, {}
for rnd in range(ROUNDS):
    name = "q%d" % rnd
    answered = threading.Event()
    created = {}
    def create():
        created["r"] = call(a, af, 1, "vm.create",
                            {"name": name, "vsock": True, "start": False})
        answered.set()
    t = threading.Thread(target=create)
    t.start()
    deadline = time.monotonic() + 30
    i = 0
    while not answered.is_set() and time.monotonic() < deadline:
        method = METHODS[i % len(METHODS)]
        i += 1
        before = not answered.is_set()
        r = call(b, bf, i, method, {"name": name})
        kind = r.get("error", {}).get("data", {}).get("kind", "ok")
        kinds[kind] = kinds.get(kind, 0) + 1
        if kind == "busy":
            busy.append("%s %s: %s" % (method, name, r["error"]["message"]))
        elif before and kind in ("ok", "invalid_state"):
            in_window += 1
    t.join()
    if "result" not in created.get("r", {}):
        raise SystemExit("create %s failed: %s" % (name, created.get("r")))
print(json.dumps({"busy": busy, "in_window": in_window, "kinds": kinds}))
PY
out=$(cat "$T/window.out")
note "replies: $(jq -c .kinds <<<"$out"), sent before the create was answered and answered for the VM: $(jq .in_window <<<"$out")"
assert_jq "$out" '.busy | length == 0' "no request naming a VM whose create is not yet durable is refused busy"
if [[ $(jq .in_window <<<"$out") -eq 0 ]]; then
	stop_emberd
	echo "SKIP: no request met the window between listing and the create's answer"
	exit 77
fi
pass "requests sent in the window were answered for the VM"
r=$(call_ok vm.list)
assert_jq "$r" '[.vms[].name | select(startswith("q"))] | length == 30' "all 30 VMs listed"
stop_emberd
echo "PASS"
