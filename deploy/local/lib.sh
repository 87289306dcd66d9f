# Shared by up.sh, down.sh, test.sh and .ci/ops.sh: processes started in
# the background with their pid in a file, so that they can be stopped by
# that pid and nothing else.

# start NAME DIR COMMAND...: runs COMMAND with stdout in DIR/NAME.out and
# stderr in DIR/NAME.log; its pid goes to DIR/NAME.pid.
start() {
  local name="$1" dir="$2"
  shift 2
  nohup "$@" >"$dir/$name.out" 2>"$dir/$name.log" </dev/null &
  echo "$!" >"$dir/$name.pid"
}

# wait_line FILE REGEX SECONDS: prints the first line of FILE matching
# REGEX (extended), waiting at most SECONDS; fails when none came.
wait_line() {
  local file="$1" regex="$2" seconds="$3" line
  local deadline=$((SECONDS + seconds))
  while ((SECONDS < deadline)); do
    if line=$(grep -m1 -E "$regex" "$file" 2>/dev/null); then
      echo "$line"
      return 0
    fi
    sleep 0.2
  done
  echo "FAIL: no line matching /$regex/ in $file within ${seconds}s" >&2
  [[ -f "$file" ]] && tail -20 "$file" >&2
  return 1
}

# listening_on FILE SECONDS: the host:port a voucherd or gateway-sim
# process printed ("... listening on http://HOST:PORT").
listening_on() {
  wait_line "$1" 'listening on http://' "$2" | sed -E 's|.*listening on http://([^ ]+).*|\1|'
}

# free_port: a port nobody listens on now on 127.0.0.1.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# wait_http URL SECONDS: until URL answers 2xx.
wait_http() {
  local url="$1" seconds="$2"
  local deadline=$((SECONDS + seconds))
  while ((SECONDS < deadline)); do
    curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null && return 0
    sleep 0.3
  done
  echo "FAIL: $url did not answer within ${seconds}s" >&2
  return 1
}

# stop_pids DIR: SIGTERM to every DIR/*.pid still alive, SIGKILL to those
# that outlive 15 s, and fails if any is left. Only those pids.
stop_pids() {
  local dir="$1" file pid alive
  shopt -s nullglob
  for file in "$dir"/*.pid; do
    pid=$(cat "$file")
    kill -TERM "$pid" 2>/dev/null || true
  done
  local deadline=$((SECONDS + 15))
  while ((SECONDS < deadline)); do
    alive=0
    for file in "$dir"/*.pid; do
      kill -0 "$(cat "$file")" 2>/dev/null && alive=1
    done
    ((alive == 0)) && break
    sleep 0.2
  done
  for file in "$dir"/*.pid; do
    pid=$(cat "$file")
    if kill -0 "$pid" 2>/dev/null; then
      echo "$(basename "$file" .pid) (pid $pid) ignored SIGTERM; SIGKILL" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  sleep 0.2
  local left=0
  for file in "$dir"/*.pid; do
    pid=$(cat "$file")
    if kill -0 "$pid" 2>/dev/null; then
      echo "FAIL: $(basename "$file" .pid) (pid $pid) is still running" >&2
      left=1
    else
      mv "$file" "$file.stopped"
    fi
  done
  shopt -u nullglob
  return "$left"
}
