# Sourced by the benchmark scripts (run from the repository's root).

# bench_setup makes the temporary folder $work, removed on exit, holding a
# fresh build of ortrain ($work/ortrain).
bench_setup() {
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  go build -o "$work/ortrain" ./cmd/ortrain
}

# bench_header WHAT prints a run's first line: the time, the build, the CPU
# and its cores, then WHAT.
bench_header() {
  echo "# $(date -u '+%F %H:%M') build $(git describe --always --dirty 2>/dev/null || echo unknown), $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; $*"
}
