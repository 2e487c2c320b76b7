package rapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeBackend records the operations it is asked to run.
type fakeBackend struct {
	mu          sync.Mutex
	cluster     Cluster
	nodes       []Node
	master      Master
	unsupported map[OpKind]bool
	runErr      map[OpKind]error
	gate        chan struct{} // when set, Run waits for it
	ran         []Op
}

func newFake() *fakeBackend {
	return &fakeBackend{
		cluster: Cluster{Name: "c.example", UUID: "u", Master: "n1",
			CandidatePoolSize: 3},
		nodes:       []Node{master, candidate, regular, offline},
		master:      Master{Self: true, Name: "n1", IP: "127.0.0.1"},
		unsupported: map[OpKind]bool{OpDrain: true, OpUndrain: true},
	}
}

func (f *fakeBackend) Cluster() (Cluster, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cluster, nil
}

func (f *fakeBackend) Nodes() ([]Node, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Node(nil), f.nodes...), nil
}

func (f *fakeBackend) Master() Master {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.master
}

func (f *fakeBackend) Supports(k OpKind) bool { return !f.unsupported[k] }

func (f *fakeBackend) Run(ctx context.Context, op Op) (Result, error) {
	f.mu.Lock()
	gate := f.gate
	f.mu.Unlock()
	if gate != nil {
		<-gate
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ran = append(f.ran, op)
	if err := f.runErr[op.Kind]; err != nil {
		return Result{}, err
	}
	return Result{Message: fmt.Sprintf("%s %s done", op.Kind, op.Node)}, nil
}

func (f *fakeBackend) ranOps() []Op {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Op(nil), f.ran...)
}

func (f *fakeBackend) setFlag(v bool) {
	f.mu.Lock()
	f.cluster.MasterCapabilityRapiModifiable = v
	f.mu.Unlock()
}

// staticUsers is a UsersSource from a string.
type staticUsers string

func (s staticUsers) Load() (*Users, error) { return ParseUsers([]byte(s)) }

const testUsers = "admin {cleartext}adminpw write\nreader readerpw\n"

// rig is a server over a fake backend with a log buffer.
type rig struct {
	s   *Server
	be  *fakeBackend
	clk *clock
	log *bytes.Buffer
}

