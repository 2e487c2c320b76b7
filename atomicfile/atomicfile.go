// Package atomicfile writes files so that a reader, or a crash, never
// sees a half-written file, and so that secret files never exist with
// wider permissions than they end with. Every file the node writes goes
// through here (DESIGN invariant 7).
package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// Write replaces path with data. The data goes to a temporary file in
// the same directory that is created with mode perm, synced, and then
// renamed over path; the directory is synced afterwards. Missing parent
// directories are created with mode 0755. On error path is unchanged.
func Write(path string, data []byte, perm fs.FileMode) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("atomicfile: creating directory %q: %w", dir, err)
	}
	if st, err := os.Lstat(path); err == nil && st.IsDir() {
		return fmt.Errorf("atomicfile: %q is a directory, want a file; "+
			"move it away and retry", path)
	}
	tmp, err := createTemp(dir, filepath.Base(path), perm)
	if err != nil {
		return err
	}
	name := tmp.Name()
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(name)
		}
	}()
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("atomicfile: writing %q: %w", name, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("atomicfile: syncing %q: %w", name, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("atomicfile: closing %q: %w", name, err)
	}
	if err := os.Rename(name, path); err != nil {
		return fmt.Errorf("atomicfile: renaming %q to %q: %w", name, path, err)
	}
	ok = true
	return syncDir(dir)
}

// createTemp opens a new temporary file whose mode is perm from the
// moment it exists (O_EXCL with the final mode; the umask is reverted
// with an explicit chmod before any data is written).
func createTemp(dir, base string, perm fs.FileMode) (*os.File, error) {
	for i := 0; i < 100; i++ {
		name := filepath.Join(dir, fmt.Sprintf(".%s.tmp%d-%d",
			base, os.Getpid(), time.Now().UnixNano()+int64(i)))
		f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("atomicfile: creating temp file in %q: %w", dir, err)
		}
		if err := f.Chmod(perm); err != nil {
			f.Close()
			os.Remove(name)
			return nil, fmt.Errorf("atomicfile: chmod %q: %w", name, err)
		}
		return f, nil
	}
	return nil, fmt.Errorf("atomicfile: no free temp name in %q", dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("atomicfile: opening directory %q: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("atomicfile: syncing directory %q: %w", dir, err)
	}
	return nil
}

// Backup copies path to path.bak-TIMESTAMP (same mode) if path exists,
// so old key material is kept rather than overwritten. It returns the
// backup's name, or "" when there was nothing to back up.
func Backup(path string, now time.Time) (string, error) {
	st, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("atomicfile: stat %q: %w", path, err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("atomicfile: reading %q for backup: %w", path, err)
	}
	stamp := now.UTC().Format("20060102T150405.000000000")
	bak := path + ".bak-" + stamp
	if err := Write(bak, data, st.Mode().Perm()); err != nil {
		return "", err
	}
	return bak, nil
}

// Remove deletes path; a missing file is not an error.
func Remove(path string) error {
	err := os.Remove(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("atomicfile: removing %q: %w", path, err)
	}
	return nil
}
