package integration

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

const (
	rapiPort    = 5080
	rapiAdmin   = "admin"
	rapiAdminPW = "adm1n-Secret"
)

// rapiClient is a real HTTPS client of RAPI that trusts exactly the
// certificate `cluster rapi-cert` printed.
type rapiClient struct {
	pool      *x509.CertPool
	user, pw  string
	localAddr string // source IP; "" lets the kernel choose
}

// as returns a copy of rc with other credentials.
func (rc rapiClient) as(user, pw string) rapiClient {
	rc.user, rc.pw = user, pw
	return rc
}

// from returns a copy of rc that connects from ip, so that the
// per-address login limit of one subtest does not touch the others.
func (rc rapiClient) from(ip string) rapiClient {
	rc.localAddr = ip
	return rc
}

func (rc rapiClient) http() *http.Client {
	d := &net.Dialer{Timeout: 10 * time.Second}
	if rc.localAddr != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(rc.localAddr)}
	}
	return &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{
		DialContext:       d.DialContext,
		DisableKeepAlives: true,
		TLSClientConfig: &tls.Config{RootCAs: rc.pool,
			ServerName: clusterName, MinVersion: tls.VersionTLS13},
	}}
}

// rapiResponse is a status and the raw JSON body.
type rapiResponse struct {
	code   int
	body   []byte
	header http.Header
}

