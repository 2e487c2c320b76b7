package sshdist

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// DefaultServeIdle is how long `ssh-update --serve` waits for the next
// request before it exits. It is longer than the master's pool keeps an
// idle connection (DefaultPoolIdle), so the master normally closes
// first; the helper's own limit only ends sessions of a master that
// vanished without closing its TCP connection.
const DefaultServeIdle = 15 * time.Minute

// ServeUpdates is the helper's long-lived mode, the one the master's
// Pool uses: it answers a stream of requests on one SSH session, each
// request one line of JSON and each response one line of JSON, in
// order. Every request is handled exactly as ServeUpdate handles one
// (validated in full, applied under the node's lock, all or nothing);
// a request that fails gets an error response and the helper waits for
// the next. It returns nil at the end of in, or when no request came for
// idle (zero means DefaultServeIdle). A request line longer than
// MaxRequestSize, after which the stream cannot be trusted, is answered
// with an error and ends the helper with that error.
func ServeUpdates(env Env, in io.Reader, out io.Writer, idle time.Duration) error {
	if idle <= 0 {
		idle = DefaultServeIdle
	}
	lines := make(chan lineRead, 1)
	go readLines(bufio.NewReaderSize(in, 64<<10), lines)
	timer := time.NewTimer(idle)
	defer timer.Stop()
	enc := json.NewEncoder(out)
	for {
		var l lineRead
		select {
		case l = <-lines:
		case <-timer.C:
			return nil
		}
		if l.err != nil && len(bytes.TrimSpace(l.line)) == 0 &&
			errors.Is(l.err, io.EOF) {
			return nil
		}
		// A last request may lack its newline; any other read error
		// (an over-long line) ends the stream once answered.
		fatal := l.err
		if errors.Is(fatal, io.EOF) {
			fatal = nil
		}
		resp := &Response{}
		err := fatal
		if err == nil {
			err = serveUpdate(env, bytes.NewReader(l.line), resp)
		}
		if err != nil {
			resp.Error = err.Error()
		}
		if werr := enc.Encode(resp); werr != nil {
			return fmt.Errorf("sshdist: writing ssh-update response: %w", werr)
		}
		if l.err != nil {
			return fatal
		}
		timer.Reset(idle)
	}
}

// lineRead is one request line, or why none could be read.
type lineRead struct {
	line []byte
	err  error
}

// readLines sends each line of r (without limit on their number, each
// at most MaxRequestSize bytes) until the first error, which it sends
// with whatever was read of the last line.
func readLines(r *bufio.Reader, out chan<- lineRead) {
	for {
		line, err := readLine(r, MaxRequestSize)
		out <- lineRead{line: line, err: err}
		if err != nil {
			return
		}
	}
}

// readLine reads up to and including the next newline, refusing a line
// longer than limit bytes with ErrRequestTooLarge.
func readLine(r *bufio.Reader, limit int) ([]byte, error) {
	var line []byte
	for {
		chunk, err := r.ReadSlice('\n')
		if len(line)+len(chunk) > limit+1 {
			return nil, fmt.Errorf("%w: a request line is longer than %d "+
				"bytes", ErrRequestTooLarge, limit)
		}
		line = append(line, chunk...)
		if !errors.Is(err, bufio.ErrBufferFull) {
			return line, err
		}
	}
}
