package raftnode

import (
	"bytes"
	"context"
	"io"
	"log"
	"log/slog"

	"github.com/hashicorp/go-hclog"
)

// hclogSink forwards hashicorp/raft's hclog events to slog so the
// daemon has one log stream with one format.
type hclogSink struct{ log *slog.Logger }

func (s hclogSink) Accept(name string, level hclog.Level, msg string, args ...interface{}) {
	s.log.Log(context.Background(), slogLevel(level), msg, args...)
}

func slogLevel(l hclog.Level) slog.Level {
	switch {
	case l >= hclog.Error:
		return slog.LevelError
	case l == hclog.Warn:
		return slog.LevelWarn
	case l == hclog.Info:
		return slog.LevelInfo
	}
	return slog.LevelDebug
}

// newHclog returns an hclog.Logger whose events all reach log.
func newHclog(name string, log *slog.Logger) hclog.Logger {
	l := hclog.NewInterceptLogger(&hclog.LoggerOptions{
		Name: name, Output: io.Discard, Level: hclog.Trace})
	l.RegisterSink(hclogSink{log: log})
	return l
}

// stdlogWriter turns memberlist's standard-library log lines
// ("[WARN] memberlist: ...") into slog events.
type stdlogWriter struct{ log *slog.Logger }

func (w stdlogWriter) Write(p []byte) (int, error) {
	line := bytes.TrimSpace(p)
	level := slog.LevelDebug
	for prefix, l := range map[string]slog.Level{
		"[ERR]": slog.LevelError, "[ERROR]": slog.LevelError,
		"[WARN]": slog.LevelWarn, "[INFO]": slog.LevelDebug,
	} {
		if i := bytes.Index(line, []byte(prefix)); i >= 0 {
			level = l
			line = bytes.TrimSpace(line[i+len(prefix):])
			break
		}
	}
	w.log.Log(context.Background(), level, "memberlist", "line", string(line))
	return len(p), nil
}

func newStdlog(l *slog.Logger) *log.Logger {
	return log.New(stdlogWriter{log: l}, "", 0)
}
