// Package parallel connects the processes of a data-parallel job over MPI.
//
// Comm is what ortrain needs of a communicator: rank and size, sum
// all-reduces in place, broadcast, barrier and abort. Init gives MPI's
// world communicator in a build with the "mpi" tag (cgo, OpenMPI's headers
// and library through pkg-config ompi-c: Debian's libopenmpi-dev), and a
// single-process one otherwise, which refuses to start when an MPI
// launcher started several processes. It is the only importer of MPI and
// imports nothing of ours.
package parallel

import (
	"fmt"
	"os"
	"strconv"
)

// Comm is a communicator over the processes of a job. Its methods are
// called from one goroutine at a time.
type Comm interface {
	Rank() int
	Size() int
	// AllReduceSum replaces buf, on every process, by the sum over the
	// processes of their bufs (of the same length).
	AllReduceSum(buf []float32) error
	AllReduceSum64(buf []float64) error
	// Broadcast copies root's buf into every process's (of the same
	// length).
	Broadcast(buf []byte, root int) error
	Barrier() error
	// Abort ends every process of the job with the code.
	Abort(code int)
	// Close ends the communicator (MPI_Finalize).
	Close() error
}

// single is the communicator of a job of one process.
type single struct{}

func (single) Rank() int                          { return 0 }
func (single) Size() int                          { return 1 }
func (single) AllReduceSum(buf []float32) error   { return nil }
func (single) AllReduceSum64(buf []float64) error { return nil }
func (single) Broadcast(buf []byte, root int) error {
	if root != 0 {
		return fmt.Errorf("broadcast from rank %d in a job of one process", root)
	}
	return nil
}
func (single) Barrier() error { return nil }
func (single) Abort(code int) { os.Exit(code) }
func (single) Close() error   { return nil }

// Single is the communicator of a job of one process.
func Single() Comm { return single{} }

// launcherSize is the number of processes an MPI launcher (mpirun,
// mpiexec, srun) says it started, from the environment it gives each
// process; 0 when none did.
func launcherSize() int {
	for _, v := range []string{"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS", "SLURM_NTASKS"} {
		if n, err := strconv.Atoi(os.Getenv(v)); err == nil && n > 0 {
			if v == "SLURM_NTASKS" && os.Getenv("PMI_RANK") == "" && os.Getenv("PMIX_RANK") == "" && os.Getenv("OMPI_COMM_WORLD_RANK") == "" {
				continue // a Slurm allocation, not a launched MPI task
			}
			return n
		}
	}
	return 0
}

// LocalRank is this process's rank among those of the job on its machine,
// as the launcher says (OpenMPI, MPICH, Slurm); 0 when none says.
func LocalRank() int {
	for _, v := range []string{"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID", "PMI_LOCAL_RANK"} {
		if n, err := strconv.Atoi(os.Getenv(v)); err == nil && n >= 0 {
			return n
		}
	}
	return 0
}