// do sends one request to h's RAPI port.
func (rc rapiClient) do(h *Host, method, path, body string) (rapiResponse, error) {
	url := "https://" + net.JoinHostPort(h.IP, strconv.Itoa(rapiPort)) + path
	req, err := http.NewRequestWithContext(context.Background(), method, url,
		strings.NewReader(body))
	if err != nil {
		return rapiResponse{}, err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if rc.user != "" {
		req.SetBasicAuth(rc.user, rc.pw)
	}
	resp, err := rc.http().Do(req)
	if err != nil {
		return rapiResponse{}, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return rapiResponse{code: resp.StatusCode, body: data, header: resp.Header}, err
}

// must sends a request that must answer want, and decodes the body.
func (rc rapiClient) must(t testing.TB, h *Host, method, path, body string,
	want int, out any) {
	t.Helper()
	r, err := rc.do(h, method, path, body)
	if err != nil {
		t.Fatalf("%s %s on %s: %v", method, path, h.Name, err)
	}
	if r.code != want {
		t.Fatalf("%s %s on %s: got %d %s, want %d\n%s", method, path, h.Name,
			r.code, r.body, want, h.LogTail(logTailLines))
	}
	if out != nil {
		dec := json.NewDecoder(bytes.NewReader(r.body))
		dec.UseNumber()
		if err := dec.Decode(out); err != nil {
			t.Fatalf("%s %s: body %q: %v", method, path, r.body, err)
		}
	}
}

// rapiWorld is one cluster shared by the RAPI subtests: node1-3 are
// candidates, node4 is a regular node.
type rapiWorld struct {
	base   *Cluster // bound to the parent test
	rc     rapiClient
	subnet string // "127.A.B."
	pwFile string
}

// rapiSub is the world as one subtest sees it: harness failures end
// that subtest and show the cluster's logs.
type rapiSub struct {
	*rapiWorld
	t *testing.T
	c *Cluster
}

// run runs f as subtest name.
func (w *rapiWorld) run(t *testing.T, name string, f func(s *rapiSub)) {
	t.Run(name, func(t *testing.T) {
		c := *w.base
		c.t = t
		register(t, &c)
		f(&rapiSub{rapiWorld: w, t: t, c: &c})
	})
}

func newRAPIWorld(t *testing.T) *rapiSub {
	c := newCluster(t, 4, 3, Options{})
	c.Join(c.Hosts[0], c.Hosts[3])
	c.waitConverged(c.Hosts...)
	ip := c.Hosts[0].IP
	w := &rapiWorld{base: c, subnet: ip[:strings.LastIndex(ip, ".")+1]}
	s := &rapiSub{rapiWorld: w, t: t, c: c}
	w.pwFile = filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(w.pwFile, []byte(rapiAdminPW+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pem := s.admin("cluster", "rapi-cert")
	pool := x509.NewCertPool()
	if strings.Contains(pem, "PRIVATE") || !pool.AppendCertsFromPEM([]byte(pem)) {
		t.Fatalf("rapi-cert printed no certificate or a key:\n%s", pem)
	}
	w.rc = rapiClient{pool: pool, user: rapiAdmin, pw: rapiAdminPW}
	return s
}

// master returns the current master: Raft may move leadership at any
// time on a loaded machine.
func (s *rapiSub) master() *Host { return s.c.Leader() }

// admin runs a RAPI administration command on the current master,
// again on the new one if leadership moves meanwhile.
func (s *rapiSub) admin(args ...string) string {
	s.t.Helper()
	var out string
	WaitFor(s.t, "ganeti-node "+strings.Join(args, " ")+" on the master",
		convergeWithin, func() (bool, string) {
			stdout, stderr, err := s.c.Run(s.master(), args...)
			out = stdout
			return err == nil, stderr
		})
	return out
}

// importUsers installs a Ganeti users file with every password form,
// then adds the admin with the CLI (stored as {HA1}).
func (s *rapiSub) importUsers() {
	s.t.Helper()
	file := "# imported from Ganeti\n" +
		"plain plainpw\n" +
		"clear {cleartext}clearpw write\n" +
		"hashed {HA1}" + hexOf("hashed:Ganeti Remote API:hashedpw") + " write\n" +
		"reader readerpw read\n"
	path := filepath.Join(s.t.TempDir(), "users")
	if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
		s.t.Fatal(err)
	}
	s.admin("cluster", "rapi-users", "import", path)
	s.admin("cluster", "rapi-users", "add", "--write",
		"--password-file", s.pwFile, rapiAdmin)
}

func hexOf(s string) string {
	sum := md5.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}

// waitServing polls until h answers an authenticated GET /version
// with want (200 on the master, 421 on other candidates).
func (s *rapiSub) waitServing(h *Host, want int) {
	s.t.Helper()
	WaitFor(s.t, fmt.Sprintf("RAPI on %s to answer %d", h.Name, want),
		convergeWithin, func() (bool, string) {
			r, err := s.rc.do(h, "GET", "/version", "")
			if err != nil {
				return false, err.Error()
			}
			return r.code == want, fmt.Sprintf("%d %s", r.code, r.body)
		})
}

// waitNotListening polls until nothing accepts on h's RAPI port.
func (s *rapiSub) waitNotListening(h *Host) {
	s.t.Helper()
	addr := net.JoinHostPort(h.IP, strconv.Itoa(rapiPort))
	WaitFor(s.t, "RAPI port of "+h.Name+" to be closed", convergeWithin,
		func() (bool, string) {
			conn, err := net.DialTimeout("tcp", addr, time.Second)
			if err != nil {
				return true, ""
			}
			conn.Close()
			return false, "still accepting"
		})
}

// checkFiles checks that candidates hold the master's rapi.pem and
// rapi_users with mode 0600 and that no other node holds either.
func (s *rapiSub) checkFiles(master *Host) {
	s.t.Helper()
	for _, n := range s.c.List(master) {
		h := s.c.Host(n.Name)
		mc := n.Role == "master" || n.Role == "candidate"
		for _, name := range []string{"rapi.pem", "rapi_users"} {
			st, err := os.Stat(h.LibPath(name))
			switch {
			case !mc && !os.IsNotExist(err):
				s.t.Errorf("%s (%s) holds %s (err %v)", n.Name, n.Role, name, err)
			case mc && err != nil:
				s.t.Errorf("candidate %s lacks %s: %v", n.Name, name, err)
			case mc && st.Mode().Perm() != 0o600:
				s.t.Errorf("%s of %s: mode %04o, want 0600", name, n.Name,
					st.Mode().Perm())
			case mc && readLib(s.t, h, name) != readLib(s.t, master, name):
				s.t.Errorf("%s of %s differs from the master's", name, n.Name)
			}
		}
	}
}

// snapshot is what a role change moves: every host's authorized_keys
// and the candidates and candidate map as ssconf shows them.
func (s *rapiSub) snapshot() map[string]string {
	s.t.Helper()
	out := map[string]string{}
	for _, h := range s.c.Hosts {
		data, err := os.ReadFile(h.path("root/.ssh/authorized_keys"))
		if err != nil {
			s.t.Fatalf("reading authorized_keys of %s: %v", h.Name, err)
		}
		out["authorized_keys@"+h.Name] = string(data)
		out["certs@"+h.Name] = readLib(s.t, h, "ssconf_master_candidates_certs")
		out["mcs@"+h.Name] = readLib(s.t, h, "ssconf_master_candidates")
	}
	return out
}

func diffSnapshots(a, b map[string]string) string {
	var d []string
	for k, v := range a {
		if b[k] != v {
			d = append(d, fmt.Sprintf("%s: %q vs %q", k, v, b[k]))
		}
	}
	return strings.Join(d, "\n")
}

// rolesNow waits for convergence and returns the roles string.
func (s *rapiSub) rolesNow() string { return roles(s.c.waitConverged(s.c.Hosts...)) }

// candidates returns the candidates other than master.
func (s *rapiSub) candidates(master *Host) []*Host {
	var out []*Host
	for _, n := range s.c.List(master) {
		if h := s.c.Host(n.Name); h != master &&
			(n.Role == "candidate" || n.Role == "master") {
			out = append(out, h)
		}
	}
	return out
}

// runJob sends a change to the current master, again to a new one if
// leadership moves before it is accepted (a 421 or 503 queues
// nothing), and polls the job where it was accepted until it ends.
func (s *rapiSub) runJob(method, path, body string) map[string]any {
	s.t.Helper()
	var at *Host
	var id json.Number
	WaitFor(s.t, method+" "+path+" to be accepted", convergeWithin,
		func() (bool, string) {
			at = s.master()
			r, err := s.rc.do(at, method, path, body)
			switch {
			case err != nil:
				return false, err.Error()
			case r.code == http.StatusMisdirectedRequest ||
				r.code == http.StatusServiceUnavailable:
				return false, fmt.Sprintf("%d %s", r.code, r.body)
			case r.code != http.StatusOK:
				s.t.Fatalf("%s %s: got %d %s, want a job ID", method, path,
					r.code, r.body)
			}
			if err := json.Unmarshal(r.body, &id); err != nil {
				s.t.Fatalf("%s %s: job ID %q: %v", method, path, r.body, err)
			}
			return true, ""
		})
	return s.waitJob(at, id)
}

// waitJob polls job id on h, which accepted it, until it ends.
func (s *rapiSub) waitJob(h *Host, id json.Number) map[string]any {
	s.t.Helper()
	var job map[string]any
	WaitFor(s.t, "RAPI job "+id.String()+" to end", convergeWithin,
		func() (bool, string) {
			r, err := s.rc.do(h, "GET", "/2/jobs/"+id.String(), "")
			if err != nil || r.code == http.StatusServiceUnavailable {
				return false, fmt.Sprintf("%v %d %s", err, r.code, r.body)
			}
			if r.code != http.StatusOK {
				s.t.Fatalf("job %s on %s: got %d %s", id, h.Name, r.code, r.body)
			}
			job = nil
			if err := json.Unmarshal(r.body, &job); err != nil {
				s.t.Fatalf("job %s: %v", id, err)
			}
			st := job["status"]
			return st != "queued" && st != "running", fmt.Sprint(job)
		})
	return job
}

// ensureRegular demotes node with the CLI unless it is regular, so a
// failed subtest does not spoil the next one.
func (s *rapiSub) ensureRegular(node string) {
	s.t.Helper()
	for _, n := range s.c.List(s.master()) {
		if n.Name == node && n.Role != "regular" {
			s.admin("demote", node)
		}
	}
}

func TestRAPI(t *testing.T) {
	s := newRAPIWorld(t)
	s.importUsers()
	s.waitServing(s.master(), http.StatusOK)

	w := s.rapiWorld
	w.run(t, "FilesOnlyOnCandidates", (*rapiSub).testFiles)
	w.run(t, "ReadEndpointsMatchList", (*rapiSub).testReads)
	w.run(t, "Authentication", (*rapiSub).testAuth)
	w.run(t, "BadInputChangesNothing", (*rapiSub).testBadInput)
	w.run(t, "CandidatePointsToMaster", (*rapiSub).testNonMaster)
	w.run(t, "PromoteDemoteLikeCLI", (*rapiSub).testPromoteDemote)
	w.run(t, "GuardRefusesByDefault", (*rapiSub).testGuardRefuses)
	w.run(t, "GuardAllowsWhenFlagSet", (*rapiSub).testGuardAllows)
	w.run(t, "RateLimitsFailedLogins", (*rapiSub).testRateLimit)
	w.run(t, "NewMasterServesAfterFailover", (*rapiSub).testFailover)
}

func (s *rapiSub) testFiles() {
	s.checkFiles(s.master())
	var users []map[string]any
	out := s.admin("cluster", "rapi-users", "list", "--output", "json")
	if err := json.Unmarshal([]byte(out), &users); err != nil || len(users) != 5 {
		s.t.Fatalf("rapi-users list: got %q (%v), want 5 users", out, err)
	}
	if strings.Contains(out, "pw") || strings.Contains(out, "HA1") {
		s.t.Fatalf("rapi-users list shows passwords: %s", out)
	}
}

func (s *rapiSub) testReads() {
	t, m := s.t, s.master()
	list := sorted(s.c.List(m))
	var bulk []map[string]any
	s.rc.must(t, m, "GET", "/2/nodes?bulk=1", "", 200, &bulk)
	letters := map[string]string{"master": "M", "candidate": "C",
		"regular": "R", "drained": "D", "offline": "O"}
	if len(bulk) != len(list) {
		t.Fatalf("bulk nodes: got %d, want %d", len(bulk), len(list))
	}
	for i, n := range list {
		want := map[string]any{"name": n.Name, "uuid": n.UUID,
			"pip": n.PrimaryIP, "role": letters[n.Role],
			"master_capable": n.MasterCapable}
		for k, v := range want {
			if bulk[i][k] != v {
				t.Errorf("node %s %s: got %v, want %v (list)", n.Name, k, bulk[i][k], v)
			}
		}
	}
	var refs []map[string]string
	s.rc.must(t, m, "GET", "/2/nodes", "", 200, &refs)
	for i, n := range list {
		if refs[i]["id"] != n.Name || refs[i]["uri"] != "/2/nodes/"+n.Name {
			t.Errorf("node ref %d: got %v, want %s", i, refs[i], n.Name)
		}
	}
	s.checkNode4(m)
	var info map[string]any
	s.rc.must(t, m, "GET", "/2/info", "", 200, &info)
	if info["name"] != clusterName || info["master"] != MasterOf(list) {
		t.Errorf("info: got %v, want cluster %s, master %s", info,
			clusterName, MasterOf(list))
	}
	var version json.Number
	s.rc.must(t, m, "GET", "/version", "", 200, &version)
	if version != "2" {
		t.Errorf("version: got %s, want 2", version)
	}
}

func (s *rapiSub) checkNode4(m *Host) {
	var one map[string]any
	s.rc.must(s.t, m, "GET", "/2/nodes/node4", "", 200, &one)
	var role string
	s.rc.must(s.t, m, "GET", "/2/nodes/node4/role", "", 200, &role)
	if one["name"] != "node4" || one["role"] != "R" || role != "regular" {
		s.t.Errorf("node4: got %v and role %q, want a regular node", one, role)
	}
}

func (s *rapiSub) testAuth() {
	m := s.master()
	rc := s.rc.from(s.subnet + "201")
	cases := []struct {
		user, pw string
		want     int
	}{
		{"plain", "plainpw", 200},
		{"clear", "clearpw", 200},
		{"hashed", "hashedpw", 200},
		{"reader", "readerpw", 200},
		{"", "", 401},
		{"hashed", hexOf("hashed:Ganeti Remote API:hashedpw"), 401},
		{"reader", "wrong", 401},
	}
	for _, tc := range cases {
		r, err := rc.as(tc.user, tc.pw).do(m, "GET", "/2/info", "")
		if err != nil || r.code != tc.want {
			s.t.Errorf("user %q: got %d %v, want %d", tc.user, r.code, err, tc.want)
		}
		if tc.want == 401 && !strings.Contains(r.header.Get("WWW-Authenticate"), "Basic") {
			s.t.Errorf("user %q: 401 without a Basic challenge", tc.user)
		}
	}
	before := stable(s.c.List(m))
	for _, u := range [][2]string{{"reader", "readerpw"}, {"plain", "plainpw"}} {
		r, err := rc.as(u[0], u[1]).do(m, "PUT", "/2/nodes/node4/role",
			`"master-candidate"`)
		if err != nil || r.code != http.StatusForbidden {
			s.t.Errorf("read-only %s writes: got %d %v, want 403", u[0], r.code, err)
		}
	}
	if got := stable(s.c.List(m)); !reflect.DeepEqual(got, before) {
		s.t.Fatalf("read-only users changed the cluster: %+v", got)
	}
}

func (s *rapiSub) testBadInput() {
	m := s.master()
	before := stable(s.c.List(m))
	cases := []struct {
		name, method, path, body string
		want                     int
	}{
		{"unknown node", "GET", "/2/nodes/node9", "", 404},
		{"unknown node role", "PUT", "/2/nodes/node9/role", `"regular"`, 404},
		{"malformed json", "POST", "/2/nodes/node4/modify", `{"offline": tr`, 400},
		{"wrong type", "POST", "/2/nodes/node4/modify", `{"offline": 1}`, 400},
		{"unknown field", "POST", "/2/nodes/node4/modify", `{"secondary_ip": "x"}`, 400},
		{"role not a string", "PUT", "/2/nodes/node4/role", `["regular"]`, 400},
		{"unknown role", "PUT", "/2/nodes/node4/role", `"king"`, 400},
		{"oversized", "PUT", "/2/nodes/node4/role",
			`"` + strings.Repeat("a", 100<<10) + `"`, 413},
		{"wrong method", "DELETE", "/2/nodes/node4", "", 405},
		{"dry-run refused", "PUT", "/2/nodes/node4/role?dry-run=1", `"offline"`, 400},
		{"unknown job", "GET", "/2/jobs/1", "", 404},
		{"unknown resource", "GET", "/2/instances", "", 404},
	}
	for _, tc := range cases {
		r, err := s.rc.do(m, tc.method, tc.path, tc.body)
		var body map[string]any
		if err == nil {
			err = json.Unmarshal(r.body, &body)
		}
		if err != nil || r.code != tc.want || body["code"] != float64(tc.want) {
			s.t.Errorf("%s: got %d %s (%v), want %d with a JSON error",
				tc.name, r.code, r.body, err, tc.want)
		}
	}
	if got := stable(s.c.List(m)); !reflect.DeepEqual(got, before) {
		s.t.Fatalf("bad input changed the cluster:\ngot  %+v\nwant %+v", got, before)
	}
}

func (s *rapiSub) testNonMaster() {
	m := s.master()
	before := s.rolesNow()
	for _, h := range s.candidates(m) {
		s.waitServing(h, http.StatusMisdirectedRequest)
		var body map[string]any
		s.rc.must(s.t, h, "PUT", "/2/nodes/node4/role", `"offline"`,
			http.StatusMisdirectedRequest, &body)
		if body["master"] != m.Name || body["master_ip"] != m.IP {
			s.t.Errorf("421 from %s: got %v, want master %s", h.Name, body, m.Name)
		}
	}
	s.waitNotListening(s.c.Host("node4"))
	if got := s.rolesNow(); got != before {
		s.t.Fatalf("roles after requests to candidates: got %q, want %q", got, before)
	}
}

const (
	rolesRegular  = "node1=mc/voter node2=mc/voter node3=mc/voter node4=regular/nonvoter"
	rolesPromoted = "node1=mc/voter node2=mc/voter node3=mc/voter node4=mc/voter"
)

func (s *rapiSub) testPromoteDemote() {
	s.ensureRegular("node4")
	if got := s.rolesNow(); got != rolesRegular {
		s.t.Fatalf("roles before: got %q, want %q", got, rolesRegular)
	}
	s0 := s.snapshot()
	s1 := s.promoteByRAPI()

	// The CLI moves exactly the same keys and map entries.
	s.admin("demote", "node4")
	s.rolesNow()
	if d := diffSnapshots(s0, s.snapshot()); d != "" {
		s.t.Fatalf("CLI demote after RAPI promote differs from before:\n%s", d)
	}
	s.admin("promote", "node4")
	s.rolesNow()
	if d := diffSnapshots(s1, s.snapshot()); d != "" {
		s.t.Fatalf("CLI promote differs from RAPI promote:\n%s", d)
	}

	s.demoteByRAPI()
	if d := diffSnapshots(s0, s.snapshot()); d != "" {
		s.t.Fatalf("RAPI demote differs from the state before promotion:\n%s", d)
	}
}

// promoteByRAPI promotes node4 through RAPI, checks its new powers and
// files, and returns the snapshot of the result.
func (s *rapiSub) promoteByRAPI() map[string]string {
	n1, n4 := s.c.Hosts[0], s.c.Host("node4")
	job := s.runJob("PUT", "/2/nodes/node4/role", `"master-candidate"`)
	if job["status"] != "success" {
		s.t.Fatalf("promote job: got %v, want success", job)
	}
	if got := s.rolesNow(); got != rolesPromoted {
		s.t.Fatalf("roles after RAPI promote: got %q, want %q", got, rolesPromoted)
	}
	WaitFor(s.t, "node4 promoted by RAPI to reach node1 by ssh and rpc",
		convergeWithin, func() (bool, string) {
			if err := s.c.SSH(n4, n1, "true"); err != nil {
				return false, err.Error()
			}
			if err := s.c.RPC(n4, n1); err != nil {
				return false, err.Error()
			}
			return true, ""
		})
	s.checkFiles(s.master())
	return s.snapshot()
}

// demoteByRAPI demotes node4 through RAPI and checks that it lost its
// powers, its RAPI files and its RAPI port at once.
func (s *rapiSub) demoteByRAPI() {
	n1, n4 := s.c.Hosts[0], s.c.Host("node4")
	job := s.runJob("POST", "/2/nodes/node4/modify", `{"master_candidate": false}`)
	if job["status"] != "success" {
		s.t.Fatalf("demote job: got %v, want success", job)
	}
	if got := s.rolesNow(); got != rolesRegular {
		s.t.Fatalf("roles after RAPI demote: got %q, want %q", got, rolesRegular)
	}
	s.c.checkPowers(s.t, "after RAPI demote", map[[2]*Host]bool{{n4, n1}: false})
	s.checkFiles(s.master())
	s.waitNotListening(n4)
}

// refusalLogged reports whether h's daemon log has a RAPI refusal for
// path by user; it fails the test if the log holds the admin password.
func refusalLogged(t testing.TB, h *Host, user, path string) bool {
	t.Helper()
	data, err := os.ReadFile(h.path("daemon.log"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), rapiAdminPW) {
		t.Fatalf("%s's log contains the RAPI password", h.Name)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.Contains(line, "rapi request refused") &&
			strings.Contains(line, "user="+user) &&
			strings.Contains(line, "path="+path) {
			return true
		}
	}
	return false
}

func (s *rapiSub) testGuardRefuses() {
	m := s.master()
	before := stable(s.c.List(m))
	for _, body := range []string{`{"master_capable": false}`, `{"master_capable": true}`} {
		var e map[string]any
		s.rc.must(s.t, m, "POST", "/2/nodes/node4/modify", body,
			http.StatusForbidden, &e)
		if !strings.Contains(fmt.Sprint(e["explain"]), "master_capability_rapi_modifiable") {
			s.t.Errorf("guard refusal does not name the flag: %v", e)
		}
	}
	if !refusalLogged(s.t, m, rapiAdmin, "/2/nodes/node4/modify") {
		s.t.Errorf("guard refusal not logged with user and request:\n%s",
			m.LogTail(logTailLines))
	}
	// The flag itself is out of RAPI's reach.
	s.rc.must(s.t, m, "PUT", "/2/modify",
		`{"master_capability_rapi_modifiable": true}`, http.StatusForbidden, nil)
	s.rc.must(s.t, m, "POST", "/2/nodes/node4/modify",
		`{"master_capability_rapi_modifiable": true}`, http.StatusForbidden, nil)
	if got := stable(s.c.List(m)); !reflect.DeepEqual(got, before) {
		s.t.Fatalf("guard refusals changed the cluster: %+v", got)
	}
	var info map[string]any
	s.rc.must(s.t, m, "GET", "/2/info", "", 200, &info)
	if info["master_capability_rapi_modifiable"] != false {
		s.t.Fatalf("flag after refusals: got %v, want false", info)
	}
}

// masterCapable returns what `list` says of node's master_capable.
func (s *rapiSub) masterCapable(node string) bool {
	for _, n := range s.c.List(s.master()) {
		if n.Name == node {
			return n.MasterCapable
		}
	}
	s.t.Fatalf("node %s not listed", node)
	return false
}

func (s *rapiSub) testGuardAllows() {
	s.ensureRegular("node4")
	s.admin("cluster", "modify", "--master-capability-rapi-modifiable=yes")
	for _, v := range []bool{false, true} {
		body := fmt.Sprintf(`{"master_capable": %t}`, v)
		job := s.runJob("POST", "/2/nodes/node4/modify", body)
		if job["status"] != "success" {
			s.t.Fatalf("%s with the flag set: got %v, want success", body, job)
		}
		if got := s.masterCapable("node4"); got != v {
			s.t.Fatalf("node4 master_capable after %s: got %v", body, got)
		}
	}
	s.admin("cluster", "modify", "--master-capability-rapi-modifiable=no")
	s.rc.must(s.t, s.master(), "POST", "/2/nodes/node4/modify",
		`{"master_capable": false}`, http.StatusForbidden, nil)
}

func (s *rapiSub) testRateLimit() {
	m := s.master()
	attacker := s.rc.from(s.subnet + "250")
	for i := range 5 {
		r, err := attacker.as(rapiAdmin, fmt.Sprintf("guess%d", i)).do(
			m, "GET", "/2/info", "")
		if err != nil || r.code != http.StatusUnauthorized {
			s.t.Fatalf("guess %d: got %d %v, want 401", i, r.code, err)
		}
	}
	r, err := attacker.do(m, "GET", "/2/info", "")
	if err != nil || r.code != http.StatusTooManyRequests ||
		r.header.Get("Retry-After") == "" {
		s.t.Fatalf("right password after 5 failures: got %d %v, "+
			"want 429 with Retry-After", r.code, err)
	}
	s.rc.must(s.t, m, "GET", "/2/info", "", http.StatusOK, nil)
}

func (s *rapiSub) testFailover() {
	old := s.master()
	next := s.candidates(old)[0]
	s.c.MustRun(next, "cluster", "failover")
	s.c.waitMaster(next)

	s.waitServing(next, http.StatusOK)
	var info map[string]any
	s.rc.must(s.t, next, "GET", "/2/info", "", 200, &info)
	if info["master"] != next.Name {
		s.t.Fatalf("info on the new master: got %v, want master %s", info, next.Name)
	}
	s.waitServing(old, http.StatusMisdirectedRequest)
	var body map[string]any
	s.rc.must(s.t, old, "GET", "/2/info", "", http.StatusMisdirectedRequest, &body)
	if body["master"] != next.Name {
		s.t.Fatalf("old master points to %v, want %s", body["master"], next.Name)
	}
	job := s.runJob("PUT", "/2/nodes/node4/role", `"master-candidate"`)
	if job["status"] != "success" {
		s.t.Fatalf("promote through the new master: got %v", job)
	}
	if got := s.rolesNow(); got != rolesPromoted {
		s.t.Fatalf("roles: got %q, want %q", got, rolesPromoted)
	}
	s.checkFiles(next)
}
