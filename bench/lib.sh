# Shared by the bench/*.sh scripts (sourced, not run).

# cpu_ticks PID...: user+system clock ticks of the processes and of their
# children alive now (divide by `getconf CLK_TCK` for seconds).
cpu_ticks() {
	local total=0 pid kids p
	for pid in "$@"; do
		kids=$(pgrep -P "$pid" || true)
		for p in $pid $kids; do
			[ -r /proc/$p/stat ] || continue
			# fields 14 and 15 after the command (which may contain spaces)
			total=$((total + $(sed 's/.*) //' /proc/$p/stat | awk '{print $12 + $13}')))
		done
	done
	echo $total
}
