#!/usr/bin/env bash
# A real Cinder in front of volrep, on this machine, from Debian's packages:
# rabbitmq-server, cinder-api (noauth), cinder-scheduler, cinder-volume with
# volrep's Python driver, glance-api (noauth, file store) and volrepd hosting
# arrays pure1 and pure2 and the backend puredriver-1. Everything lives under
# one directory (default .lab/ in the repository): configuration, data, logs
# in log/, and one pid file per process in run/, which `down` uses to stop
# exactly what `up` started.
#
#   lab.sh up      start the stack, wait until cinder-volume reports, print how to reach it
#   lab.sh down    stop what up started (safe to repeat)
#   lab.sh reload  SIGHUP volrepd, which re-reads cinder.conf
#   lab.sh restart SERVICE  restart one of volrepd, cinder-api, cinder-scheduler,
#                  cinder-volume, glance-api (as after editing cinder.conf), or
#                  rabbitmq (same node and data; waits until cinder-scheduler
#                  and cinder-volume consume from it again)
#   lab.sh stop SERVICE, lab.sh start SERVICE
#                  stop or start one of them alone (a fault to try: stop volrepd)
#
# Environment: VOLREP_LAB_DIR (default REPO/.lab), VOLREPD (a volrepd binary;
# default: go build), LAB_TIMEOUT (seconds per readiness wait, default 120).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
LAB=${VOLREP_LAB_DIR:-$REPO/.lab}
LOG=$LAB/log
RUN=$LAB/run
CONF=$LAB/cinder.conf
TIMEOUT=${LAB_TIMEOUT:-120}
BACKEND=puredriver-1
HOSTNAME_CINDER=lab
# Debian's python3 sees python3-cinder; a pyenv python3 on PATH would not.
PY=/usr/bin/python3

die() { echo "lab: $*" >&2; exit 1; }
say() { echo "lab: $*"; }

# ---- processes ------------------------------------------------------------

# start NAME CMD...: run CMD in a session of its own (so down can signal the
# whole process group: cinder-volume forks a child per backend), output to
# log/NAME.log, pid in run/NAME.pid.
start() {
	local name=$1
	shift
	# Without job control a background child is not a group leader, so
	# setsid runs CMD in this pid instead of forking.
	setsid "$@" >>"$LOG/$name.log" 2>&1 </dev/null &
	echo $! >"$RUN/$name.pid"
	grep -qx "$name" "$RUN/order" 2>/dev/null || echo "$name" >>"$RUN/order"
}

alive() { [[ -f $RUN/$1.pid ]] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }

# wait_for NAME WHAT CMD...: poll CMD until it succeeds; fail early, with the
# end of NAME's log, if NAME exits, and after TIMEOUT seconds.
wait_for() {
	local name=$1 what=$2
	shift 2
	local deadline=$((SECONDS + TIMEOUT))
	until "$@" >/dev/null 2>&1; do
		if ! alive "$name"; then
			tail -n 40 "$LOG/$name.log" >&2 || true
			die "$name exited while waiting for $what (log: $LOG/$name.log)"
		fi
		if ((SECONDS >= deadline)); then
			tail -n 40 "$LOG/$name.log" >&2 || true
			die "$what: not ready after ${TIMEOUT}s (log: $LOG/$name.log)"
		fi
		sleep 0.25
	done
}

# stop NAME: SIGTERM the process group, SIGKILL after 30 s.
stop() {
	local name=$1 pid
	[[ -f $RUN/$name.pid ]] || return 0
	pid=$(cat "$RUN/$name.pid")
	if kill -0 "$pid" 2>/dev/null; then
		kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
		local deadline=$((SECONDS + 30))
		while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
		if kill -0 "$pid" 2>/dev/null; then
			echo "lab: $name (pid $pid) ignored SIGTERM for 30s; killing it" >&2
			kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
		fi
	fi
	# Children that outlived their leader (a cinder-volume backend child).
	pkill -KILL -g "$pid" 2>/dev/null || true
	rm -f "$RUN/$name.pid"
}

# ---- RabbitMQ -------------------------------------------------------------

