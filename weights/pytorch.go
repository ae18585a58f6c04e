package weights

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"strings"

	"github.com/nlpodyssey/gopickle/pickle"
	"github.com/nlpodyssey/gopickle/types"

	"github.com/ortrain/ortrain/graphgen"
)

// A PyTorch file (torch.save since 1.6) is a zip archive: <root>/data.pkl
// is a pickle of the saved object whose tensors refer, by persistent IDs,
// to raw little-endian storages in <root>/data/<key>.
//
// Unpickling can run arbitrary code in Python; here it runs none. The
// pickle is first walked opcode by opcode (scanPickle): every length must
// fit in what follows, and every class it names must be one a state_dict
// holds: OrderedDict, the storage types and torch's tensor and parameter
// rebuild functions. Then gopickle's pickle machine, which builds only Go
// values, reads it with the same whitelist as its class lookup. Any other
// class (os.system, builtins.eval, ...) is an error, not a placeholder.

// storageType is a torch.*Storage class named in a pickle.
type storageType struct {
	name  string
	esize int64
	float bool
}

var storageTypes = map[string]storageType{
	"FloatStorage":    {"F32", 4, true},
	"HalfStorage":     {"F16", 2, true},
	"BFloat16Storage": {"BF16", 2, true},
	"DoubleStorage":   {"F64", 8, true},
	"LongStorage":     {"I64", 8, false},
}

// storage is a loaded storage: its bytes, decoded on use.
type storage struct {
	typ storageType
	raw []byte
}

// tensorRef is a tensor as the pickle describes it: a view of a storage.
type tensorRef struct {
	st     *storage
	offset int64
	size   []int64
	stride []int64
}

// rebuildTensor is torch._utils._rebuild_tensor_v2(storage, offset, size,
// stride, requires_grad, backward_hooks[, metadata]).
type rebuildTensor struct{}

func (rebuildTensor) Call(args ...interface{}) (interface{}, error) {
	if len(args) < 4 {
		return nil, fmt.Errorf("tensor with %d arguments", len(args))
	}
	st, ok := args[0].(*storage)
	off, ok2 := args[1].(int)
	size, ok3 := intTuple(args[2])
	stride, ok4 := intTuple(args[3])
	if !ok || !ok2 || !ok3 || !ok4 || len(size) != len(stride) || off < 0 {
		return nil, errors.New("malformed tensor")
	}
	return &tensorRef{st: st, offset: int64(off), size: size, stride: stride}, nil
}

// rebuildParameter is torch._utils._rebuild_parameter(data, requires_grad,
// backward_hooks): the tensor itself.
type rebuildParameter struct{}

func (rebuildParameter) Call(args ...interface{}) (interface{}, error) {
	if len(args) < 1 {
		return nil, errors.New("malformed parameter")
	}
	if t, ok := args[0].(*tensorRef); ok {
		return t, nil
	}
	return nil, errors.New("malformed parameter")
}

func intTuple(v interface{}) ([]int64, bool) {
	t, ok := v.(*types.Tuple)
	if !ok {
		return nil, false
	}
	out := make([]int64, t.Len())
	for i := range out {
		x, ok := t.Get(i).(int)
		if !ok || x < 0 {
			return nil, false
		}
		out[i] = int64(x)
	}
	return out, true
}

// allowedClass is the whitelist of the classes a state_dict pickle may
// name.
func allowedClass(module, name string) bool {
	switch module + "." + name {
	case "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_parameter", "collections.OrderedDict":
		return true
	}
	_, ok := storageTypes[name]
	return ok && module == "torch"
}

// findClass gives the unpickler the whitelisted classes, as Go values
// that build Go values.
func findClass(module, name string) (interface{}, error) {
	if !allowedClass(module, name) {
		return nil, refusedClass(module, name)
	}
	switch module + "." + name {
	case "torch._utils._rebuild_tensor_v2":
		return rebuildTensor{}, nil
	case "torch._utils._rebuild_parameter":
		return rebuildParameter{}, nil
	case "collections.OrderedDict":
		return &types.OrderedDictClass{}, nil
	}
	return storageTypes[name], nil
}

// maxPickle bounds data.pkl: a ResNet state_dict's is about 100 KB.
const maxPickle = 64 << 20

