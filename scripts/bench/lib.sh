# Shared helpers of the side-by-side benchmark scripts (sourced, not run).

# wait_port PORT -- until something listens on 127.0.0.1:PORT (20 s at most)
wait_port() {
  for _ in $(seq 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "port $1 never opened" >&2; exit 1
}

# median X... -- the median of numbers
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

# ratio A B -- A / B with two decimals ("-" when B is 0)
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }

# nginx_conf DIR PORT -- writes DIR/nginx.conf: 2 workers serving DIR/www on 127.0.0.1:PORT,
# with DIR/www/100b.txt (100 bytes)
nginx_conf() {
  mkdir -p "$1/www"
  head -c 100 /dev/zero | tr '\0' 'x' > "$1/www/100b.txt"
  cat > "$1/nginx.conf" <<CONF
worker_processes 2;
pid $1/nginx.pid;
error_log $1/nginx-error.log warn;
events { worker_connections 4096; }
http {
    access_log off; sendfile on; tcp_nopush on; tcp_nodelay on;
    keepalive_timeout 65; keepalive_requests 1000000;
    client_body_temp_path $1/tmp_body; proxy_temp_path $1/tmp_proxy;
    fastcgi_temp_path $1/tmp_fastcgi; uwsgi_temp_path $1/tmp_uwsgi; scgi_temp_path $1/tmp_scgi;
    default_type application/octet-stream;
    server { listen 127.0.0.1:$2; root $1/www; }
}
CONF
}

# redis_always DIR PORT -- starts redis-server with appendfsync always in DIR (background);
# the caller records $! to stop it
redis_always() {
  mkdir -p "$1"
  redis-server --bind 127.0.0.1 --port "$2" --dir "$1" --appendonly yes \
    --appendfsync always --save "" --daemonize no --logfile "$1/redis.log" &
}

# start_flo DATA_DIR PORT [ARGS...] -- starts the release build of Flo in the background with
# data in DATA_DIR, the API on 127.0.0.1:PORT and metrics on PORT+1; the caller records $!
start_flo() {
  local dir="$1" port="$2"; shift 2
  target/release/flo server start --data-dir "$dir" --dashboard-port "$port" \
    --metrics-port $((port + 1)) --log-level warn "$@" &
}

# maybe_redis DIR PORT -- if Redis is installed, starts it with appendfsync always (adding its
# pid to PIDS) and sets HAVE_REDIS=1; else HAVE_REDIS=0
maybe_redis() {
  HAVE_REDIS=0
  if command -v redis-server >/dev/null && command -v redis-benchmark >/dev/null; then
    redis_always "$1" "$2"
    PIDS+=($!)
    HAVE_REDIS=1
  fi
}

# wrk_rps URL [LUA] -- wrk -t2 -c64 for $DURATION (output kept in $WORK/last.txt); prints the
# requests per second; any non-2xx answer stops the script
wrk_rps() {
  local script=()
  [ -n "${2:-}" ] && script=(-s "$2")
  wrk -t2 -c64 -d"$DURATION" --latency "${script[@]}" "$1" > "$WORK/last.txt"
  if grep -q "Non-2xx" "$WORK/last.txt"; then echo "non-2xx answers:" >&2; cat "$WORK/last.txt" >&2; exit 1; fi
  awk '/Requests\/sec/ {print $2}' "$WORK/last.txt"
}