# rabbit_prefix: the command prefix that runs RabbitMQ's scripts with the
# lab's own node, ports and directories, as the rabbitmq user that Debian's
# scripts expect.
rabbit_prefix() {
	RABBIT=(env HOME="$LAB/rabbitmq"
		RABBITMQ_NODENAME="$RABBIT_NODE"
		RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
		RABBITMQ_NODE_PORT="$RABBIT_PORT"
		RABBITMQ_DIST_PORT="$RABBIT_DIST_PORT"
		ERL_EPMD_ADDRESS=127.0.0.1
		ERL_EPMD_PORT="$EPMD_PORT"
		RABBITMQ_MNESIA_BASE="$LAB/rabbitmq/mnesia"
		RABBITMQ_LOG_BASE="$LAB/rabbitmq/log"
		RABBITMQ_FEATURE_FLAGS_FILE="$LAB/rabbitmq/feature_flags"
		RABBITMQ_ENABLED_PLUGINS_FILE="$LAB/rabbitmq/enabled_plugins"
		RABBITMQ_CONFIG_FILE="$LAB/rabbitmq/rabbitmq.conf"
		RABBITMQ_ADVANCED_CONFIG_FILE="$LAB/rabbitmq/advanced.config"
		RABBITMQ_CONF_ENV_FILE="$LAB/rabbitmq/rabbitmq-env.conf"
		RABBITMQ_PID_FILE="$LAB/rabbitmq/rabbit.pid")
	if [[ $(id -u) == 0 ]]; then
		RABBIT+=(setpriv --reuid=rabbitmq --regid=rabbitmq --init-groups)
	fi
}

as_rabbit() { "${RABBIT[@]}" "$@"; }

rabbit_ping() { as_rabbit /usr/lib/rabbitmq/bin/rabbitmq-diagnostics -q -n "$RABBIT_NODE" ping; }

start_rabbit() {
	mkdir -p "$LAB/rabbitmq/mnesia" "$LAB/rabbitmq/log"
	echo '[].' >"$LAB/rabbitmq/enabled_plugins"
	: >"$LAB/rabbitmq/rabbitmq-env.conf"
	echo '[].' >"$LAB/rabbitmq/advanced.config"
	# guest may log in from loopback, which is all the lab uses.
	echo 'loopback_users.guest = true' >"$LAB/rabbitmq/rabbitmq.conf"
	if [[ $(id -u) == 0 ]]; then chown -R rabbitmq:rabbitmq "$LAB/rabbitmq"; fi
	start rabbitmq "${RABBIT[@]}" /usr/lib/rabbitmq/bin/rabbitmq-server
	wait_for rabbitmq "rabbitmq-diagnostics ping" rabbit_ping
}

stop_rabbit() {
	[[ -f $RUN/rabbitmq.pid ]] || return 0
	if alive rabbitmq; then
		as_rabbit /usr/lib/rabbitmq/bin/rabbitmqctl -q -n "$RABBIT_NODE" stop >>"$LOG/rabbitmq.log" 2>&1 || true
	fi
	stop rabbitmq
	# The epmd that RabbitMQ's erl started on the lab's own port.
	ERL_EPMD_PORT=$EPMD_PORT epmd -kill >/dev/null 2>&1 || true
}

# ---- configuration --------------------------------------------------------

# ports: a free loopback port for each name, all held open together so that
# no two come out the same.
pick_ports() {
	local names=(API GLANCE RABBIT RABBIT_DIST EPMD DRIVER PURE1 PURE2 NBD1 NBD2)
	local ports
	read -r -a ports < <($PY -c '
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))' "${#names[@]}")
	{
		for i in "${!names[@]}"; do echo "${names[$i]}_PORT=${ports[$i]}"; done
		echo "RABBIT_NODE=volreplab-${ports[2]}@localhost"
		echo "DRIVER_TOKEN=lab-driver-$RANDOM$RANDOM"
		echo "PURE1_TOKEN=lab-pure1-$RANDOM$RANDOM"
		echo "PURE2_TOKEN=lab-pure2-$RANDOM$RANDOM"
	} >"$LAB/ports"
}