func readPyTorch(r io.ReaderAt, size int64) (s Set, err error) {
	// gopickle builds Go values from an untrusted stream; a malformed one
	// can trip its type assertions. That is a bad file, not our bug.
	defer func() {
		if p := recover(); p != nil {
			s, err = nil, fmt.Errorf("malformed PyTorch file (%v)", shortError(fmt.Errorf("%v", p)))
		}
	}()
	z, err := zip.NewReader(r, size)
	if err != nil {
		return nil, fmt.Errorf("corrupt PyTorch zip archive: %v", err)
	}
	var pkl *zip.File
	files := map[string]*zip.File{}
	for _, f := range z.File {
		files[f.Name] = f
		if strings.HasSuffix(f.Name, "/data.pkl") && strings.Count(f.Name, "/") == 1 {
			pkl = f
		}
		if strings.HasSuffix(f.Name, "/constants.pkl") {
			return nil, errors.New("a TorchScript archive, not a state_dict: save model.state_dict() instead")
		}
	}
	if pkl == nil {
		return nil, errors.New("a zip archive without data.pkl: not a torch.save file")
	}
	root := strings.TrimSuffix(pkl.Name, "data.pkl")
	if bo, ok := files[root+"byteorder"]; ok {
		b, err := readEntry(bo, 16, size)
		if err != nil || strings.TrimSpace(string(b)) != "little" {
			return nil, errors.New("a big-endian PyTorch file (byteorder is not little): not supported")
		}
	}
	p, err := readEntry(pkl, maxPickle, size)
	if err != nil {
		return nil, fmt.Errorf("data.pkl: %v", err)
	}
	if err := scanPickle(p, allowedClass); err != nil {
		return nil, fmt.Errorf("data.pkl: %v", err)
	}
	u := pickle.NewUnpickler(bytes.NewReader(p))
	u.FindClass = findClass
	storages := map[string]*storage{}
	u.PersistentLoad = func(id interface{}) (interface{}, error) {
		return loadStorage(id, root, files, storages, size)
	}
	obj, err := u.Load()
	if err != nil {
		return nil, fmt.Errorf("data.pkl: %v", shortError(err))
	}
	// Views copy values out of storages; a pickle naming one storage many
	// times must not multiply the file: at most a value per byte.
	budget := size
	return stateDict(obj, &budget)
}

// readEntry reads a zip entry whole. torch.save stores entries
// uncompressed, so an entry's size is bytes of the file itself: it is
// checked against limit and the file's size before anything is allocated.
func readEntry(f *zip.File, limit, fileSize int64) ([]byte, error) {
	if f.Method != zip.Store || f.CompressedSize64 != f.UncompressedSize64 {
		return nil, fmt.Errorf("entry %s is compressed; torch.save stores its entries", quoted(f.Name))
	}
	if f.UncompressedSize64 > uint64(limit) || f.UncompressedSize64 > uint64(fileSize) {
		return nil, fmt.Errorf("entry %s claims %d bytes in a file of %d (truncated or corrupt)", quoted(f.Name), f.UncompressedSize64, fileSize)
	}
	rc, err := f.Open()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b := make([]byte, f.UncompressedSize64)
	if _, err := io.ReadFull(rc, b); err != nil {
		return nil, fmt.Errorf("entry %s: %v (truncated?)", quoted(f.Name), err)
	}
	return b, nil
}

// loadStorage reads the storage a persistent ID ("storage", type, key,
// location, numel) names, once per key.
func loadStorage(id interface{}, root string, files map[string]*zip.File, loaded map[string]*storage, fileSize int64) (interface{}, error) {
	t, ok := id.(*types.Tuple)
	if !ok || t.Len() < 5 || t.Get(0) != "storage" {
		return nil, errors.New("unknown persistent ID")
	}
	typ, ok := t.Get(1).(storageType)
	key, ok2 := t.Get(2).(string)
	numel, ok3 := t.Get(4).(int)
	if !ok || !ok2 || !ok3 || numel < 0 || int64(numel) > maxElements {
		return nil, errors.New("malformed storage reference")
	}
	if st, ok := loaded[key]; ok {
		return st, nil
	}
	f, ok := files[root+"data/"+key]
	if !ok {
		return nil, fmt.Errorf("storage %s missing from the archive (truncated?)", quoted(key))
	}
	n := int64(numel) * typ.esize
	if f.UncompressedSize64 < uint64(n) {
		return nil, fmt.Errorf("storage %s: %d bytes for %d values (truncated?)", quoted(key), f.UncompressedSize64, numel)
	}
	raw, err := readEntry(f, n, fileSize)
	if err != nil {
		return nil, fmt.Errorf("storage %s: %v", quoted(key), err)
	}
	st := &storage{typ: typ, raw: raw}
	loaded[key] = st
	return st, nil
}

