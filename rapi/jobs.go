package rapi

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// JobStatus is the state of a job or of one of its operations, with
// Ganeti's names.
type JobStatus string

// Job and operation states.
const (
	JobQueued   JobStatus = "queued"
	JobRunning  JobStatus = "running"
	JobSuccess  JobStatus = "success"
	JobError    JobStatus = "error"
	JobCanceled JobStatus = "canceled"
)

// errQueueFull is returned by submit when too many jobs wait.
var errQueueFull = errors.New("too many queued jobs; retry later")

// JobView is the JSON of GET /2/jobs/ID. Times are [seconds,
// microseconds] since the epoch, null until they happen.
type JobView struct {
	ID       int64       `json:"id"`
	Status   JobStatus   `json:"status"`
	Summary  []string    `json:"summary"`
	Ops      []Op        `json:"ops"`
	OpStatus []JobStatus `json:"opstatus"`
	// OpResult holds, per operation, a Result when it succeeded,
	// {"error": "..."} when it failed, and null otherwise.
	OpResult   []any     `json:"opresult"`
	ReceivedTS *[2]int64 `json:"received_ts"`
	StartTS    *[2]int64 `json:"start_ts"`
	EndTS      *[2]int64 `json:"end_ts"`
}

// opError is the opresult entry of a failed operation.
type opError struct {
	Error string `json:"error"`
}

// runFunc runs one operation of a job.
type runFunc func(ctx context.Context, op Op) (Result, error)

// jobStore queues jobs and runs them one at a time, in order, in one
// worker goroutine. Jobs live in memory on the node that accepted
// them; the newest keep finished jobs stay readable.
type jobStore struct {
	run     runFunc
	timeout time.Duration
	now     func() time.Time
	keep    int

	mu    sync.Mutex
	next  int64
	jobs  map[int64]*JobView
	ended []int64
	queue chan int64
	stop  chan struct{}
	once  sync.Once
}

func newJobStore(run runFunc, timeout time.Duration, keep, queued int,
	now func() time.Time) *jobStore {
	// IDs start at the clock in milliseconds, so that a master taking
	// over does not reuse the IDs of the one before it.
	return &jobStore{run: run, timeout: timeout, now: now, keep: keep,
		next: now().UnixMilli(), jobs: map[int64]*JobView{},
		queue: make(chan int64, queued), stop: make(chan struct{})}
}

// submit queues a job of ops and returns its ID.
func (s *jobStore) submit(ops []Op) (int64, error) {
	s.once.Do(func() { go s.work() })
	s.mu.Lock()
	defer s.mu.Unlock()
	j := &JobView{ID: s.next, Status: JobQueued, Ops: ops,
		OpResult: make([]any, len(ops)), ReceivedTS: ts(s.now())}
	for _, op := range ops {
		j.Summary = append(j.Summary, fmt.Sprintf("%s(%s)", op.Kind, op.Node))
		j.OpStatus = append(j.OpStatus, JobQueued)
	}
	select {
	case s.queue <- j.ID:
	default:
		return 0, errQueueFull
	}
	s.jobs[j.ID] = j
	s.next++
	return j.ID, nil
}

// get returns a copy of job id.
func (s *jobStore) get(id int64) (JobView, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j, ok := s.jobs[id]
	if !ok {
		return JobView{}, false
	}
	c := *j
	c.OpStatus = append([]JobStatus(nil), j.OpStatus...)
	c.OpResult = append([]any(nil), j.OpResult...)
	return c, true
}

// close stops the worker after the job it is running, if any.
func (s *jobStore) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
}

func (s *jobStore) work() {
	for {
		select {
		case <-s.stop:
			return
		case id := <-s.queue:
			s.runJob(id)
		}
	}
}

// runJob runs the operations of job id in order; the first failure
// ends the job and cancels the rest.
func (s *jobStore) runJob(id int64) {
	s.update(id, func(j *JobView) {
		j.Status, j.StartTS = JobRunning, ts(s.now())
	})
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	failed := false
	for i, op := range s.ops(id) {
		if failed {
			s.update(id, func(j *JobView) { j.OpStatus[i] = JobCanceled })
			continue
		}
		s.update(id, func(j *JobView) { j.OpStatus[i] = JobRunning })
		res, err := s.run(ctx, op)
		s.update(id, func(j *JobView) {
			j.OpStatus[i], j.OpResult[i] = JobSuccess, res
			if err != nil {
				j.OpStatus[i], j.OpResult[i] = JobError, opError{err.Error()}
			}
		})
		failed = err != nil
	}
	s.finish(id, failed)
}

func (s *jobStore) ops(id int64) []Op {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.jobs[id].Ops
}

func (s *jobStore) update(id int64, f func(*JobView)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s.jobs[id])
}

// finish records the end of job id and forgets the oldest finished
// jobs beyond keep.
func (s *jobStore) finish(id int64, failed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j := s.jobs[id]
	j.Status, j.EndTS = JobSuccess, ts(s.now())
	if failed {
		j.Status = JobError
	}
	s.ended = append(s.ended, id)
	for len(s.ended) > s.keep {
		delete(s.jobs, s.ended[0])
		s.ended = s.ended[1:]
	}
}

func ts(t time.Time) *[2]int64 {
	return &[2]int64{t.Unix(), int64(t.Nanosecond() / 1000)}
}
