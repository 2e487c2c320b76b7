package sshdist

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

// serveLines runs ServeUpdates on input and returns its error and the
// responses it wrote, one per line.
func serveLines(t *testing.T, n *testNode, input string,
	idle time.Duration) ([]Response, error) {
	t.Helper()
	var out strings.Builder
	err := ServeUpdates(n.env, strings.NewReader(input), &out, idle)
	var resps []Response
	sc := bufio.NewScanner(strings.NewReader(out.String()))
	for sc.Scan() {
		var r Response
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("response line %q: %v", sc.Text(), err)
		}
		resps = append(resps, r)
	}
	return resps, err
}

func requestLine(t *testing.T, req *Request) string {
	t.Helper()
	b, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	return string(b) + "\n"
}

func TestServeUpdates_AnswersEachLineInOrder(t *testing.T) {
	n := newTestNode(t)
	n.write(t, StateDir+"/node.json", nodeJSON(testCluster), 0o644)
	first := requestLine(t, &Request{Cluster: testCluster,
		Files: []File{{Name: "ca.pem", Data: "CA1"}}})
	second := requestLine(t, &Request{Cluster: testCluster,
		Files: []File{{Name: "ca.pem", Data: "CA2"}}})
	resps, err := serveLines(t, n, first+second+second, 0)
	if err != nil {
		t.Fatalf("ServeUpdates: %v", err)
	}
	want := [][]string{{StateDir + "/ca.pem"}, {StateDir + "/ca.pem"}, nil}
	if len(resps) != len(want) {
		t.Fatalf("got %d responses, want %d", len(resps), len(want))
	}
	for i, r := range resps {
		if r.Error != "" || strings.Join(r.Changed, ",") != strings.Join(want[i], ",") {
			t.Errorf("response %d: got changed %q error %q, want changed %q",
				i, r.Changed, r.Error, want[i])
		}
	}
	if got := n.read(t, StateDir+"/ca.pem"); got != "CA2" {
		t.Errorf("ca.pem: got %q, want CA2", got)
	}
}

func TestServeUpdates_BadLineAnsweredThenNextServed(t *testing.T) {
	n := newTestNode(t)
	n.write(t, StateDir+"/node.json", nodeJSON(testCluster), 0o644)
	good := requestLine(t, &Request{Cluster: testCluster,
		Files: []File{{Name: "ca.pem", Data: "CA"}}})
	bad := []string{
		`{"cluster":"` + testCluster + `","files":[{"name":"ca.pem","data":"X"}],"bogus":1}` + "\n",
		`{"cluster":"` + testCluster + `","files":[{"name":"ca.pem"` + "\n",
		"\n",
	}
	resps, err := serveLines(t, n, strings.Join(bad, "")+good, 0)
	if err != nil {
		t.Fatalf("ServeUpdates: %v", err)
	}
	if len(resps) != len(bad)+1 {
		t.Fatalf("got %d responses, want %d", len(resps), len(bad)+1)
	}
	for i := range bad {
		if !strings.Contains(resps[i].Error, ErrInvalidRequest.Error()) ||
			len(resps[i].Changed) != 0 {
			t.Errorf("bad line %d: got %+v, want an invalid-request error "+
				"and no change", i, resps[i])
		}
	}
	if last := resps[len(bad)]; last.Error != "" {
		t.Errorf("good line after bad ones: error %q", last.Error)
	}
	if got := n.read(t, StateDir+"/ca.pem"); got != "CA" {
		t.Errorf("ca.pem: got %q, want CA (only the good line applied)", got)
	}
}

func TestServeUpdates_LastLineWithoutNewline(t *testing.T) {
	n := newTestNode(t)
	n.write(t, StateDir+"/node.json", nodeJSON(testCluster), 0o644)
	line := strings.TrimSuffix(requestLine(t, &Request{Cluster: testCluster,
		Files: []File{{Name: "ca.pem", Data: "CA"}}}), "\n")
	resps, err := serveLines(t, n, line, 0)
	if err != nil || len(resps) != 1 || resps[0].Error != "" {
		t.Fatalf("got %+v, %v; want one successful response", resps, err)
	}
}

func TestServeUpdates_OverlongLineEndsTheStream(t *testing.T) {
	n := newTestNode(t)
	n.write(t, StateDir+"/node.json", nodeJSON(testCluster), 0o644)
	good := requestLine(t, &Request{Cluster: testCluster,
		Files: []File{{Name: "ca.pem", Data: "CA"}}})
	huge := strings.Repeat("x", MaxRequestSize+1) + "\n"
	resps, err := serveLines(t, n, huge+good, 0)
	if !errors.Is(err, ErrRequestTooLarge) {
		t.Errorf("got %v, want ErrRequestTooLarge", err)
	}
	if len(resps) != 1 || !strings.Contains(resps[0].Error, "longer than") {
		t.Errorf("got %+v, want one too-large error and nothing served after it", resps)
	}
	if n.exists(StateDir + "/ca.pem") {
		t.Error("ca.pem written after the stream was broken")
	}
}

func TestServeUpdates_ExitsWhenIdle(t *testing.T) {
	n := newTestNode(t)
	r, w := io.Pipe()
	defer w.Close()
	done := make(chan error, 1)
	go func() { done <- ServeUpdates(n.env, r, io.Discard, 20*time.Millisecond) }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("idle exit: got %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ServeUpdates did not exit on an idle stream")
	}
}
