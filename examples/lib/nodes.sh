# examples/lib/nodes.sh — sourced by the example scripts (bash): start swarmlite servers in
# the background on ephemeral loopback ports, wait until they print their addresses, and
# stop them again. Not a program of its own.
#
#   swl_start NAME LOGFILE CMD ARGS…   start CMD in the background; stdout+stderr go to LOGFILE
#   swl_wait_ready NAME                wait for the "listen: HOST:PORT" and "http: URL" lines;
#                                      sets SWL_LISTEN[NAME] and SWL_HTTP[NAME]
#   swl_stop NAME                      SIGTERM, up to 10 s, then SIGKILL; returns the exit code
#   swl_stop_all                       swl_stop every node still running (for an EXIT trap)

#
# Sourcing it also turns SIGTERM/SIGINT/SIGHUP into a normal exit, so the sourcing script's
# EXIT trap (which should call swl_stop_all) runs when CTest or Ctrl-C stops it: bash skips
# EXIT traps when killed by an untrapped signal and would leave the servers running.

declare -A SWL_PID=() SWL_LOG=() SWL_LISTEN=() SWL_HTTP=()
trap 'exit 143' TERM
trap 'exit 130' INT
trap 'exit 129' HUP

swl_start() {
  local name=$1 log=$2
  shift 2
  "$@" >"$log" 2>&1 &
  SWL_PID[$name]=$!
  SWL_LOG[$name]=$log
}

swl_wait_ready() {
  local name=$1 pid=${SWL_PID[$1]} log=${SWL_LOG[$1]} i
  for i in $(seq 1 300); do  # up to 30 s: the machine may be busy
    if grep -q '^http: ' "$log" 2>/dev/null; then
      SWL_LISTEN[$name]=$(sed -n 's/^listen: //p' "$log" | head -n 1)
      SWL_HTTP[$name]=$(sed -n 's/^http: //p' "$log" | head -n 1)
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "$name exited before it was ready; its output:" >&2
      cat "$log" >&2
      return 1
    fi
    sleep 0.1
  done
  echo "$name did not print its addresses within 30 s; its output:" >&2
  cat "$log" >&2
  return 1
}

swl_stop() {
  local name=$1 pid=${SWL_PID[$1]:-} rc=0 i
  [[ -n "$pid" ]] || return 0
  unset "SWL_PID[$name]"
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "$name did not stop within 10 s of SIGTERM; killing it" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || rc=$?
  return "$rc"
}

swl_stop_all() {
  local name
  for name in "${!SWL_PID[@]}"; do swl_stop "$name" || true; done
}
