//go:build mpi

package parallel

/*
#cgo pkg-config: ompi-c
#include <mpi.h>
#include <stdlib.h>

static int ortrain_init(int* provided) {
	int err = MPI_Init_thread(NULL, NULL, MPI_THREAD_SERIALIZED, provided);
	if (err == MPI_SUCCESS) {
		MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
	}
	return err;
}
static int ortrain_rank(int* r) { return MPI_Comm_rank(MPI_COMM_WORLD, r); }
static int ortrain_size(int* s) { return MPI_Comm_size(MPI_COMM_WORLD, s); }
static int ortrain_sum_f32(void* buf, int n) { return MPI_Allreduce(MPI_IN_PLACE, buf, n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD); }
static int ortrain_sum_f64(void* buf, int n) { return MPI_Allreduce(MPI_IN_PLACE, buf, n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD); }
static int ortrain_bcast(void* buf, int n, int root) { return MPI_Bcast(buf, n, MPI_BYTE, root, MPI_COMM_WORLD); }
static int ortrain_barrier(void) { return MPI_Barrier(MPI_COMM_WORLD); }
static int ortrain_abort(int code) { return MPI_Abort(MPI_COMM_WORLD, code); }
static int ortrain_finalize(void) { return MPI_Finalize(); }
static int ortrain_thread_serialized(void) { return MPI_THREAD_SERIALIZED; }
static void ortrain_error_string(int code, char* buf, int* n) { MPI_Error_string(code, buf, n); }
static int ortrain_max_error_string(void) { return MPI_MAX_ERROR_STRING; }
*/
import "C"

import (
	"fmt"
	"sync"
	"unsafe"
)

// Built is whether this build has MPI.
const Built = true

// mpiComm is MPI's world communicator.
type mpiComm struct {
	mu         sync.Mutex // MPI_THREAD_SERIALIZED: one call at a time
	rank, size int
}

// Init initializes MPI (MPI_THREAD_SERIALIZED: Go moves goroutines between
// threads, and the communicator serializes its calls) and returns the world
// communicator; errors are returned, not fatal (MPI_ERRORS_RETURN).
func Init() (Comm, error) {
	var provided C.int
	if err := mpiErr("MPI_Init_thread", C.ortrain_init(&provided)); err != nil {
		return nil, err
	}
	if provided < C.ortrain_thread_serialized() {
		C.ortrain_finalize()
		return nil, fmt.Errorf("this MPI gives thread level %d, below MPI_THREAD_SERIALIZED", int(provided))
	}
	var r, s C.int
	if err := mpiErr("MPI_Comm_rank", C.ortrain_rank(&r)); err != nil {
		return nil, err
	}
	if err := mpiErr("MPI_Comm_size", C.ortrain_size(&s)); err != nil {
		return nil, err
	}
	return &mpiComm{rank: int(r), size: int(s)}, nil
}

func (c *mpiComm) Rank() int { return c.rank }
func (c *mpiComm) Size() int { return c.size }

// maxCount is the largest count one MPI call takes (an int); longer
// buffers go in pieces.
const maxCount = 1 << 30

// reduceChunk is the count of one all-reduce call: OpenMPI 4.1 sums a
// 100 MB buffer between two local ranks at a quarter of the speed of the
// same buffer in 4 MB pieces, whose scratch space stays in cache
// (docs/benchmarks.md, all-reduce; scripts/bench_parallel.sh).
const reduceChunk = 1 << 20

func (c *mpiComm) AllReduceSum(buf []float32) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(buf) > 0 {
		n := min(len(buf), reduceChunk)
		if err := mpiErr("MPI_Allreduce", C.ortrain_sum_f32(unsafe.Pointer(&buf[0]), C.int(n))); err != nil {
			return err
		}
		buf = buf[n:]
	}
	return nil
}

func (c *mpiComm) AllReduceSum64(buf []float64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(buf) > 0 {
		n := min(len(buf), reduceChunk)
		if err := mpiErr("MPI_Allreduce", C.ortrain_sum_f64(unsafe.Pointer(&buf[0]), C.int(n))); err != nil {
			return err
		}
		buf = buf[n:]
	}
	return nil
}

func (c *mpiComm) Broadcast(buf []byte, root int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(buf) > 0 {
		n := min(len(buf), maxCount)
		if err := mpiErr("MPI_Bcast", C.ortrain_bcast(unsafe.Pointer(&buf[0]), C.int(n), C.int(root))); err != nil {
			return err
		}
		buf = buf[n:]
	}
	return nil
}

func (c *mpiComm) Barrier() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return mpiErr("MPI_Barrier", C.ortrain_barrier())
}

func (c *mpiComm) Abort(code int) { C.ortrain_abort(C.int(code)) }

func (c *mpiComm) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return mpiErr("MPI_Finalize", C.ortrain_finalize())
}

// mpiErr turns an MPI return code into an error naming the call.
func mpiErr(call string, code C.int) error {
	if code == 0 { // MPI_SUCCESS
		return nil
	}
	n := C.ortrain_max_error_string()
	buf := (*C.char)(C.malloc(C.size_t(n)))
	defer C.free(unsafe.Pointer(buf))
	var l C.int
	C.ortrain_error_string(code, buf, &l)
	return fmt.Errorf("%s: %s", call, C.GoStringN(buf, l))
}
