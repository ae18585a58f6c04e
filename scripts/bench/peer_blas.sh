# Sourced by the benchmarks that run PyTorch: peer_blas WORK NAME sets the
# array peer_env to the prefix of every PyTorch command, from PEER_BLAS:
#   system (default): nothing; PyTorch loads the system's libblas.so.3,
#     which on a set-up machine is Debian's reference BLAS;
#   openblas: Debian's libopenblas0-pthread, fetched with apt-get download
#     into WORK and put first on LD_LIBRARY_PATH (nothing is installed).
# PyTorch's fully connected layers run on that BLAS, and so do its
# convolutions where it does not use oneDNN: with one thread, PyTorch 1.13
# runs 1x1 convolutions of batches under 16 as BLAS GEMMs (a ResNet-50 step
# of batch 8 at 224: 31 s with the reference BLAS, 4.4 s with OpenBLAS;
# docs/benchmarks.md). NAME prefixes error messages.
peer_blas() {
  local work=$1 name=$2 blasdir
  peer_env=()
  case "${PEER_BLAS:-system}" in
    system) ;;
    openblas)
      (cd "$work" && apt-get download -qq libopenblas0-pthread >/dev/null 2>&1) ||
        { echo "$name: apt-get download libopenblas0-pthread failed" >&2; exit 1; }
      dpkg-deb -x "$work"/libopenblas0-pthread_*.deb "$work/openblas"
      blasdir=$work/openblas/usr/lib/x86_64-linux-gnu/openblas-pthread
      [ -e "$blasdir/libblas.so.3" ] ||
        { echo "$name: $blasdir/libblas.so.3 not in the downloaded libopenblas0-pthread" >&2; exit 1; }
      peer_env=(env "LD_LIBRARY_PATH=$blasdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}")
      ;;
    *) echo "$name: PEER_BLAS must be system or openblas, got $PEER_BLAS" >&2; exit 2 ;;
  esac
}
