package weights

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/ortrain/ortrain/graphgen/onnxpb"
)

func sample() Set {
	return Set{
		"conv.weight":             {Shape: []int64{2, 1, 1, 3}, Data: []float32{1, -2, 3.5, 0, 1e-8, -7}},
		"bn.running_var":          {Shape: []int64{2}, Data: []float32{0.5, 2}},
		"bn.num_batches_tracked":  {Shape: []int64{}, Int: []int64{12345}},
		"fc.bias":                 {Shape: []int64{3}, Data: []float32{float32(math.Inf(1)), 0, -1}},
		"layer1.0.bn1.weight":     {Shape: []int64{1}, Data: []float32{0.25}},
		"zero.sized":              {Shape: []int64{0, 4}, Data: []float32{}},
		"a.name.with.many.dots.x": {Shape: []int64{1, 1}, Data: []float32{42}},
	}
}

func sameSet(t *testing.T, got, want Set) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d tensors, want %d", len(got), len(want))
	}
	for n, w := range want {
		g, ok := got[n]
		if !ok {
			t.Fatalf("%s missing", n)
		}
		if !sameShape(g.Shape, w.Shape) || len(g.Data) != len(w.Data) || len(g.Int) != len(w.Int) {
			t.Fatalf("%s: got %+v, want %+v", n, g, w)
		}
		for i := range w.Data {
			if math.Float32bits(g.Data[i]) != math.Float32bits(w.Data[i]) {
				t.Fatalf("%s[%d] = %g, want %g", n, i, g.Data[i], w.Data[i])
			}
		}
		for i := range w.Int {
			if g.Int[i] != w.Int[i] {
				t.Fatalf("%s[%d] = %d, want %d", n, i, g.Int[i], w.Int[i])
			}
		}
	}
}