write_cinder_conf() {
	cat >"$CONF" <<EOF
# Written by deploy/lab/lab.sh. cinder-api, cinder-scheduler, cinder-volume
# and volrepd all read this one file.

[DEFAULT]
host = $HOSTNAME_CINDER
enabled_backends = $BACKEND
# noauth_include_project_id: the API answers with and without a project id
# in the path (openstack puts one, cinder does not) and asks for no token.
auth_strategy = noauth_include_project_id
transport_url = rabbit://guest:guest@127.0.0.1:$RABBIT_PORT/
state_path = $LAB/cinder
api_paste_config = /etc/cinder/api-paste.ini
rootwrap_config = /etc/cinder/rootwrap.conf
osapi_volume_listen = 127.0.0.1
osapi_volume_listen_port = $API_PORT
osapi_volume_workers = 1
glance_api_servers = http://127.0.0.1:$GLANCE_PORT
# Heartbeats, stats and the down verdict quickly enough for a test to see.
report_interval = 3
periodic_interval = 5
service_down_time = 15
backend_stats_polling_interval = 10
scheduler_driver_init_wait_time = 60
# Cinder's default filters, with volrep's ahead of CapabilitiesFilter: it
# says why a type's replication_type cannot go to volrep (scheduler log,
# volume metadata volrep_error) where CapabilitiesFilter would only drop the
# backend. Loaded by entry point from deploy/cinder (PYTHONPATH).
scheduler_default_filters = AvailabilityZoneFilter,CapacityFilter,VolrepReplicationTypeFilter,CapabilitiesFilter
debug = true

[database]
# Three services share one sqlite file: wait for its lock rather than fail
# (the file is in WAL mode, set after db sync, so readers do not block).
connection = sqlite:///$LAB/cinder/cinder.sqlite?timeout=60

[oslo_concurrency]
lock_path = $LAB/cinder/lock

[oslo_messaging_rabbit]
heartbeat_timeout_threshold = 0

[coordination]
backend_url = file://$LAB/cinder/coordination

# volrepd's own sections: the driver API that volrep's Cinder driver dials,
# and the two arrays it hosts.
[volrep]
driver_listen = 127.0.0.1:$DRIVER_PORT
driver_api_token = $DRIVER_TOKEN
state_dir = $LAB/volrep/driver
log_level = debug

[array:pure1]
data_dir = $LAB/volrep/pure1
listen = 127.0.0.1:$PURE1_PORT
nbd_listen = 127.0.0.1:$NBD1_PORT
api_token = $PURE1_TOKEN

[array:pure2]
data_dir = $LAB/volrep/pure2
listen = 127.0.0.1:$PURE2_PORT
nbd_listen = 127.0.0.1:$NBD2_PORT
api_token = $PURE2_TOKEN

# The seed lab's backend, with volrep's driver in place of PureISCSIDriver.
[$BACKEND]
volume_backend_name = $BACKEND
volume_driver = volrep_cinder.driver.VolrepDriver
san_ip = 127.0.0.1:$PURE1_PORT
pure_api_token = $PURE1_TOKEN
use_multipath_for_image_xfer = True
replication_device = backend_id:pure2-async,san_ip:127.0.0.1:$PURE2_PORT,api_token:$PURE2_TOKEN,type:async
replication_device = backend_id:pure2-sync,san_ip:127.0.0.1:$PURE2_PORT,api_token:$PURE2_TOKEN,type:sync
pure_replica_interval_default = 3600
pure_replica_retention_short_term_default = 86400
pure_replica_retention_long_term_per_day_default = 5
pure_replica_retention_long_term_default = 7
EOF
	chmod 600 "$CONF"
}

