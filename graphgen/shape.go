package graphgen

import (
	"fmt"
	"strconv"
	"strings"
)

// Dim is one dimension of a shape: a known size (Size >= 0), a named symbolic
// size (Param != ""), or unknown (Size < 0 and no Param).
type Dim struct {
	Size  int64
	Param string
}

// D is a dimension of known size.
func D(n int64) Dim { return Dim{Size: n} }

// Sym is a named symbolic dimension, such as the batch size "N".
func Sym(name string) Dim { return Dim{Size: -1, Param: name} }

// Unknown is a dimension nothing is known about.
func Unknown() Dim { return Dim{Size: -1} }

// Known reports whether the size is a number.
func (d Dim) Known() bool { return d.Size >= 0 }

func (d Dim) String() string {
	switch {
	case d.Known():
		return strconv.FormatInt(d.Size, 10)
	case d.Param != "":
		return d.Param
	}
	return "?"
}

// same reports whether two dimensions are known to be equal.
func (d Dim) same(o Dim) bool {
	if d.Known() || o.Known() {
		return d.Size == o.Size
	}
	return d.Param != "" && d.Param == o.Param
}

// Shape is a tensor shape; nil means the rank is unknown.
type Shape []Dim

// S builds a static shape.
func S(dims ...int64) Shape {
	s := make(Shape, len(dims))
	for i, n := range dims {
		s[i] = D(n)
	}
	return s
}

// Rank is the number of dimensions.
func (s Shape) Rank() int { return len(s) }

// Static reports whether every dimension is a known size.
func (s Shape) Static() bool {
	if s == nil {
		return false
	}
	for _, d := range s {
		if !d.Known() {
			return false
		}
	}
	return true
}

// Ints returns the sizes of a static shape (unknown dimensions as -1).
func (s Shape) Ints() []int64 {
	out := make([]int64, len(s))
	for i, d := range s {
		out[i] = d.Size
		if !d.Known() {
			out[i] = -1
		}
	}
	return out
}

// NumElements is the product of the sizes, or -1 when one is not known.
func (s Shape) NumElements() int64 {
	n := int64(1)
	for _, d := range s {
		if !d.Known() {
			return -1
		}
		n *= d.Size
	}
	return n
}

// Equal reports whether both shapes are known to be the same.
func (s Shape) Equal(o Shape) bool {
	if len(s) != len(o) || s == nil || o == nil {
		return false
	}
	for i := range s {
		if !s[i].same(o[i]) {
			return false
		}
	}
	return true
}

// Clone copies a shape.
func (s Shape) Clone() Shape {
	if s == nil {
		return nil
	}
	return append(Shape{}, s...)
}

func (s Shape) String() string {
	if s == nil {
		return "(?)"
	}
	parts := make([]string, len(s))
	for i, d := range s {
		parts[i] = d.String()
	}
	return "(" + strings.Join(parts, ",") + ")"
}

// broadcast applies numpy-style multidirectional broadcasting.
func broadcast(a, b Shape) (Shape, error) {
	if a == nil || b == nil {
		return nil, nil
	}
	n := max(len(a), len(b))
	out := make(Shape, n)
	for i := 0; i < n; i++ {
		da, db := D(1), D(1)
		if j := i - (n - len(a)); j >= 0 {
			da = a[j]
		}
		if j := i - (n - len(b)); j >= 0 {
			db = b[j]
		}
		switch {
		case da.Known() && da.Size == 1:
			out[i] = db
		case db.Known() && db.Size == 1:
			out[i] = da
		case da.same(db):
			out[i] = da
		case da.Known() && db.Known():
			return nil, fmt.Errorf("shapes %v and %v do not broadcast", a, b)
		case da.Known():
			out[i] = da
		case db.Known():
			out[i] = db
		default:
			out[i] = Unknown()
		}
	}
	return out, nil
}

// normAxis maps a possibly negative axis into [0, rank).
func normAxis(axis int64, rank int) (int, error) {
	a := axis
	if a < 0 {
		a += int64(rank)
	}
	if a < 0 || a >= int64(rank) {
		return 0, fmt.Errorf("axis %d out of range for rank %d", axis, rank)
	}
	return int(a), nil
}
