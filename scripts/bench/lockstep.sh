# Sourced by scripts/bench_train.sh and scripts/bench/lockstep_pair.sh: two
# benchmark processes that take turns step by step through two FIFOs
# (their --turn-in and --turn-out flags).
#
# lockstep_fifos DIR makes DIR/a and DIR/b and holds both open read-write on
# descriptors 3 and 4, so that no open blocks, and writes the first turn to
# DIR/a: the side whose --turn-in is DIR/a steps first. Start the two sides
# with `3>&- 4>&-` so that they do not inherit these descriptors and a
# side whose partner has exited sees end of file.
lockstep_fifos() {
  rm -f "$1/a" "$1/b"
  mkfifo "$1/a" "$1/b"
  exec 3<>"$1/a" 4<>"$1/b"
  printf . >&3
}

# lockstep_wait P1 P2 waits for both sides and returns the first failure's
# exit status. If one side fails the other would wait for its turn forever:
# it is stopped. The FIFO descriptors are closed.
lockstep_wait() {
  local first_done other rc=0
  wait -n -p first_done "$1" "$2" || rc=$?
  other=$2
  [ "$first_done" = "$1" ] || other=$1
  if [ "$rc" -ne 0 ]; then
    kill "$other" 2>/dev/null || true
    wait "$other" 2>/dev/null || true
    echo "lockstep: a process failed (exit $rc)" >&2
  else
    wait "$other" || rc=$?
  fi
  exec 3>&- 4>&-
  return "$rc"
}