write_glance_conf() {
	mkdir -p "$LAB/glance/images"
	cat >"$LAB/glance-api.conf" <<EOF
# Written by deploy/lab/lab.sh: glance-api with no Keystone and a file store.
[DEFAULT]
bind_host = 127.0.0.1
bind_port = $GLANCE_PORT
workers = 1
enabled_backends = file:file
image_cache_dir = $LAB/glance/cache

[glance_store]
default_backend = file

[file]
filesystem_store_datadir = $LAB/glance/images

[database]
connection = sqlite:///$LAB/glance/glance.sqlite?timeout=60

[paste_deploy]
config_file = /etc/glance/glance-api-paste.ini
flavor =

[oslo_concurrency]
lock_path = $LAB/glance/lock

[os_glance_staging_store]
filesystem_store_datadir = $LAB/glance/staging

[os_glance_tasks_store]
filesystem_store_datadir = $LAB/glance/tasks
EOF
}

write_env() {
	cat >"$LAB/env" <<EOF
# source .lab/env: the noauth CLIs against the lab (written by deploy/lab/lab.sh)
export OS_AUTH_TYPE=noauth
export OS_USER_ID=admin
export OS_PROJECT_ID=0123456789abcdef0123456789abcdef
export OS_ENDPOINT=http://127.0.0.1:$API_PORT/v3
export CINDER_ENDPOINT=http://127.0.0.1:$API_PORT/v3
export OS_VOLUME_API_VERSION=3.59
export OS_IMAGE_URL=http://127.0.0.1:$GLANCE_PORT
export VOLREP_ADDR=127.0.0.1:$DRIVER_PORT
export VOLREP_TOKEN=$DRIVER_TOKEN
export VOLREP_LAB_CONF=$CONF
export VOLREP_LAB_PURE1=127.0.0.1:$PURE1_PORT
export VOLREP_LAB_PURE1_TOKEN=$PURE1_TOKEN
export VOLREP_LAB_PURE2=127.0.0.1:$PURE2_PORT
export VOLREP_LAB_PURE2_TOKEN=$PURE2_TOKEN
EOF
}

# ---- readiness ------------------------------------------------------------

http_ok() { curl -fsS -o /dev/null --max-time 5 "$1"; }
# The versions document answers 300 Multiple Choices.
http_answers() { [[ $(curl -sS -o /dev/null -w '%{http_code}' --max-time 5 "$1") =~ ^[23] ]]; }
tcp_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

cinder_cli() { (
	# shellcheck disable=SC1091
	source "$LAB/env"
	cinder "$@"
); }

# service_up BINARY HOST: the service's row in cinder service-list says up.
service_up() { cinder_cli service-list --binary "$1" | grep -E "\| *$1 *\| *$2 *\|.*\| *up *\|"; }

pool_known() { cinder_cli get-pools | grep -E "\| *name *\| *$1 *\|"; }

# ---- up / down ------------------------------------------------------------

# launch NAME: start one of the lab's services (the same way for up and
# restart).
launch() {
	# XDG_CACHE_HOME: stevedore's entry point cache (the scheduler filter's
	# entry point is in deploy/cinder) stays in the lab, not in ~/.cache.
	local pyenv=(env PYTHONPATH="$REPO/deploy/cinder:$REPO/deploy/lab/python" PYTHONDONTWRITEBYTECODE=1 PYTHONWARNINGS=ignore
		XDG_CACHE_HOME="$LAB/cache")
	case $1 in
	volrepd)
		start volrepd "$VOLREPD_BIN" --config "$CONF"
		wait_for volrepd "volrepd's driver API" tcp_open "$DRIVER_PORT"
		;;
	cinder-api | cinder-scheduler | cinder-volume)
		start "$1" "${pyenv[@]}" "$1" --config-file "$CONF" --log-file "$LOG/$1.log"
		;;
	glance-api)
		start glance-api "${pyenv[@]}" glance-api --config-file "$LAB/glance-api.conf" --log-file "$LOG/glance-api.log"
		;;
	*) die "no service $1 in the lab (volrepd, cinder-api, cinder-scheduler, cinder-volume, glance-api)" ;;
	esac
}

# consuming QUEUE: RabbitMQ has a consumer on QUEUE (a service that has
# (re)connected and declared its queue).
consuming() { as_rabbit /usr/lib/rabbitmq/bin/rabbitmqctl -q -n "$RABBIT_NODE" list_queues name consumers |
	grep -qE "^$1[[:space:]]+[1-9]"; }

