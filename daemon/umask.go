package daemon

import (
	"bytes"
	"path/filepath"
	"syscall"
)

func setUmask(m int) int { return syscall.Umask(m) }

func dirOf(p string) string { return filepath.Dir(p) }

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }
