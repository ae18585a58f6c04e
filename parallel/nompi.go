//go:build !mpi

package parallel

import "fmt"

// Built is whether this build has MPI.
const Built = false

// Init is the single-process communicator; under an MPI launcher that
// started several processes it is an error, not N independent runs.
func Init() (Comm, error) {
	if n := launcherSize(); n > 1 {
		return nil, fmt.Errorf("started as one of %d MPI processes, but this ortrain was built without MPI: build it with `go build -tags mpi` (scripts/setup.sh installs OpenMPI)", n)
	}
	return single{}, nil
}
