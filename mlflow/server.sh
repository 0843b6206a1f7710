#!/usr/bin/env bash
# Start, stop or query a shared MLflow tracking server for sweeps.
#
#   mlflow/server.sh start | stop | status | url
#
# Settings (environment):
#   MLFLOW_HOST        interface to listen on (default 127.0.0.1; 0.0.0.0 on a cluster head, where the
#                      VPC firewall keeps it private and laptops come in through an SSH tunnel)
#   MLFLOW_PORT        port (default 5000)
#   MLFLOW_STATE_DIR   where the store, artifacts, log and pid file live (default <repo>/outputs/mlflow-server)
#   MLFLOW_BACKEND_STORE_URI      default sqlite:///$MLFLOW_STATE_DIR/mlflow.db (postgresql://... works too)
#   MLFLOW_ARTIFACTS_DESTINATION  default $MLFLOW_STATE_DIR/artifacts (or s3://, gs://): the server proxies
#                      artifact uploads, so every node that reaches the port can log artifacts
#   MLFLOW_ALLOWED_HOSTS          optional, passed to --allowed-hosts (Host-header check of MLflow 3)
#   MLFLOW_BIN         the mlflow executable (default: <repo>/.venv/bin/mlflow if present, else mlflow)
#   MLFLOW_START_TIMEOUT          seconds to wait for /health (default 90)
#
# The server runs in its own session and process group (it forks gunicorn/uvicorn workers and, unless
# disabled, job runners): `stop` signals the whole group, waits, then SIGKILLs what is left, so nothing
# outlives it. The group id is kept in $MLFLOW_STATE_DIR/server.pid.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
host="${MLFLOW_HOST:-127.0.0.1}"
port="${MLFLOW_PORT:-5000}"
state="${MLFLOW_STATE_DIR:-$repo/outputs/mlflow-server}"
backend="${MLFLOW_BACKEND_STORE_URI:-sqlite:///$state/mlflow.db}"
artifacts="${MLFLOW_ARTIFACTS_DESTINATION:-$state/artifacts}"
timeout="${MLFLOW_START_TIMEOUT:-90}"
if [[ -n "${MLFLOW_BIN:-}" ]]; then
  bin="$MLFLOW_BIN"
elif [[ -x "$repo/.venv/bin/mlflow" ]]; then
  bin="$repo/.venv/bin/mlflow"
else
  bin="mlflow"
fi
pidfile="$state/server.pid"
logfile="$state/server.log"
probe_host="$host"
[[ "$probe_host" == "0.0.0.0" ]] && probe_host="127.0.0.1"
url="http://$probe_host:$port"

group_alive() {  # is any process of group $1 still there?
  kill -0 -- "-$1" 2>/dev/null
}

read_pgid() {
  [[ -s "$pidfile" ]] && cat "$pidfile" || true
}

status() {
  local pgid
  pgid="$(read_pgid)"
  if [[ -n "$pgid" ]] && group_alive "$pgid"; then
    echo "running: process group $pgid, $url (store $backend, artifacts $artifacts, log $logfile)"
    return 0
  fi
  echo "not running"
  return 3
}

start() {
  local pgid
  pgid="$(read_pgid)"
  if [[ -n "$pgid" ]] && group_alive "$pgid"; then
    echo "already running: process group $pgid, $url"
    return 0
  fi
  mkdir -p "$state"
  [[ "$artifacts" == *"://"* ]] || mkdir -p "$artifacts"
  local extra=()
  [[ -n "${MLFLOW_ALLOWED_HOSTS:-}" ]] && extra+=(--allowed-hosts "$MLFLOW_ALLOWED_HOSTS")
  # setsid: a new session, so the server's pid is its process group id; $$ of the inner shell is
  # the pid that exec turns into the server.
  MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false MLFLOW_DISABLE_TELEMETRY=true \
    setsid bash -c 'echo $$ > "$0"; exec "$@"' "$pidfile" \
    "$bin" server --workers 1 --host "$host" --port "$port" \
    --backend-store-uri "$backend" --serve-artifacts --artifacts-destination "$artifacts" \
    "${extra[@]}" >"$logfile" 2>&1 </dev/null &
  local waited=0
  until curl -sf "$url/health" >/dev/null 2>&1; do
    pgid="$(read_pgid)"
    if [[ -n "$pgid" ]] && ! group_alive "$pgid"; then
      echo "mlflow server exited during start; last lines of $logfile:" >&2
      tail -n 20 "$logfile" >&2
      rm -f "$pidfile"
      return 1
    fi
    if (( waited >= timeout * 2 )); then
      echo "mlflow server not healthy after ${timeout}s; stopping it (log: $logfile)" >&2
      stop >&2 || true
      return 1
    fi
    sleep 0.5
    waited=$((waited + 1))
  done
  echo "started: process group $(read_pgid), $url (store $backend, artifacts $artifacts, log $logfile)"
}

stop() {
  local pgid
  pgid="$(read_pgid)"
  if [[ -z "$pgid" ]] || ! group_alive "$pgid"; then
    echo "not running"
    rm -f "$pidfile"
    return 0
  fi
  kill -TERM -- "-$pgid" 2>/dev/null || true
  for _ in $(seq 1 30); do
    group_alive "$pgid" || break
    sleep 0.5
  done
  if group_alive "$pgid"; then
    kill -KILL -- "-$pgid" 2>/dev/null || true
    sleep 0.5
  fi
  rm -f "$pidfile"
  echo "stopped: process group $pgid"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  url) echo "$url" ;;
  *) echo "usage: $0 start|stop|status|url" >&2; exit 2 ;;
esac
