# Shared by scripts/run, scripts/test and scripts/bench: installs and starts what they need.
# Sourced, not run.

say() { printf '[custclass] %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    say "need root to run: $*"; return 1; fi
}

apt_updated=""
apt_install() {
  if ! command -v apt-get >/dev/null; then
    say "missing packages $*, and there is no apt-get here: install them by hand"; return 1
  fi
  if [ -z "$apt_updated" ]; then as_root apt-get update -qq >&2; apt_updated=1; fi
  say "installing $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
}

ensure_build_dependencies() {
  command -v cargo >/dev/null || { say "cargo is not on PATH: install the Rust toolchain (rustup) first"; exit 1; }
  local missing=()
  command -v pkg-config >/dev/null || missing+=(pkg-config)
  if ! pkg-config --exists libmariadb 2>/dev/null && ! pkg-config --exists mysqlclient 2>/dev/null; then
    missing+=(libmariadb-dev)
  fi
  command -v cc >/dev/null || missing+=(gcc)
  if [ ${#missing[@]} -gt 0 ]; then apt_install "${missing[@]}"; fi
}

# The mariadb (or mysql) command-line client, installed when missing.
mysql_client() {
  command -v mariadb >/dev/null || command -v mysql >/dev/null || apt_install mariadb-client
  command -v mariadb || command -v mysql
}

# Sets mysql_args to the client options that reach the server of a mysql://user:password@host:port URL.
mysql_client_args() {
  mysql_args=(-h127.0.0.1 -P3306 -uroot)
  if [[ "$1" =~ ^mysql://([^:@/]+)(:([^@]*))?@([^:/]+)(:([0-9]+))?/?$ ]]; then
    mysql_args=(-h"${BASH_REMATCH[4]}" -P"${BASH_REMATCH[6]:-3306}" -u"${BASH_REMATCH[1]}")
    if [ -n "${BASH_REMATCH[3]}" ]; then mysql_args+=(-p"${BASH_REMATCH[3]}"); fi
  fi
}

mysql_answers() { (exec 3<>/dev/tcp/127.0.0.1/3306) 2>/dev/null; }

# Starts the local mariadbd with the given server options and waits up to 60 s for it to answer.
# The pid file makes start-stop-daemon look for this server only: the nodes of
# scripts/cluster run the same executable.
start_mariadb() {
  as_root start-stop-daemon --start --oknodo --background --pidfile /run/mysqld/mysqld.pid --exec /usr/sbin/mariadbd -- --user=mysql "$@"
  for _ in $(seq 1 60); do
    mysql_answers && return 0
    sleep 1
  done
  return 1
}

# Starts the local MariaDB when 127.0.0.1:3306 does not answer, installing it where it never was.
ensure_local_mariadb() {
  if mysql_answers; then return 0; fi
  if [ ! -x /usr/sbin/mariadbd ]; then apt_install mariadb-server; fi
  as_root mkdir -p /run/mysqld
  as_root chown mysql:mysql /run/mysqld 2>/dev/null || true
  say "starting MariaDB"
  start_mariadb && return 0
  say "MariaDB did not come up on 127.0.0.1:3306 within 60 s."
  say "Start it by hand (start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql)"
  say "or set TEST_MYSQL_URL to a reachable server, then run scripts/test again."
  exit 1
}

# The benches need the local server started with a buffer pool that holds the
# working set and a redo log that absorbs bulk writes. Both must be set at start:
# MariaDB sizes its page hash for the pool it starts with, and a pool grown later
# with SET GLOBAL walks hash chains dozens of pages long on every page access.
BENCH_SERVER_OPTIONS=(--innodb-buffer-pool-size=8G --innodb-log-file-size=2G)
ensure_bench_sizing() {
  local sized
  sized=$(mysql -uroot -h127.0.0.1 -N -e "SELECT COUNT(*) FROM information_schema.SYSTEM_VARIABLES
    WHERE (VARIABLE_NAME = 'INNODB_BUFFER_POOL_SIZE' AND GLOBAL_VALUE >= 8 * 1024 * 1024 * 1024 AND GLOBAL_VALUE_ORIGIN <> 'SQL')
       OR (VARIABLE_NAME = 'INNODB_LOG_FILE_SIZE' AND GLOBAL_VALUE >= 2 * 1024 * 1024 * 1024)")
  if [ "$sized" = 2 ]; then return 0; fi
  say "restarting the local MariaDB with ${BENCH_SERVER_OPTIONS[*]}"
  mysql -uroot -h127.0.0.1 -e SHUTDOWN
  for _ in $(seq 1 120); do
    pgrep -x mariadbd >/dev/null || break
    sleep 1
  done
  start_mariadb "${BENCH_SERVER_OPTIONS[@]}" && return 0
  say "MariaDB did not come back on 127.0.0.1:3306; start it by hand with ${BENCH_SERVER_OPTIONS[*]}"
  exit 1
}
