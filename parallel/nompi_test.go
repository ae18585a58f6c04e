//go:build !mpi

package parallel

import (
	"strings"
	"testing"
)

// Without MPI, one process is the job; several processes started by an MPI
// launcher are refused in one line, not run as independent jobs.
func TestInitWithoutMPI(t *testing.T) {
	for _, v := range []string{"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS", "SLURM_NTASKS"} {
		t.Setenv(v, "")
	}
	c, err := Init()
	if err != nil || c.Size() != 1 || c.Rank() != 0 {
		t.Fatalf("single process: %v, %v", c, err)
	}
	buf := []float32{1, 2}
	if err := c.AllReduceSum(buf); err != nil || buf[0] != 1 || buf[1] != 2 {
		t.Errorf("all-reduce of one process changed %v (%v)", buf, err)
	}
	t.Setenv("OMPI_COMM_WORLD_SIZE", "2")
	if _, err := Init(); err == nil || !strings.Contains(err.Error(), "-tags mpi") || strings.Contains(err.Error(), "\n") {
		t.Errorf("under mpirun -np 2 without MPI: %v", err)
	}
}
