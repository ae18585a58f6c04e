package weights

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"

	"github.com/ortrain/ortrain/internal/atomicfile"
)

// The safetensors format (huggingface/safetensors): an 8-byte
// little-endian header length, a JSON header mapping each name to its
// dtype, shape and [begin, end) byte offsets into the data that follows,
// plus an optional "__metadata__" map of strings; then the raw
// little-endian tensors.

type stEntry struct {
	DType   string   `json:"dtype"`
	Shape   []int64  `json:"shape"`
	Offsets [2]int64 `json:"data_offsets"`
}

// maxHeader bounds the JSON header (the format's own limit is 100 MB).
const maxHeader = 100 << 20

func readSafetensors(f io.ReaderAt, size int64) (Set, error) {
	var lenBuf [8]byte
	if _, err := f.ReadAt(lenBuf[:], 0); err != nil {
		return nil, errors.New("truncated safetensors header")
	}
	hlen := binary.LittleEndian.Uint64(lenBuf[:])
	if hlen > maxHeader || int64(hlen) > size-8 {
		return nil, fmt.Errorf("corrupt safetensors header (length %d in a file of %d bytes)", hlen, size)
	}
	header := make([]byte, hlen)
	if _, err := f.ReadAt(header, 8); err != nil {
		return nil, errors.New("truncated safetensors header")
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(header, &raw); err != nil {
		return nil, fmt.Errorf("corrupt safetensors header: %v", err)
	}
	base := 8 + int64(hlen)
	entries := map[string]stEntry{}
	names := make([]string, 0, len(raw))
	for name, msg := range raw {
		if name == "__metadata__" {
			continue
		}
		var e stEntry
		if err := json.Unmarshal(msg, &e); err != nil {
			return nil, fmt.Errorf("corrupt safetensors entry %s: %v", quoted(name), err)
		}
		entries[name] = e
		names = append(names, name)
	}
	// In offset order, each tensor's bytes must begin where the previous
	// one's end or after, so that no byte is read twice: a header cannot
	// make a small file allocate more than its size.
	sort.Slice(names, func(i, j int) bool {
		a, b := entries[names[i]].Offsets[0], entries[names[j]].Offsets[0]
		return a < b || a == b && names[i] < names[j]
	})
	s := Set{}
	end := int64(0)
	for _, name := range names {
		e := entries[name]
		if e.Offsets[0] < end {
			return nil, fmt.Errorf("corrupt safetensors header: tensor %s overlaps another", quoted(name))
		}
		t, err := readSTTensor(f, base, size, name, e)
		if err != nil {
			return nil, err
		}
		s[name], end = t, e.Offsets[1]
	}
	return s, nil
}

// stSizes are the element sizes of the dtypes read.
var stSizes = map[string]int64{"F32": 4, "F16": 2, "BF16": 2, "F64": 8, "I64": 8}

func readSTTensor(f io.ReaderAt, base, size int64, name string, e stEntry) (Tensor, error) {
	esize, ok := stSizes[e.DType]
	if !ok {
		return Tensor{}, fmt.Errorf("tensor %s has dtype %s; readable: F32, F16, BF16, F64 and I64", quoted(name), quoted(e.DType))
	}
	n, err := checkedElements(e.Shape)
	if err != nil {
		return Tensor{}, fmt.Errorf("tensor %s: %v", quoted(name), err)
	}
	b, end := e.Offsets[0], e.Offsets[1]
	if b < 0 || end < b || end-b != n*esize || end > size-base {
		return Tensor{}, fmt.Errorf("tensor %s: offsets %v do not fit its shape %v and the file (truncated?)", quoted(name), e.Offsets, e.Shape)
	}
	buf := make([]byte, end-b)
	if _, err := f.ReadAt(buf, base+b); err != nil {
		return Tensor{}, fmt.Errorf("tensor %s: %v (truncated?)", quoted(name), err)
	}
	t := Tensor{Shape: append([]int64{}, e.Shape...)}
	if e.Shape == nil {
		t.Shape = []int64{}
	}
	if e.DType == "I64" {
		t.Int = make([]int64, n)
		for i := range t.Int {
			t.Int[i] = int64(binary.LittleEndian.Uint64(buf[8*i:]))
		}
		return t, nil
	}
	t.Data = decodeFloats(buf, e.DType, int(n))
	return t, nil
}

// decodeFloats converts little-endian values of a float dtype to float32.
func decodeFloats(buf []byte, dtype string, n int) []float32 {
	size := len(buf) / max(n, 1)
	v := make([]float32, n)
	for i := range v {
		v[i] = decodeFloat(buf[size*i:], dtype)
	}
	return v
}

// EncodeSafetensors serializes s (float32 and int64 tensors, sorted by
// name) with the given header metadata.
func EncodeSafetensors(s Set, meta map[string]string) ([]byte, error) {
	names := s.Names()
	header := map[string]any{}
	if len(meta) > 0 {
		header["__metadata__"] = meta
	}
	var off int64
	for _, n := range names {
		t := s[n]
		dtype, nbytes := "F32", 4*int64(len(t.Data))
		if t.Int != nil {
			dtype, nbytes = "I64", 8*int64(len(t.Int))
		}
		if int64(len(t.Data)+len(t.Int)) != t.Elements() {
			return nil, fmt.Errorf("tensor %s: %d values for shape %v", n, len(t.Data)+len(t.Int), t.Shape)
		}
		shape := t.Shape
		if shape == nil {
			shape = []int64{}
		}
		header[n] = stEntry{DType: dtype, Shape: shape, Offsets: [2]int64{off, off + nbytes}}
		off += nbytes
	}
	h, err := json.Marshal(header)
	if err != nil {
		return nil, err
	}
	// Pad the header with spaces to a multiple of 8 bytes, as the reference
	// writer does, so that the tensors are aligned.
	h = append(h, bytes.Repeat([]byte(" "), (8-len(h)%8)%8)...)
	out := make([]byte, 8, 8+int64(len(h))+off)
	binary.LittleEndian.PutUint64(out, uint64(len(h)))
	out = append(out, h...)
	for _, n := range names {
		t := s[n]
		for _, x := range t.Data {
			out = binary.LittleEndian.AppendUint32(out, math.Float32bits(x))
		}
		for _, x := range t.Int {
			out = binary.LittleEndian.AppendUint64(out, uint64(x))
		}
	}
	return out, nil
}

// WriteSafetensors writes s to path atomically (a failed write leaves
// what was there).
func WriteSafetensors(path string, s Set, meta map[string]string) error {
	b, err := EncodeSafetensors(s, meta)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return atomicfile.Write(path, b)
}
