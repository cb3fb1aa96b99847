#!/usr/bin/env bash
# The independent floor for the quote helper's benchmark: aesm_floor.c (a minimal C server
# with the same five system calls per connection as the quote helper: accept, peek, send,
# drain, close; and one signing's worth of spinning in place of the quote) under the
# benchmark's own 16 clients. Prints one line per run:
#
#   aesm-floor: mode=drain threads=2 spin_us=… qps=… cpu_us_per_quote=… ratio=…
#
# `ratio` (CPU per request / spin_us) is on the scale of the benchmark's `overhead_ratio` and
# `busy_floor_ratio`. Usage: run.sh [ROUNDS] [MODES...] (default: 3 rounds of drain and nodrain).
# Needs cc; run from anywhere in the repository, on an idle machine.
set -euo pipefail
rounds=${1:-3}
shift || true
modes=("${@:-drain nodrain}")
read -r -a modes <<<"${modes[*]}"
root=$(git rev-parse --show-toplevel)
work=$(mktemp -d)
trap 'kill "${server:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT
cc -O2 -pthread -o "$work/aesm_floor" "$root/crates/quote-helper/benches/floor/aesm_floor.c"
bench=$(cd "$root" && cargo bench -p quote-helper --bench quote_helper --no-run 2>&1 |
	sed -n 's/.*Executable .*(\(.*\))$/\1/p')
case $bench in /*) ;; *) bench=$root/$bench ;; esac
read -r quote_size sign_us < <(QH_BENCH_WRITE_FRAME="$work/frame.bin" "$bench")
quotes=${QH_BENCH_QUOTES:-16000}
cpu_ns() { kill -USR1 "$server"; sleep 0.05; tail -n 1 "$work/cpu"; }
for _ in $(seq "$rounds"); do
	for mode in "${modes[@]}"; do
		: >"$work/cpu"
		"$work/aesm_floor" "$work/s.sock" "$mode" 2 "$work/frame.bin" "$sign_us" \
			>"$work/ready" 2>"$work/cpu" &
		server=$!
		until grep -q ready "$work/ready"; do sleep 0.01; done
		QH_BENCH_CLIENT="$work/s.sock,4,400,$quote_size" "$bench" >/dev/null
		before=$(cpu_ns)
		read -r qps _ _ served < <(QH_BENCH_CLIENT="$work/s.sock,16,$quotes,$quote_size" "$bench")
		after=$(cpu_ns)
		kill "$server"
		wait "$server" 2>/dev/null || true
		awk -v m="$mode" -v s="$sign_us" -v q="$qps" -v n="$served" -v a="$before" -v b="$after" 'BEGIN {
			c = (b - a) / 1e3 / n
			printf "aesm-floor: mode=%s threads=2 spin_us=%.1f qps=%.0f cpu_us_per_quote=%.1f ratio=%.2f\n", m, s, q, c, c / s
		}'
	done
done
