package weights

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"strconv"

	"github.com/ortrain/ortrain/internal/atomicfile"
)

// EncodePyTorch serializes s as torch.save(state_dict) does since PyTorch
// 1.6: a zip archive (stored, not compressed) of archive/data.pkl, a
// protocol-2 pickle of an OrderedDict of tensors, each rebuilt by
// torch._utils._rebuild_tensor_v2 from its own storage archive/data/<i>
// (float32, or int64 for Int tensors), and archive/version.
func EncodePyTorch(s Set) ([]byte, error) {
	names := s.Names()
	var p bytes.Buffer
	p.WriteString("\x80\x02")
	global(&p, "collections", "OrderedDict")
	p.WriteString(")R(") // OrderedDict(), MARK
	for i, n := range names {
		t := s[n]
		if int64(len(t.Data)+len(t.Int)) != t.Elements() {
			return nil, fmt.Errorf("tensor %s: %d values for shape %v", n, len(t.Data)+len(t.Int), t.Shape)
		}
		unicode(&p, n)
		global(&p, "torch._utils", "_rebuild_tensor_v2")
		p.WriteString("((") // MARK for the arguments, MARK for the persistent ID
		unicode(&p, "storage")
		if t.Int != nil {
			global(&p, "torch", "LongStorage")
		} else {
			global(&p, "torch", "FloatStorage")
		}
		unicode(&p, strconv.Itoa(i))
		unicode(&p, "cpu")
		integer(&p, t.Elements())
		p.WriteString("tQ") // TUPLE, BINPERSID
		integer(&p, 0)      // storage offset
		p.WriteString("(")
		for _, d := range t.Shape {
			integer(&p, d)
		}
		p.WriteString("t(")
		stride := int64(1)
		strides := make([]int64, len(t.Shape))
		for j := len(t.Shape) - 1; j >= 0; j-- {
			strides[j] = stride
			stride *= t.Shape[j]
		}
		for _, st := range strides {
			integer(&p, st)
		}
		p.WriteString("t\x89") // TUPLE, NEWFALSE (requires_grad)
		global(&p, "collections", "OrderedDict")
		p.WriteString(")RtR") // backward hooks OrderedDict(), TUPLE, REDUCE
	}
	p.WriteString("u.") // SETITEMS, STOP

	var out bytes.Buffer
	z := zip.NewWriter(&out)
	add := func(name string, b []byte) error {
		w, err := z.CreateHeader(&zip.FileHeader{Name: name, Method: zip.Store})
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	}
	if err := add("archive/data.pkl", p.Bytes()); err != nil {
		return nil, err
	}
	for i, n := range names {
		t := s[n]
		raw := make([]byte, 0, 8*len(t.Int)+4*len(t.Data))
		for _, x := range t.Data {
			raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(x))
		}
		for _, x := range t.Int {
			raw = binary.LittleEndian.AppendUint64(raw, uint64(x))
		}
		if err := add("archive/data/"+strconv.Itoa(i), raw); err != nil {
			return nil, err
		}
	}
	if err := add("archive/version", []byte("3\n")); err != nil {
		return nil, err
	}
	if err := z.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// WritePyTorch writes s as a PyTorch state_dict file, atomically.
func WritePyTorch(path string, s Set) error {
	b, err := EncodePyTorch(s)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return atomicfile.Write(path, b)
}

// global writes the GLOBAL opcode: module and name, each on its line.
func global(p *bytes.Buffer, module, name string) {
	p.WriteString("c" + module + "\n" + name + "\n")
}

// unicode writes BINUNICODE: a 4-byte length and UTF-8 bytes.
func unicode(p *bytes.Buffer, s string) {
	p.WriteByte('X')
	binary.Write(p, binary.LittleEndian, uint32(len(s)))
	p.WriteString(s)
}

// integer writes BININT (4 bytes, signed) or LONG1 for larger values.
func integer(p *bytes.Buffer, v int64) {
	if v >= math.MinInt32 && v <= math.MaxInt32 {
		p.WriteByte('J')
		binary.Write(p, binary.LittleEndian, int32(v))
		return
	}
	p.WriteString("\x8a\x08") // LONG1 with 8 bytes, little-endian two's complement
	binary.Write(p, binary.LittleEndian, v)
}