lab_env() {
	[[ -f $LAB/ports ]] || die "no lab under $LAB; run: make lab"
	# shellcheck disable=SC1091
	source "$LAB/ports"
	rabbit_prefix
}

# restart NAME: as an operator restarts one service after changing cinder.conf.
restart() {
	lab_env
	if [[ $1 == rabbitmq ]]; then
		stop_rabbit
		start_rabbit
		# Its queues were not durable: they are back once each service
		# has reconnected and declared its own; a message sent before
		# then would be dropped.
		wait_for cinder-scheduler "cinder-scheduler consuming from the restarted RabbitMQ" consuming cinder-scheduler
		wait_for cinder-volume "cinder-volume consuming from the restarted RabbitMQ" consuming "cinder-volume.$HOSTNAME_CINDER@$BACKEND"
		say "restarted rabbitmq (pid $(cat "$RUN/rabbitmq.pid")); cinder-scheduler and cinder-volume reconnected"
		return
	fi
	local before=0
	[[ $1 == cinder-volume ]] && before=$(grep -c 'Driver initialization completed successfully' "$LOG/cinder-volume.log" || true)
	stop "$1"
	launch "$1"
	case $1 in
	cinder-volume)
		# Done when init_host has run again: the heartbeat of the old
		# process would make the service look up already.
		wait_for cinder-volume "cinder-volume's driver initialization" \
			eval "(( \$(grep -c 'Driver initialization completed successfully' '$LOG/cinder-volume.log') > $before ))"
		;;
	cinder-api) wait_for cinder-api "cinder-api" http_answers "http://127.0.0.1:$API_PORT/" ;;
	esac
	say "restarted $1 (pid $(cat "$RUN/$1.pid"))"
}

# stop_service NAME / start_service NAME: one service alone, the others
# left running (start waits only for volrepd's port and RabbitMQ's ping).
stop_service() {
	lab_env
	case $1 in
	rabbitmq) stop_rabbit ;;
	volrepd | cinder-api | cinder-scheduler | cinder-volume | glance-api) stop "$1" ;;
	*) die "no service $1 in the lab (rabbitmq, volrepd, cinder-api, cinder-scheduler, cinder-volume, glance-api)" ;;
	esac
	say "stopped $1"
}

start_service() {
	lab_env
	alive "$1" && die "$1 is running already (pid $(cat "$RUN/$1.pid"))"
	case $1 in
	rabbitmq) start_rabbit ;;
	*) launch "$1" ;;
	esac
	say "started $1 (pid $(cat "$RUN/$1.pid"))"
}