// stateDict finds the state_dict in an unpickled object: the object itself
// when it maps names to tensors, else its "state_dict", "model" or
// "module" entry.
func stateDict(obj interface{}, budget *int64) (Set, error) {
	entries, ok := dictEntries(obj)
	if !ok {
		return nil, fmt.Errorf("holds a Python %s, not a state_dict (a dict of tensors by name)", pyType(obj))
	}
	if s, ok, err := tensorsByName(entries, budget); ok || err != nil {
		return s, err
	}
	var keys []string
	for _, e := range entries {
		if k, ok := e[0].(string); ok {
			keys = append(keys, k)
		}
	}
	for _, want := range []string{"state_dict", "model", "module"} {
		for _, e := range entries {
			if e[0] != want {
				continue
			}
			if inner, ok := dictEntries(e[1]); ok {
				if s, ok, err := tensorsByName(inner, budget); ok || err != nil {
					return s, err
				}
			}
		}
	}
	if len(keys) > 8 {
		keys = append(keys[:8], "...")
	}
	return nil, fmt.Errorf("holds a dict (keys %s) with no state_dict in it, nor under state_dict, model or module", strings.Join(keys, ", "))
}

// dictEntries lists a dict's or an OrderedDict's (key, value) pairs.
func dictEntries(obj interface{}) ([][2]interface{}, bool) {
	var out [][2]interface{}
	switch d := obj.(type) {
	case *types.Dict:
		for _, e := range *d {
			out = append(out, [2]interface{}{e.Key, e.Value})
		}
	case *types.OrderedDict:
		for el := d.List.Front(); el != nil; el = el.Next() {
			e := el.Value.(*types.OrderedDictEntry)
			out = append(out, [2]interface{}{e.Key, e.Value})
		}
	default:
		return nil, false
	}
	return out, true
}

// tensorsByName converts a dict whose every value is a tensor; ok is false
// when it is not such a dict.
func tensorsByName(entries [][2]interface{}, budget *int64) (Set, bool, error) {
	if len(entries) == 0 {
		return nil, false, nil
	}
	s := Set{}
	for _, e := range entries {
		name, ok := e[0].(string)
		ref, ok2 := e[1].(*tensorRef)
		if !ok || !ok2 {
			return nil, false, nil
		}
		n, err := checkedElements(ref.size)
		if err != nil {
			return nil, true, fmt.Errorf("tensor %s: %v", quoted(name), err)
		}
		if *budget -= n; *budget < 0 {
			return nil, true, errors.New("corrupt: its tensors hold more values than the file has bytes")
		}
		t, err := ref.tensor(n)
		if err != nil {
			return nil, true, fmt.Errorf("tensor %s: %v", quoted(name), err)
		}
		s[name] = t
	}
	return s, true, nil
}

// tensor gathers the view's n values (any strides) from its storage.
func (r *tensorRef) tensor(n int64) (Tensor, error) {
	count := int64(len(r.st.raw)) / r.st.typ.esize
	last := r.offset
	for i, d := range r.size {
		if d > 0 {
			last += (d - 1) * r.stride[i]
		}
	}
	if n > 0 && (last >= count || n > count) {
		return Tensor{}, fmt.Errorf("view of %d values beyond its storage of %d", n, count)
	}
	t := Tensor{Shape: append([]int64{}, r.size...)}
	esize := r.st.typ.esize
	idx := make([]int64, len(r.size))
	at := func() int64 { // storage index of the element at idx
		p := r.offset
		for i, x := range idx {
			p += x * r.stride[i]
		}
		return p
	}
	if !r.st.typ.float {
		t.Int = make([]int64, n)
	} else {
		t.Data = make([]float32, n)
	}
	for k := int64(0); k < n; k++ {
		p := at() * esize
		b := r.st.raw[p : p+esize]
		if t.Int != nil {
			t.Int[k] = int64(binary.LittleEndian.Uint64(b))
		} else {
			t.Data[k] = decodeFloat(b, r.st.typ.name)
		}
		for i := len(idx) - 1; i >= 0; i-- { // next index, last axis fastest
			idx[i]++
			if idx[i] < r.size[i] {
				break
			}
			idx[i] = 0
		}
	}
	return t, nil
}

func decodeFloat(b []byte, dtype string) float32 {
	switch dtype {
	case "F16":
		return graphgen.HalfToFloat32(binary.LittleEndian.Uint16(b))
	case "BF16":
		return math.Float32frombits(uint32(binary.LittleEndian.Uint16(b)) << 16)
	case "F64":
		return float32(math.Float64frombits(binary.LittleEndian.Uint64(b)))
	}
	return math.Float32frombits(binary.LittleEndian.Uint32(b))
}

// pyType names an unpickled value's Python type, for messages.
func pyType(v interface{}) string {
	switch v.(type) {
	case *types.List:
		return "list"
	case *types.Tuple:
		return "tuple"
	case string:
		return "str"
	case int, int64, *big.Int:
		return "int"
	case float64:
		return "float"
	case bool:
		return "bool"
	case nil:
		return "None"
	case *tensorRef:
		return "tensor"
	}
	return "object"
}
