// Package atomicfile writes files whole or not at all.
//
// A reader never sees a half-written file, and a failure leaves the old one
// in place. It imports nothing of ours.
package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"
)

// Write writes data to path through a synced temporary file and a rename. A
// symbolic link is followed (its target is written, the link kept; a
// dangling link gets its target created); a path that exists but is not a
// regular file (a device such as /dev/null, a named pipe) is written in
// place, never replaced. A replaced file keeps its permissions.
func Write(path string, data []byte) error {
	path, err := followLinks(path)
	if err != nil {
		return err
	}
	mode := os.FileMode(0o644)
	if st, err := os.Lstat(path); err == nil {
		if st.IsDir() {
			return fmt.Errorf("write %s: is a directory", path)
		}
		if !st.Mode().IsRegular() {
			return writeInPlace(path, data)
		}
		mode = st.Mode().Perm()
	}
	return replace(path, data, mode)
}

// followLinks resolves a chain of symbolic links to the path it ends at.
func followLinks(path string) (string, error) {
	for hops := 0; ; hops++ {
		st, err := os.Lstat(path)
		if err != nil || st.Mode()&os.ModeSymlink == 0 {
			return path, nil
		}
		if hops > 40 {
			return "", fmt.Errorf("write %s: too many levels of symbolic links", path)
		}
		target, err := os.Readlink(path)
		if err != nil {
			return "", fmt.Errorf("write %s: %w", path, err)
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(filepath.Dir(path), target)
		}
		path = target
	}
}

// writeInPlace writes a file that is not a regular one (a device, a pipe).
func writeInPlace(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// replace writes a temporary file beside path, syncs it, gives it mode and
// renames it over path.
func replace(path string, data []byte, mode os.FileMode) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	if st, serr := os.Stat(dir); serr != nil || !st.IsDir() {
		return fmt.Errorf("write %s: directory %s does not exist", path, dir)
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			os.Remove(tmp)
			err = fmt.Errorf("write %s: %w", path, err)
		}
	}()
	if _, err = f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err = f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Chmod(tmp, mode); err != nil {
		return err
	}
	if err = os.Rename(tmp, path); err != nil {
		return err
	}
	if d, derr := os.Open(dir); derr == nil { // persist the rename
		d.Sync()
		d.Close()
	}
	return nil
}