up() {
	if [[ -d $RUN ]] && ls "$RUN"/*.pid >/dev/null 2>&1; then
		die "a lab is already running under $LAB (run/ has pid files); run: make lab-down"
	fi
	for cmd in cinder-api cinder-scheduler cinder-volume cinder-manage glance-api glance-manage cinder openstack curl setpriv; do
		command -v "$cmd" >/dev/null || die "$cmd is not installed; run: make lab-deps"
	done
	[[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ]] || die "rabbitmq-server is not installed; run: make lab-deps"
	local t0=$SECONDS
	LAB_OK=0
	# A start that fails half-way stops what it had started; logs stay.
	trap 'if [[ ${LAB_OK:-1} != 1 ]]; then echo "lab: start failed; stopping what was started" >&2; down; fi' EXIT
	rm -rf "$LAB"
	mkdir -p "$LOG" "$RUN" "$LAB/cinder/lock" "$LAB/volrep" "$LAB/bin" "$LAB/glance/lock"
	pick_ports
	# shellcheck disable=SC1091
	source "$LAB/ports"
	rabbit_prefix
	write_cinder_conf
	write_glance_conf
	write_env

	local volrepd=${VOLREPD:-}
	if [[ -z $volrepd ]]; then
		(cd "$REPO" && GOFLAGS=-buildvcs=false go build -o "$LAB/bin/volrepd" ./cmd/volrepd)
		volrepd=$LAB/bin/volrepd
	fi

	start_rabbit
	say "rabbitmq-server up on 127.0.0.1:$RABBIT_PORT ($((SECONDS - t0))s)"

	cinder-manage --config-file "$CONF" db sync >>"$LOG/cinder-manage.log" 2>&1 ||
		{ tail -n 20 "$LOG/cinder-manage.log" >&2; die "cinder-manage db sync failed"; }
	$PY -c 'import sqlite3, sys; sqlite3.connect(sys.argv[1]).execute("PRAGMA journal_mode=WAL")' "$LAB/cinder/cinder.sqlite"
	glance-manage --config-file "$LAB/glance-api.conf" db_sync >>"$LOG/glance-manage.log" 2>&1 ||
		{ tail -n 20 "$LOG/glance-manage.log" >&2; die "glance-manage db_sync failed"; }

	echo "VOLREPD_BIN=$volrepd" >>"$LAB/ports"
	VOLREPD_BIN=$volrepd

	launch volrepd
	for name in cinder-api cinder-scheduler cinder-volume glance-api; do launch "$name"; done

	wait_for cinder-api "cinder-api on 127.0.0.1:$API_PORT" http_answers "http://127.0.0.1:$API_PORT/"
	wait_for glance-api "glance-api on 127.0.0.1:$GLANCE_PORT" http_answers "http://127.0.0.1:$GLANCE_PORT/versions"
	wait_for cinder-scheduler "cinder-scheduler up" service_up cinder-scheduler "$HOSTNAME_CINDER"
	wait_for cinder-volume "cinder-volume $HOSTNAME_CINDER@$BACKEND up" service_up cinder-volume "$HOSTNAME_CINDER@$BACKEND"
	# Schedulable only once the scheduler has the backend's stats: until
	# then get-pools lists nothing and service-list's Backend State is "-".
	wait_for cinder-scheduler "the scheduler's pool $HOSTNAME_CINDER@$BACKEND#$BACKEND" \
		pool_known "$HOSTNAME_CINDER@$BACKEND#$BACKEND"
	echo "$((SECONDS - t0))" >"$LAB/startup_seconds"
	LAB_OK=1

	cat <<EOF
lab: up in $((SECONDS - t0))s under $LAB (logs in $LOG/)
  rabbitmq-server   127.0.0.1:$RABBIT_PORT   node $RABBIT_NODE
  volrepd           driver API 127.0.0.1:$DRIVER_PORT; arrays pure1 127.0.0.1:$PURE1_PORT, pure2 127.0.0.1:$PURE2_PORT
  cinder-api        http://127.0.0.1:$API_PORT/v3 (noauth)
  cinder-scheduler, cinder-volume ($HOSTNAME_CINDER@$BACKEND, volrep_cinder.driver.VolrepDriver)
  glance-api        http://127.0.0.1:$GLANCE_PORT (noauth, file store)
  config            $CONF (cinder and volrepd)
Use it:
  source $LAB/env
  openstack volume service list
  cinder get-pools --detail
Stop it: make lab-down
EOF
}

down() {
	[[ -d $RUN ]] || return 0
	# shellcheck disable=SC1091
	[[ -f $LAB/ports ]] && source "$LAB/ports" && rabbit_prefix
	local names=()
	[[ -f $RUN/order ]] && mapfile -t names <"$RUN/order"
	# Reverse start order: the API and services first, RabbitMQ last.
	for ((i = ${#names[@]} - 1; i >= 0; i--)); do
		case ${names[$i]} in
		rabbitmq) stop_rabbit ;;
		*) stop "${names[$i]}" ;;
		esac
	done
	rm -f "$RUN/order"
	say "stopped (logs kept in $LOG/)"
}

reload() {
	alive volrepd || die "volrepd is not running under $LAB"
	kill -HUP "$(cat "$RUN/volrepd.pid")"
	say "sent SIGHUP to volrepd"
}

case ${1:-} in
up) up ;;
down) down ;;
reload) reload ;;
restart) restart "${2:?usage: $0 restart SERVICE}" ;;
stop) stop_service "${2:?usage: $0 stop SERVICE}" ;;
start) start_service "${2:?usage: $0 start SERVICE}" ;;
*) die "usage: $0 up|down|reload|restart SERVICE|stop SERVICE|start SERVICE" ;;
esac
