# bench/lib.sh: helpers shared by the bench/ scripts.
# Sourced, not run.

log() { echo "bench: $*" >&2; }

HZ=$(getconf CLK_TCK 2>/dev/null || echo 100)

stop_pid() {              # stop_pid PID: TERM, up to 15 s, then KILL
  local pid=$1 i
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null
  for i in $(seq 150); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  log "pid $pid did not stop on SIGTERM; killing it"
  kill -KILL "$pid" 2>/dev/null
}

# A free TCP port on 127.0.0.1, below the ephemeral range (32768-60999) so
# that the load generators' own connections cannot take it.
free_port() {
  local p i
  for i in $(seq 200); do
    p=$((20000 + RANDOM % 12000))
    if [ -z "$(ss -Htan "( sport = :$p or dport = :$p )" 2>/dev/null)" ]; then
      echo "$p"
      return 0
    fi
  done
  return 1
}

busy_cpu() {              # CPU seconds all processes have used since boot
  awk -v hz="$HZ" '$1 == "cpu" { printf "%.2f", ($2 + $3 + $4) / hz }' /proc/stat
}
# Waits (at most 30 s) until the machine has been nearly idle for a second,
# so that a timed run does not start while something else is busy.
wait_quiet() {
  local i b0 b1
  for i in $(seq 30); do
    b0=$(busy_cpu)
    sleep 1
    b1=$(busy_cpu)
    awk -v a="$b0" -v b="$b1" 'BEGIN { exit !(b - a < 0.2) }' && return 0
    [ "$i" = 1 ] && log "waiting for other processes to quiet down (at most 30 s)"
  done
  log "the machine stayed busy; measuring anyway"
}
ratio() {                 # ratio A B: A/B with two decimals, or n/a
  awk -v a="$1" -v b="$2" 'BEGIN {
    if (a ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/ && b + 0 > 0) printf "%.2f", a / b
    else printf "n/a" }'
}


# An admin for the benchmark in a fresh livedb data dir (the server stopped):
# livedb_admin BIN DIR.
BENCH_EMAIL=bench@bench.livedb
BENCH_PASSWORD=bench-password-1
livedb_admin() {
  echo "$BENCH_PASSWORD" | "$1" account add --data "$2" --email "$BENCH_EMAIL" --role admin \
    --password-stdin >/dev/null
}
# Logs that admin in: livedb_token URL prints the token.
livedb_token() {
  curl -sS -m 10 "$1/v1/auth/login" \
    -d "{\"email\":\"$BENCH_EMAIL\",\"password\":\"$BENCH_PASSWORD\"}" |
    sed -n 's/.*"token":"\([^"]*\)".*/\1/p'
}

# wrk prints durations as 950.00us, 1.23ms, 1.02s or 1.50m: to milliseconds.
to_ms() {
  awk -v v="$1" 'BEGIN {
    n = v + 0
    if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n = n
    else if (v ~ /m$/) n *= 60000; else if (v ~ /s$/) n *= 1000
    printf "%.2f", n }'
}

wrk_field() {             # wrk_field FILE: requests/s, p50 ms, p99 ms
  local f=$1 rps p50 p99
  rps=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' "$f")
  p50=$(awk '$1 == "50%" {print $2}' "$f")
  p99=$(awk '$1 == "99%" {print $2}' "$f")
  echo "${rps:-n/a} $( [ -n "$p50" ] && to_ms "$p50" || echo n/a) $( [ -n "$p99" ] && to_ms "$p99" || echo n/a)"
}
