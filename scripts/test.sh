#!/usr/bin/env bash
# Runs every test of the project, installing first what the tests need
# (scripts/setup.sh is idempotent: about a tenth of a second when done).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
go vet ./...
go vet -tags mpi ./...
go test -count=1 -timeout 30m ./...
# The MPI build: the binding and data-parallel training under mpirun.
go test -count=1 -timeout 20m -tags mpi -run MPI ./parallel ./cmd/ortrain
