//go:build mpi

package parallel

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/ortrain/ortrain/internal/testutil"
)

// TestMain runs the worker instead of the tests in the processes mpirun
// starts.
func TestMain(m *testing.M) {
	if os.Getenv("ORTRAIN_MPI_WORKER") != "" {
		os.Exit(worker())
	}
	os.Exit(m.Run())
}

// mpirun runs this test binary as the worker in n processes, and returns
// their combined output; the test fails if the job does.
func mpirun(t *testing.T, n int) string {
	t.Helper()
	args := testutil.MPIRunArgs(t, n, os.Args[0])
	cmd := exec.Command("mpirun", args...)
	cmd.Env = append(os.Environ(), "ORTRAIN_MPI_WORKER=1")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("mpirun %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

// Three processes sum, broadcast and meet at a barrier through MPI.
func TestMPICollectives(t *testing.T) {
	out := mpirun(t, 3)
	if strings.Count(out, "worker ok") != 3 {
		t.Errorf("want three workers ok:\n%s", out)
	}
}

// worker is one process of TestMPICollectives' job: it checks the
// collectives and prints "worker ok", or says what failed and returns 1.
func worker() int {
	fail := func(format string, a ...any) int {
		fmt.Printf("worker failed: "+format+"\n", a...)
		return 1
	}
	c, err := Init()
	if err != nil {
		return fail("%v", err)
	}
	defer c.Close()
	r, n := c.Rank(), c.Size()
	if n != 3 || r < 0 || r >= n {
		return fail("rank %d of %d", r, n)
	}
	f := []float32{float32(r), 1, float32(r * r)}
	if err := c.AllReduceSum(f); err != nil || f[0] != 3 || f[1] != 3 || f[2] != 5 {
		return fail("rank %d: sum %v, want [3 3 5] (%v)", r, f, err)
	}
	d := []float64{math.Pi * float64(r)}
	if err := c.AllReduceSum64(d); err != nil || math.Abs(d[0]-3*math.Pi) > 1e-12 {
		return fail("rank %d: float64 sum %v (%v)", r, d, err)
	}
	b := []byte("......")
	if r == 1 {
		copy(b, "from 1")
	}
	if err := c.Broadcast(b, 1); err != nil || string(b) != "from 1" {
		return fail("rank %d: broadcast %q (%v)", r, b, err)
	}
	if err := c.Barrier(); err != nil {
		return fail("%v", err)
	}
	fmt.Printf("rank %d: worker ok\n", r)
	return 0
}
