package weights

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
)

// scanPickle walks a pickle's opcodes (Python's pickletools.genops, for
// protocols 0 to 5) before it is unpickled, and refuses what the pickle
// machine would act on blindly: a length (of a string, bytes, a frame)
// beyond the bytes that follow, which it would allocate before reading,
// an unknown opcode, and any class outside allowed. Classes named on the
// stack (STACK_GLOBAL) are checked where the two strings before it are
// literals; the unpickler's class lookup checks every class again.
func scanPickle(p []byte, allowed func(module, name string) bool) error {
	var strs []string // the last string literals, for STACK_GLOBAL
	for i := 0; i < len(p); {
		op := p[i]
		i++
		rest := int64(len(p) - i)
		lenArg := func(size int) (int64, error) {
			if rest < int64(size) {
				return 0, errTruncatedPickle
			}
			var n uint64
			for k := size - 1; k >= 0; k-- {
				n = n<<8 | uint64(p[i+k])
			}
			if n > uint64(rest-int64(size)) {
				return 0, errTruncatedPickle
			}
			return int64(n), nil
		}
		switch {
		case op == '.': // STOP
			return nil
		case strings.IndexByte(noArgs, op) >= 0:
			if op == 0x93 && len(strs) >= 2 && !allowed(strs[len(strs)-2], strs[len(strs)-1]) {
				return refusedClass(strs[len(strs)-2], strs[len(strs)-1])
			}
			continue // no argument
		case op == 'c' || op == 'i': // GLOBAL, INST: module and name lines
			mod, n1 := line(p[i:])
			name, n2 := line(p[i+n1:])
			if n1 == 0 || n2 == 0 {
				return errTruncatedPickle
			}
			if !allowed(mod, name) {
				return refusedClass(mod, name)
			}
			i += n1 + n2
			continue
		case strings.IndexByte("ILFSVPgp", op) >= 0: // one line
			_, n := line(p[i:])
			if n == 0 {
				return errTruncatedPickle
			}
			i += n
			continue
		}
		size, ok := fixedArgs[op]
		if ok {
			if rest < int64(size) {
				return errTruncatedPickle
			}
			i += size
			continue
		}
		prefix, ok := lengthArgs[op]
		if !ok {
			return fmt.Errorf("corrupt pickle: unknown opcode 0x%02x", op)
		}
		n, err := lenArg(prefix)
		if err != nil {
			return err
		}
		if op == 0x95 { // FRAME: only a length; the framed opcodes follow
			i += prefix
			continue
		}
		arg := p[i+prefix : i+prefix+int(n)]
		if op == 'X' || op == 0x8c || op == 0x8d {
			strs = append(strs[max(len(strs)-1, 0):], string(arg))
		}
		i += prefix + int(n)
	}
	return errTruncatedPickle
}

var errTruncatedPickle = errors.New("corrupt pickle: truncated, or a length beyond its end")

func refusedClass(module, name string) error {
	return fmt.Errorf("refused: the pickle names the Python object %s, which no state_dict holds (loading it in Python could run code)", quoted(module+"."+name))
}

// line is a newline-terminated argument and its length with the newline;
// 0 when there is no newline.
func line(p []byte) (string, int) {
	k := bytes.IndexByte(p, '\n')
	if k < 0 {
		return "", 0
	}
	return string(p[:k]), k + 1
}

// noArgs are the opcodes without an argument.
const noArgs = "()]}NRsuaetQb012lod\x81\x85\x86\x87\x88\x89\x90\x91\x92\x93\x94\x97\x98"

// fixedArgs are the opcodes with an argument of fixed size.
var fixedArgs = map[byte]int{
	'K': 1, 'M': 2, 'J': 4, 'G': 8, 'q': 1, 'r': 4, 'h': 1, 'j': 4,
	0x80: 1, 0x82: 1, 0x83: 2, 0x84: 4,
}

// lengthArgs are the opcodes whose argument is a little-endian length of
// this many bytes followed by that many bytes (FRAME: the length alone).
var lengthArgs = map[byte]int{
	'T': 4, 'U': 1, 'X': 4, 0x8c: 1, 0x8d: 8, 'B': 4, 'C': 1, 0x8e: 8, 0x96: 8,
	0x8a: 1, 0x8b: 4, 0x95: 8,
}