func newRig(t testing.TB) *rig {
	t.Helper()
	r := &rig{be: newFake(), clk: newClock(), log: &bytes.Buffer{}}
	s, err := New(Config{Backend: r.be, Users: staticUsers(testUsers),
		Limiter: NewFailureLimiter(3, time.Minute, 100, r.clk.now),
		MaxBody: 1024, Log: slog.New(slog.NewTextHandler(&syncWriter{w: r.log}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	r.s = s
	return r
}

// syncWriter serialises writes of the job worker and the test.
type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// req describes one request of a test.
type req struct {
	method, path, body string
	user, pw           string
	from               string
	contentType        string
}

// do serves rq and returns the status and the decoded JSON body.
func (r *rig) do(t testing.TB, rq req) (int, any) {
	t.Helper()
	hr := httptest.NewRequest(rq.method, rq.path, strings.NewReader(rq.body))
	if rq.user != "" {
		hr.SetBasicAuth(rq.user, rq.pw)
	}
	hr.RemoteAddr = "192.0.2.1:4000"
	if rq.from != "" {
		hr.RemoteAddr = rq.from
	}
	if rq.body != "" {
		ct := rq.contentType
		if ct == "" {
			ct = "application/json"
		}
		hr.Header.Set("Content-Type", ct)
	}
	w := httptest.NewRecorder()
	r.s.ServeHTTP(w, hr)
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("%s %s: Content-Type %q, want application/json", rq.method, rq.path, ct)
	}
	var v any
	if err := json.Unmarshal(w.Body.Bytes(), &v); err != nil {
		t.Fatalf("%s %s: body %q is not JSON: %v", rq.method, rq.path, w.Body, err)
	}
	return w.Code, v
}

func admin(method, path, body string) req {
	return req{method: method, path: path, body: body, user: "admin", pw: "adminpw"}
}

func reader(method, path string) req {
	return req{method: method, path: path, user: "reader", pw: "readerpw"}
}

func TestServer_RequiresAuthentication(t *testing.T) {
	r := newRig(t)
	cases := []struct {
		name string
		rq   req
		want int
	}{
		{"no credentials", req{method: "GET", path: "/version"}, 401},
		{"wrong password", req{method: "GET", path: "/version", user: "admin", pw: "x"}, 401},
		{"unknown user", req{method: "GET", path: "/2/info", user: "root", pw: "adminpw"}, 401},
		{"reader", reader("GET", "/version"), 200},
		{"admin", admin("GET", "/version", ""), 200},
	}
	for _, tc := range cases {
		if code, _ := r.do(t, tc.rq); code != tc.want {
			t.Errorf("%s: got %d, want %d", tc.name, code, tc.want)
		}
	}
}

func TestServer_RateLimitsFailedLogins(t *testing.T) {
	r := newRig(t)
	bad := req{method: "GET", path: "/2/info", user: "admin", pw: "guess", from: "198.51.100.7:1"}
	for i := range 3 {
		if code, _ := r.do(t, bad); code != 401 {
			t.Fatalf("failure %d: got %d, want 401", i, code)
		}
	}
	good := bad
	good.pw = "adminpw"
	if code, body := r.do(t, good); code != http.StatusTooManyRequests {
		t.Fatalf("right password after the burst: got %d %v, want 429", code, body)
	}
	other := good
	other.from = "198.51.100.8:1"
	if code, _ := r.do(t, other); code != 200 {
		t.Fatalf("another address: got %d, want 200", code)
	}
	r.clk.advance(time.Minute)
	if code, _ := r.do(t, good); code != 200 {
		t.Fatalf("after the refill: got %d, want 200", code)
	}
}

func TestServer_ReadEndpoints(t *testing.T) {
	r := newRig(t)
	cases := []struct {
		path string
		want string
	}{
		{"/version", `2`},
		{"/2/info", `{"candidate_pool_size":3,"master":"n1",` +
			`"master_capability_rapi_modifiable":false,"modify_ssh_setup":false,` +
			`"name":"c.example","uuid":"u"}`},
		{"/2/nodes", `[{"id":"n1","uri":"/2/nodes/n1"},{"id":"n2","uri":"/2/nodes/n2"},` +
			`{"id":"n4","uri":"/2/nodes/n4"},{"id":"n5","uri":"/2/nodes/n5"}]`},
		{"/2/nodes/n4", `{"drained":false,"master_candidate":false,` +
			`"master_capable":true,"name":"n4","offline":false,"pip":"",` +
			`"role":"R","sip":"","uuid":"","vm_capable":false}`},
		{"/2/nodes/n1/role", `"master"`},
		{"/2/nodes/n2/role", `"master-candidate"`},
		{"/2/nodes/n5/role", `"offline"`},
	}
	for _, tc := range cases {
		code, got := r.do(t, reader("GET", tc.path))
		var want any
		json.Unmarshal([]byte(tc.want), &want)
		if code != 200 || !reflect.DeepEqual(got, want) {
			t.Errorf("GET %s: got %d %v, want 200 %v", tc.path, code, got, want)
		}
	}
	_, bulk := r.do(t, reader("GET", "/2/nodes?bulk=1"))
	if roles := fmt.Sprint(pluck(bulk, "role")); roles != "[M C R O]" {
		t.Errorf("bulk roles: got %s, want [M C R O]", roles)
	}
}

// pluck returns field key of every object of a JSON array.
func pluck(v any, key string) []any {
	var out []any
	list, _ := v.([]any)
	for _, e := range list {
		m, _ := e.(map[string]any)
		out = append(out, m[key])
	}
	return out
}

func TestServer_BadInputChangesNothing(t *testing.T) {
	r := newRig(t)
	big := `"` + strings.Repeat("x", 2000) + `"`
	cases := []struct {
		name string
		rq   req
		want int
	}{
		{"unknown node get", admin("GET", "/2/nodes/n9", ""), 404},
		{"unknown node put", admin("PUT", "/2/nodes/n9/role", `"regular"`), 404},
		{"malformed json", admin("POST", "/2/nodes/n4/modify", `{"offline": tru`), 400},
		{"wrong type", admin("POST", "/2/nodes/n4/modify", `{"offline": "yes"}`), 400},
		{"unknown field", admin("POST", "/2/nodes/n4/modify", `{"powered": true}`), 400},
		{"wrong case field", admin("POST", "/2/nodes/n4/modify", `{"Offline": true}`), 400},
		{"trailing data", admin("PUT", "/2/nodes/n4/role", `"regular" "x"`), 400},
		{"role not string", admin("PUT", "/2/nodes/n4/role", `{"role": "regular"}`), 400},
		{"unknown role", admin("PUT", "/2/nodes/n4/role", `"boss"`), 400},
		{"oversized", admin("PUT", "/2/nodes/n4/role", big), 413},
		{"form post", req{method: "PUT", path: "/2/nodes/n4/role", body: `"regular"`,
			user: "admin", pw: "adminpw", contentType: "application/x-www-form-urlencoded"}, 415},
		{"wrong method", admin("DELETE", "/2/nodes/n4", ""), 405},
		{"wrong method role", admin("POST", "/2/nodes/n4/role", `"regular"`), 405},
		{"dry-run", admin("PUT", "/2/nodes/n4/role?dry-run=1", `"regular"`), 400},
		{"bad bulk", admin("GET", "/2/nodes?bulk=yes", ""), 400},
		{"twice bulk", admin("GET", "/2/nodes?bulk=1&bulk=1", ""), 400},
		{"unknown path", admin("GET", "/2/instances", ""), 404},
		{"unclean path", admin("GET", "/2/nodes/../info", ""), 404},
		{"bad job id", admin("GET", "/2/jobs/abc", ""), 400},
		{"unknown job", admin("GET", "/2/jobs/12", ""), 404},
		{"set master", admin("PUT", "/2/nodes/n4/role", `"master"`), 400},
		{"demote master", admin("PUT", "/2/nodes/n1/role", `"regular"`), 409},
		{"drain unsupported", admin("PUT", "/2/nodes/n4/role", `"drained"`), 501},
		{"reader writes", req{method: "PUT", path: "/2/nodes/n4/role",
			body: `"regular"`, user: "reader", pw: "readerpw"}, 403},
	}
	for _, tc := range cases {
		code, body := r.do(t, tc.rq)
		m, _ := body.(map[string]any)
		if code != tc.want || m["code"] != float64(tc.want) || m["explain"] == "" {
			t.Errorf("%s: got %d %v, want %d with a JSON error body",
				tc.name, code, body, tc.want)
		}
	}
	if ran := r.be.ranOps(); len(ran) != 0 {
		t.Fatalf("bad requests ran operations: %+v", ran)
	}
}

// waitJob polls job id until it is no longer queued or running.
func (r *rig) waitJob(t testing.TB, id any) map[string]any {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, body := r.do(t, reader("GET", fmt.Sprintf("/2/jobs/%v", id)))
		m, _ := body.(map[string]any)
		if code != 200 {
			t.Fatalf("GET job %v: got %d %v", id, code, body)
		}
		if s := m["status"]; s != "queued" && s != "running" {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %v still %v after 10s", id, m["status"])
		}
		time.Sleep(5 * time.Millisecond) // poll interval
	}
}

// submit sends rq, which must answer 200 with a job ID.
func (r *rig) submit(t testing.TB, rq req) any {
	t.Helper()
	code, id := r.do(t, rq)
	if _, ok := id.(float64); code != 200 || !ok {
		t.Fatalf("%s %s: got %d %v, want 200 and a job ID", rq.method, rq.path, code, id)
	}
	return fmt.Sprintf("%.0f", id)
}

func TestServer_JobRunsOperationsInOrder(t *testing.T) {
	r := newRig(t)
	id := r.submit(t, admin("PUT", "/2/nodes/n5/role", `"master-candidate"`))
	job := r.waitJob(t, id)
	if job["status"] != "success" || fmt.Sprint(job["opstatus"]) != "[success success]" {
		t.Fatalf("job: got %v, want success for both operations", job)
	}
	if got := fmt.Sprint(job["summary"]); got != "[online(n5) promote(n5)]" {
		t.Fatalf("summary: got %s", got)
	}
	if got := opsString(r.be.ranOps()); got != "online promote" {
		t.Fatalf("ran: got %q, want %q", got, "online promote")
	}
	for _, k := range []string{"received_ts", "start_ts", "end_ts"} {
		if job[k] == nil {
			t.Errorf("job %s is null after the job ended", k)
		}
	}
}

func TestServer_JobStopsAtFirstError(t *testing.T) {
	r := newRig(t)
	r.be.runErr = map[OpKind]error{OpOnline: errors.New("node n5 is unreachable")}
	id := r.submit(t, admin("POST", "/2/nodes/n5/modify",
		`{"offline": false, "master_candidate": true}`))
	job := r.waitJob(t, id)
	if job["status"] != "error" || fmt.Sprint(job["opstatus"]) != "[error canceled]" {
		t.Fatalf("job: got %v, want error then canceled", job)
	}
	res := job["opresult"].([]any)
	if e, _ := res[0].(map[string]any); e["error"] != "node n5 is unreachable" {
		t.Fatalf("opresult: got %v, want the daemon's error", res)
	}
	if got := opsString(r.be.ranOps()); got != "online" {
		t.Fatalf("ran: got %q, want only online", got)
	}
}

func TestServer_GuardRefusesMasterCapable(t *testing.T) {
	r := newRig(t)
	for _, body := range []string{`{"master_capable": true}`,
		`{"master_capable": false}`, `{"master_candidate": true, "master_capable": true}`} {
		code, resp := r.do(t, admin("POST", "/2/nodes/n4/modify", body))
		if code != http.StatusForbidden {
			t.Errorf("%s with the flag off: got %d %v, want 403", body, code, resp)
		}
	}
	for _, rq := range []req{
		admin("POST", "/2/nodes/n4/modify", `{"master_capability_rapi_modifiable": true}`),
		admin("PUT", "/2/modify", `{"master_capability_rapi_modifiable": true}`),
	} {
		r.be.setFlag(true) // even when set, the flag itself is out of reach
		if code, resp := r.do(t, rq); code != http.StatusForbidden {
			t.Errorf("%s %s: got %d %v, want 403", rq.method, rq.path, code, resp)
		}
		r.be.setFlag(false)
	}
	if ran := r.be.ranOps(); len(ran) != 0 {
		t.Fatalf("refused requests ran operations: %+v", ran)
	}
	logs := r.log.String()
	if !strings.Contains(logs, "user=admin") || !strings.Contains(logs, "/2/nodes/n4/modify") ||
		strings.Contains(logs, "adminpw") {
		t.Fatalf("refusal log must name user and request, never the password:\n%s", logs)
	}
}

func TestServer_GuardAllowsWhenFlagSet(t *testing.T) {
	r := newRig(t)
	r.be.setFlag(true)
	id := r.submit(t, admin("POST", "/2/nodes/n4/modify", `{"master_capable": false}`))
	if job := r.waitJob(t, id); job["status"] != "success" {
		t.Fatalf("job: got %v, want success", job)
	}
	if got := opsString(r.be.ranOps()); got != "modify=false" {
		t.Fatalf("ran: got %q, want modify=false", got)
	}
}

func TestServer_GuardCheckedAgainWhenJobRuns(t *testing.T) {
	r := newRig(t)
	r.be.setFlag(true)
	gate := make(chan struct{})
	r.be.gate = gate
	first := r.submit(t, admin("PUT", "/2/nodes/n4/role", `"master-candidate"`))
	second := r.submit(t, admin("POST", "/2/nodes/n4/modify", `{"master_capable": false}`))
	r.be.setFlag(false)
	close(gate)
	r.waitJob(t, first)
	job := r.waitJob(t, second)
	if job["status"] != "error" {
		t.Fatalf("job after the flag was cleared: got %v, want error", job)
	}
	if got := opsString(r.be.ranOps()); got != "promote" {
		t.Fatalf("ran: got %q, want only promote", got)
	}
}

func TestServer_NonMasterPointsToMaster(t *testing.T) {
	r := newRig(t)
	r.be.master = Master{Name: "n2", IP: "127.0.0.2"}
	code, body := r.do(t, admin("PUT", "/2/nodes/n4/role", `"regular"`))
	m, _ := body.(map[string]any)
	if code != http.StatusMisdirectedRequest || m["master"] != "n2" || m["master_ip"] != "127.0.0.2" {
		t.Fatalf("got %d %v, want 421 naming n2", code, body)
	}
	if code, _ := r.do(t, req{method: "GET", path: "/2/info"}); code != 401 {
		t.Fatalf("unauthenticated on a non-master: got %d, want 401", code)
	}
	r.be.master = Master{}
	if code, _ := r.do(t, admin("GET", "/2/info", "")); code != http.StatusServiceUnavailable {
		t.Fatalf("no master known: got %d, want 503", code)
	}
	if code, _ := r.do(t, admin("GET", "/2/jobs/1", "")); code != http.StatusServiceUnavailable {
		t.Fatalf("no master known: got %d, want 503", code)
	}
	if ran := r.be.ranOps(); len(ran) != 0 {
		t.Fatalf("non-master ran operations: %+v", ran)
	}
}

func TestServer_FormerMasterServesItsJobs(t *testing.T) {
	r := newRig(t)
	id := r.submit(t, admin("PUT", "/2/nodes/n4/role", `"master-candidate"`))
	r.waitJob(t, id)
	r.be.mu.Lock()
	r.be.master = Master{Name: "n2", IP: "127.0.0.2"}
	r.be.mu.Unlock()
	if code, body := r.do(t, reader("GET", fmt.Sprintf("/2/jobs/%v", id))); code != 200 {
		t.Fatalf("own job after losing mastership: got %d %v, want 200", code, body)
	}
	code, _ := r.do(t, reader("GET", fmt.Sprintf("/2/jobs/%v1", id)))
	if code != http.StatusMisdirectedRequest {
		t.Fatalf("unknown job on a non-master: got %d, want 421", code)
	}
}

func TestConfig_Validate(t *testing.T) {
	cases := map[string]Config{
		"no backend": {Users: staticUsers("")},
		"no users":   {Backend: newFake()},
		"negative":   {Backend: newFake(), Users: staticUsers(""), MaxBody: -1},
	}
	for name, cfg := range cases {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: got nil error", name)
		}
	}
}
