//go:build !cgo || noturbo

package data

import "errors"

// JPEGDecoder names the decoder in use, for logs and benchmarks.
const JPEGDecoder = "Go image/jpeg"

// decodeJPEGFast is unavailable without libjpeg-turbo: Go's decoder serves.
func decodeJPEGFast(b []byte) (*RGB, error) { return nil, errors.New("built without libjpeg-turbo") }
