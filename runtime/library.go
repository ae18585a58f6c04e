//go:build cgo

package runtime

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	ort "github.com/yalue/onnxruntime_go"
)

// ORTVersion is the ONNX Runtime release the project is built and tested
// against (its C API matches onnxruntime_go v1.27.0).
const ORTVersion = "1.24.1"

// LibraryEnv is the environment variable that may name the library.
const LibraryEnv = "ORTRAIN_ORT_LIB"

// SetupCommand is what installs the library.
const SetupCommand = "scripts/setup.sh"

// DefaultLibraryPath is where scripts/setup.sh installs the library:
// $XDG_DATA_HOME/ortrain/onnxruntime-<version>/libonnxruntime.so.1, with
// XDG_DATA_HOME defaulting to ~/.local/share.
func DefaultLibraryPath() string {
	base := os.Getenv("XDG_DATA_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			home = "."
		}
		base = filepath.Join(home, ".local", "share")
	}
	return filepath.Join(base, "ortrain", "onnxruntime-"+ORTVersion, "libonnxruntime.so.1")
}

// LibraryPath resolves the library: the path given if any, else the
// environment variable, else the set-up script's path. It checks that the file
// exists and says how to get it when it does not.
func LibraryPath(given string) (string, error) {
	path, from := given, "the path given"
	if path == "" {
		path, from = os.Getenv(LibraryEnv), "$"+LibraryEnv
	}
	if path == "" {
		path, from = DefaultLibraryPath(), "the default location"
	}
	st, err := os.Stat(path)
	switch {
	case err != nil:
		return "", fmt.Errorf("ONNX Runtime library not found at %s (from %s); run %s to install it, or point $%s at libonnxruntime.so.1", path, from, SetupCommand, LibraryEnv)
	case st.IsDir():
		return "", fmt.Errorf("ONNX Runtime library path %s (from %s) is a directory; it must name libonnxruntime.so.1", path, from)
	}
	return path, nil
}

// env guards the process-wide ONNX Runtime environment.
var env struct {
	sync.Mutex
	path string
}

// Init loads the library (resolved as LibraryPath does) and creates the ONNX
// Runtime environment. Later calls with the same resolved path do nothing.
func Init(lib string) error {
	path, err := LibraryPath(lib)
	if err != nil {
		return err
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("ONNX Runtime library %s: %w", path, err)
	}
	env.Lock()
	defer env.Unlock()
	if env.path != "" {
		if env.path != abs {
			return fmt.Errorf("ONNX Runtime is already loaded from %s; cannot also load %s", env.path, abs)
		}
		return nil
	}
	ort.SetSharedLibraryPath(abs)
	if err := ort.InitializeEnvironment(ort.WithLogLevelError()); err != nil {
		return fmt.Errorf("load ONNX Runtime from %s: %w (run %s to install version %s)", abs, err, SetupCommand, ORTVersion)
	}
	env.path = abs
	return nil
}

// Version is the loaded library's version string.
func Version() string {
	if !ort.IsInitialized() {
		return ""
	}
	return ort.GetVersion()
}

var errNotInit = errors.New("ONNX Runtime is not initialized (call runtime.Init)")
