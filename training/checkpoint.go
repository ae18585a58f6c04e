package training

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"os"
	"sort"

	"github.com/ortrain/ortrain/graphgen"
	"github.com/ortrain/ortrain/internal/atomicfile"
)

// Checkpoint is everything a run needs to continue exactly where it stopped:
// the training state tensors (parameters, momentum buffers, running
// statistics), where the run is, the loss scaler and the configuration. The
// data pipeline's randomness is a function of (seed, epoch, position), so
// the position is its whole state.
type Checkpoint struct {
	Meta    CheckpointMeta
	Tensors map[string][]float32
}

// CheckpointMeta is the JSON part of a checkpoint.
type CheckpointMeta struct {
	Format    int             `json:"format"`
	Model     string          `json:"model"`
	Classes   []string        `json:"classes"`
	ImageSize int             `json:"image_size"`
	Epoch     int             `json:"epoch"` // epochs completed
	Batch     int             `json:"batch"` // batches done in the current epoch
	Step      int             `json:"step"`  // batches done in the run
	Scaler    *LossScaler     `json:"loss_scaler,omitempty"`
	BestTop1  float64         `json:"best_top1"`
	LastTop1  float64         `json:"last_top1"`
	Config    json.RawMessage `json:"config"`
	// Partial holds the running sums of an epoch interrupted mid-way, so
	// that its metrics cover all of it after a resume.
	Partial EpochSums          `json:"partial"`
	Shapes  map[string][]int64 `json:"shapes"`
}

const (
	checkpointMagic  = "ORTRAIN-CKPT\n"
	checkpointFormat = 1
)

// Encode serializes: magic, JSON length and JSON, then each tensor (sorted
// by name) as name length, name, value count, little-endian float32s, then a
// CRC-32 of everything before it.
func (c *Checkpoint) Encode() ([]byte, error) {
	c.Meta.Format = checkpointFormat
	if c.Meta.Shapes == nil {
		return nil, fmt.Errorf("checkpoint: tensor shapes missing")
	}
	meta, err := json.Marshal(c.Meta)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	names := make([]string, 0, len(c.Tensors))
	size := len(checkpointMagic) + 8 + len(meta) + 4
	for n, v := range c.Tensors {
		names = append(names, n)
		size += 12 + len(n) + 4*len(v)
	}
	sort.Strings(names)
	var b bytes.Buffer
	b.Grow(size)
	b.WriteString(checkpointMagic)
	binary.Write(&b, binary.LittleEndian, uint64(len(meta)))
	b.Write(meta)
	buf := make([]byte, 0, 1<<16)
	for _, n := range names {
		v := c.Tensors[n]
		binary.Write(&b, binary.LittleEndian, uint32(len(n)))
		b.WriteString(n)
		binary.Write(&b, binary.LittleEndian, uint64(len(v)))
		for i := 0; i < len(v); {
			buf = buf[:0]
			for ; i < len(v) && len(buf) < cap(buf)-4; i++ {
				buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(v[i]))
			}
			b.Write(buf)
		}
	}
	binary.Write(&b, binary.LittleEndian, crc32.ChecksumIEEE(b.Bytes()))
	return b.Bytes(), nil
}

// WriteCheckpoint writes atomically (temporary file, fsync, rename): a crash
// leaves the old checkpoint or the new one, never a torn one.
func WriteCheckpoint(path string, c *Checkpoint) error {
	b, err := c.Encode()
	if err != nil {
		return err
	}
	return atomicfile.Write(path, b)
}

// ReadCheckpoint reads and verifies a checkpoint file.
func ReadCheckpoint(path string) (*Checkpoint, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("checkpoint %s: %w", path, err)
	}
	c, err := DecodeCheckpoint(b)
	if err != nil {
		return nil, fmt.Errorf("checkpoint %s: %w", path, err)
	}
	return c, nil
}

// DecodeCheckpoint parses checkpoint bytes, checking the magic and the CRC.
func DecodeCheckpoint(b []byte) (*Checkpoint, error) {
	if len(b) < len(checkpointMagic)+12 || string(b[:len(checkpointMagic)]) != checkpointMagic {
		return nil, fmt.Errorf("not an ortrain checkpoint")
	}
	body, sum := b[:len(b)-4], binary.LittleEndian.Uint32(b[len(b)-4:])
	if crc32.ChecksumIEEE(body) != sum {
		return nil, fmt.Errorf("corrupt (checksum mismatch)")
	}
	r := bufio.NewReader(bytes.NewReader(body[len(checkpointMagic):]))
	var metaLen uint64
	if err := binary.Read(r, binary.LittleEndian, &metaLen); err != nil || metaLen > uint64(len(body)) {
		return nil, fmt.Errorf("corrupt header")
	}
	meta := make([]byte, metaLen)
	if _, err := io.ReadFull(r, meta); err != nil {
		return nil, fmt.Errorf("corrupt header: %w", err)
	}
	c := &Checkpoint{Tensors: map[string][]float32{}}
	if err := json.Unmarshal(meta, &c.Meta); err != nil {
		return nil, fmt.Errorf("corrupt header: %w", err)
	}
	if c.Meta.Format != checkpointFormat {
		return nil, fmt.Errorf("format %d, this ortrain reads format %d", c.Meta.Format, checkpointFormat)
	}
	for {
		var nameLen uint32
		if err := binary.Read(r, binary.LittleEndian, &nameLen); err == io.EOF {
			break
		} else if err != nil || nameLen > 4096 {
			return nil, fmt.Errorf("corrupt tensor table")
		}
		name := make([]byte, nameLen)
		var count uint64
		if _, err := io.ReadFull(r, name); err != nil {
			return nil, fmt.Errorf("corrupt tensor table")
		}
		if err := binary.Read(r, binary.LittleEndian, &count); err != nil || count > uint64(len(body))/4 {
			return nil, fmt.Errorf("corrupt tensor %s", name)
		}
		v := make([]float32, count)
		raw := make([]byte, 4*count)
		if _, err := io.ReadFull(r, raw); err != nil {
			return nil, fmt.Errorf("corrupt tensor %s", name)
		}
		for i := range v {
			v[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
		}
		c.Tensors[string(name)] = v
	}
	for n, s := range c.Meta.Shapes {
		v, ok := c.Tensors[n]
		if !ok || int64(len(v)) != graphgen.S(s...).NumElements() {
			return nil, fmt.Errorf("tensor %s missing or of the wrong size", n)
		}
	}
	return c, nil
}

// EpochSums are the running totals of an epoch's training metrics.
type EpochSums struct {
	Loss, Hard, Soft, TeacherSec float64
	Correct, Seen, Skipped       int
	Unreadable, Images           int
	// ResumedImages are the images of the epoch done before this process
	// resumed it (not saved: a resume sets it).
	ResumedImages int `json:"-"`
	// AllReduceSec is the time spent summing gradients over the processes.
	AllReduceSec float64 `json:"-"`
	// DataWaitSec is the time the trainer waited for a prepared batch,
	// StepSec the time in the steps (inputs copied in, the step run,
	// all-reduce included), since the epoch's start or resume (after
	// globalSums, the mean over the processes).
	DataWaitSec, StepSec float64 `json:"-"`
}
