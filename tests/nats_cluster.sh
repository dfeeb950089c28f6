# nats_cluster.sh - sourced by tests/cluster.sh and bench/queue.sh (bash):
# a 3-node nats-server cluster on free loopback ports under $work.
#   nc_start        writes $work/n{1,2,3}.conf, starts the nodes; sets
#                   $nc_urls (nats://127.0.0.1:P,...) and nc_pid[1..3]
#   nc_node I       starts node I again (same ports, same data)
#   nc_kill I       SIGKILL node I, reaped
#   nc_stop         SIGTERM to every node, reaped
#   free_port       a loopback port nobody listens on (none twice)

nc_used=" "
free_port() {
	local p
	while :; do
		p=$((20000 + RANDOM % 40000))
		case "$nc_used" in *" $p "*) continue ;; esac
		(exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && continue
		nc_used="$nc_used$p "
		echo "$p"
		return
	done
}

declare -a nc_pid nc_cport nc_rport

nc_node() {
	nats-server -c "$work/n$1.conf" >>"$work/n$1.log" 2>&1 &
	nc_pid[$1]=$!
}

nc_start() {
	local i routes
	for i in 1 2 3; do nc_cport[$i]=$(free_port); nc_rport[$i]=$(free_port); done
	routes="nats-route://127.0.0.1:${nc_rport[1]}, nats-route://127.0.0.1:${nc_rport[2]}, nats-route://127.0.0.1:${nc_rport[3]}"
	nc_urls="nats://127.0.0.1:${nc_cport[1]},nats://127.0.0.1:${nc_cport[2]},nats://127.0.0.1:${nc_cport[3]}"
	for i in 1 2 3; do
		cat >"$work/n$i.conf" <<CONF
server_name: n$i
listen: 127.0.0.1:${nc_cport[$i]}
jetstream { store_dir: "$work/d$i" }
cluster { name: sessionwire, listen: 127.0.0.1:${nc_rport[$i]}, routes: [ $routes ] }
CONF
		nc_node "$i"
	done
}

nc_kill() {
	[ -n "${nc_pid[$1]:-}" ] || return 0
	kill -9 "${nc_pid[$1]}" 2>/dev/null || true
	wait "${nc_pid[$1]}" 2>/dev/null || true
	nc_pid[$1]=
}

nc_stop() {
	local i
	for i in 1 2 3; do
		[ -z "${nc_pid[$i]:-}" ] || kill "${nc_pid[$i]}" 2>/dev/null || true
	done
	for i in 1 2 3; do
		[ -z "${nc_pid[$i]:-}" ] || wait "${nc_pid[$i]}" 2>/dev/null || true
		nc_pid[$i]=
	done
}
