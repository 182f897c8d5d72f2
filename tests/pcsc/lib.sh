# shellcheck shell=sh
# Helpers sourced by start.sh, card.sh and stop.sh.

# alive PID: the process exists and is not a zombie. (kill -0 is not enough:
# a zombie passes it, and on some machines PID 1 reaps orphans only now and
# then, e.g. every second or so.)
alive() {
	[ -r "/proc/$1/stat" ] || return 1
	state=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1)
	[ -n "$state" ] && [ "$state" != Z ]
}

# stop_pid FILE: SIGTERM the pid in FILE, wait up to 5 s, then SIGKILL; remove FILE.
stop_pid() {
	[ -s "$1" ] || { rm -f "$1"; return 0; }
	pid=$(cat "$1")
	if alive "$pid"; then
		kill -TERM "$pid" 2>/dev/null || true
		i=0
		while alive "$pid" && [ "$i" -lt 50 ]; do
			sleep 0.1
			i=$((i + 1))
		done
		if alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
	fi
	rm -f "$1"
}