func TestSafetensorsRoundTrip(t *testing.T) {
	p := filepath.Join(t.TempDir(), "w.safetensors")
	if err := WriteSafetensors(p, sample(), map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	if hl := binary.LittleEndian.Uint64(b); (8+hl)%8 != 0 {
		t.Errorf("header of %d bytes: tensors not 8-byte aligned", hl)
	}
	got, err := Read(p)
	if err != nil {
		t.Fatal(err)
	}
	sameSet(t, got, sample())
}

// A file as other writers make it: float16, bfloat16 and float64 values,
// metadata, no padding.
func TestSafetensorsOtherTypes(t *testing.T) {
	header := `{"__metadata__":{"format":"pt"},"h":{"dtype":"F16","shape":[2],"data_offsets":[0,4]},` +
		`"b":{"dtype":"BF16","shape":[1],"data_offsets":[4,6]},"d":{"dtype":"F64","shape":[1],"data_offsets":[6,14]}}`
	var buf bytes.Buffer
	binary.Write(&buf, binary.LittleEndian, uint64(len(header)))
	buf.WriteString(header)
	binary.Write(&buf, binary.LittleEndian, []uint16{0x3c00, 0xc100}) // 1, -2.5
	binary.Write(&buf, binary.LittleEndian, uint16(0x4049))           // bfloat16 3.140625
	binary.Write(&buf, binary.LittleEndian, float64(0.1))
	p := filepath.Join(t.TempDir(), "x.safetensors")
	os.WriteFile(p, buf.Bytes(), 0o644)
	got, err := Read(p)
	if err != nil {
		t.Fatal(err)
	}
	sameSet(t, got, Set{"h": {Shape: []int64{2}, Data: []float32{1, -2.5}}, "b": {Shape: []int64{1}, Data: []float32{3.140625}},
		"d": {Shape: []int64{1}, Data: []float32{float32(0.1)}}})
}

// pickleZip makes a torch.save-style archive holding the given data.pkl.
func pickleZip(t *testing.T, pkl []byte, extra map[string][]byte) string {
	t.Helper()
	var buf bytes.Buffer
	z := zip.NewWriter(&buf)
	files := map[string][]byte{"archive/data.pkl": pkl, "archive/version": []byte("3\n")}
	for k, v := range extra {
		files[k] = v
	}
	for name, b := range files {
		w, err := z.CreateHeader(&zip.FileHeader{Name: name, Method: zip.Store})
		if err != nil {
			t.Fatal(err)
		}
		w.Write(b)
	}
	z.Close()
	p := filepath.Join(t.TempDir(), "w.pth")
	os.WriteFile(p, buf.Bytes(), 0o644)
	return p
}

// A pickle whose object is built by calling any Python function: what a
// malicious __reduce__ saves. The reader refuses the class by name.
func TestPickleRefusesArbitraryCallables(t *testing.T) {
	for _, global := range []string{"posix\nsystem", "os\nsystem", "builtins\neval", "__builtin__\nexec", "subprocess\ncall"} {
		cmd := "touch /tmp/pwned"
		var p bytes.Buffer
		p.WriteString("\x80\x02c" + global + "\n")              // PROTO 2, GLOBAL module name
		p.WriteString("X")                                      // BINUNICODE
		binary.Write(&p, binary.LittleEndian, uint32(len(cmd))) // its length
		p.WriteString(cmd + "\x85R}q\x00(X\x01\x00\x00\x00ab.") // TUPLE1, REDUCE, then junk
		path := pickleZip(t, p.Bytes(), nil)
		_, err := Read(path)
		if err == nil || !strings.Contains(err.Error(), "refused") || !strings.Contains(err.Error(), strings.Replace(global, "\n", ".", 1)) {
			t.Errorf("%q: err = %v, want the class refused", global, err)
		}
	}
}

// A state_dict pickle written by hand: OrderedDict of one float tensor
// over a storage of 4 floats, viewed with offset 1 and size 2.
func TestPickleStateDict(t *testing.T) {
	var p bytes.Buffer
	p.WriteString("\x80\x02ccollections\nOrderedDict\n)R") // OrderedDict()
	p.WriteString("X\x03\x00\x00\x00fc.")                  // key "fc."
	p.WriteString("ctorch._utils\n_rebuild_tensor_v2\n(")
	p.WriteString("(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x04tQ") // BINPERSID
	p.WriteString("K\x01K\x02\x85K\x01\x85\x89ccollections\nOrderedDict\n)Rt")                                    // offset 1, size (2,), stride (1,), False, OrderedDict()
	p.WriteString("Rs.")                                                                                          // REDUCE, SETITEM, STOP
	raw := new(bytes.Buffer)
	binary.Write(raw, binary.LittleEndian, []float32{9, 1.5, -2, 9})
	path := pickleZip(t, p.Bytes(), map[string][]byte{"archive/data/0": raw.Bytes()})
	got, err := Read(path)
	if err != nil {
		t.Fatal(err)
	}
	sameSet(t, got, Set{"fc.": {Shape: []int64{2}, Data: []float32{1.5, -2}}})

	// The same pickle with its storage cut short.
	short := pickleZip(t, p.Bytes(), map[string][]byte{"archive/data/0": raw.Bytes()[:8]})
	if _, err := Read(short); err == nil || !strings.Contains(err.Error(), "truncated") {
		t.Errorf("short storage: %v", err)
	}
}

func TestReadBadFiles(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.safetensors")
	if err := WriteSafetensors(good, sample(), nil); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(good)
	files := map[string][]byte{
		"empty":     {},
		"truncated": b[:len(b)-5],
		"header":    append([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0}, b[8:]...),
		"json":      append(append([]byte{}, b[:9]...), bytes.Repeat([]byte("x"), len(b)-9)...),
		"text":      []byte("hello, this is not a weights file\n"),
		"zip":       zipOf(t, "readme.txt"),
		"legacy":    []byte("\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19.\x80\x02M\xe9\x03."),
	}
	for name, content := range files {
		p := filepath.Join(dir, name)
		os.WriteFile(p, content, 0o644)
		if _, err := Read(p); err == nil {
			t.Errorf("%s: no error", name)
		} else if strings.Contains(err.Error(), "\n") || !strings.HasPrefix(err.Error(), "weights "+p+": ") {
			t.Errorf("%s: %q is not one line naming the file", name, err)
		}
	}
	if _, err := Read(dir); err == nil || !strings.Contains(err.Error(), "directory") {
		t.Errorf("directory: %v", err)
	}
	if _, err := Read(filepath.Join(dir, "absent")); err == nil {
		t.Error("absent file: no error")
	}
}

func zipOf(t *testing.T, name string) []byte {
	var buf bytes.Buffer
	z := zip.NewWriter(&buf)
	w, _ := z.Create(name)
	w.Write([]byte("hi"))
	z.Close()
	return buf.Bytes()
}

func TestMatch(t *testing.T) {
	s := Set{
		"a":                      {Shape: []int64{2}, Data: []float32{1, 2}},
		"b":                      {Shape: []int64{3}, Data: []float32{1, 2, 3}},
		"extra":                  {Shape: []int64{1}, Data: []float32{1}},
		"bn.num_batches_tracked": {Shape: []int64{}, Int: []int64{1}},
	}
	err := s.Match(map[string][]int64{"a": {2}, "b": {1, 3}, "c": {4}})
	var me *MismatchError
	if !errors.As(err, &me) {
		t.Fatalf("err = %v", err)
	}
	if strings.Join(me.Missing, ",") != "c" || strings.Join(me.Unexpected, ",") != "extra" || len(me.WrongShape) != 1 || !strings.HasPrefix(me.WrongShape[0], "b:") {
		t.Errorf("got %+v", me)
	}
	if err := s.Match(map[string][]int64{"a": {2}, "b": {3}, "extra": {1}}); err != nil {
		t.Errorf("num_batches_tracked should be ignored: %v", err)
	}
}

// DataParallel's prefix goes; a partial prefix stays.
func TestStripModulePrefix(t *testing.T) {
	s := stripPrefix(Set{"module.a": {}, "module.b": {}}, "module.")
	if _, ok := s["a"]; !ok || len(s) != 2 {
		t.Errorf("got %v", s.Names())
	}
	s = stripPrefix(Set{"module.a": {}, "b": {}}, "module.")
	if _, ok := s["module.a"]; !ok {
		t.Errorf("got %v", s.Names())
	}
}

func TestPyTorchRoundTrip(t *testing.T) {
	s := sample()
	s["big.count"] = Tensor{Shape: []int64{1}, Int: []int64{1 << 40}}
	p := filepath.Join(t.TempDir(), "w.pth")
	if err := WritePyTorch(p, s); err != nil {
		t.Fatal(err)
	}
	got, err := Read(p)
	if err != nil {
		t.Fatal(err)
	}
	sameSet(t, got, s)
}

// Files that would make a trusting reader allocate far more than their
// size, or name a class by the stack: errors, no panic, no allocation.
func TestReadHostileFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, b, 0o644)
		return p
	}
	onnx := func(dims []int64) string {
		m := &onnxpb.ModelProto{IrVersion: proto.Int64(8), Graph: &onnxpb.GraphProto{Initializer: []*onnxpb.TensorProto{
			{Name: proto.String("w"), DataType: proto.Int32(int32(onnxpb.TensorProto_FLOAT)), Dims: dims, FloatData: []float32{1}}}}}
		b, _ := proto.Marshal(m)
		return write(fmt.Sprint("m", len(dims), dims[0], ".onnx"), b)
	}
	st := func(header string) string {
		var b bytes.Buffer
		binary.Write(&b, binary.LittleEndian, uint64(len(header)))
		b.WriteString(header)
		b.Write(make([]byte, 16))
		return write(fmt.Sprint("s", len(header), ".safetensors"), b.Bytes())
	}
	frame := append([]byte("\x80\x04\x95"), 0, 0, 0, 0, 0, 1, 0, 0) // a frame of 2^40 bytes
	cases := map[string]string{
		onnx([]int64{1 << 40}):                         "more than",
		onnx([]int64{1 << 32, 1 << 32}):                "more than",
		onnx([]int64{-1, -1}):                          "negative dimension",
		onnx([]int64{3}):                               "1 values for shape [3]",
		pickleZip(t, frame, nil):                       "truncated, or a length beyond its end",
		pickleZip(t, []byte("X\xff\xff\xff\xff"), nil): "truncated, or a length beyond its end",
		pickleZip(t, []byte("\x80\x02ccopy_reg\n_reconstructor\n."), nil):                                                   "refused",
		pickleZip(t, []byte("\x80\x04\x8c\x05posix\x94\x8c\x06system\x94\x93."), nil):                                       `refused: the pickle names the Python object "posix.system"`,
		pickleZip(t, []byte("\x80\x02\xff."), nil):                                                                          "unknown opcode",
		st(`{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}`): "overlaps",
		st(`{"a":{"dtype":"F32","shape":[4],"data_offsets":[16,0]}}`):                                                       "offsets",
	}
	for path, want := range cases {
		_, err := Read(path)
		if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: %v, want one line with %q", filepath.Base(path), err, want)
		}
	}
	// A storage entry claiming more bytes than the file has.
	var p bytes.Buffer
	p.WriteString("\x80\x02}X\x01\x00\x00\x00wctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuJ\x00\x00\x00\x40tQK\x00J\x00\x00\x00\x40\x85K\x01\x85\x89}tRs.")
	if _, err := Read(pickleZip(t, p.Bytes(), map[string][]byte{"archive/data/0": make([]byte, 16)})); err == nil || !strings.Contains(err.Error(), "truncated") {
		t.Errorf("storage of 2^30 values in 16 bytes: %v", err)
	}
}
