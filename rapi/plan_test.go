package rapi

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// opsString renders ops as "kind[+auto][=bool]" joined by spaces.
func opsString(ops []Op) string {
	var parts []string
	for _, op := range ops {
		p := string(op.Kind)
		if op.AutoPromote {
			p += "+auto"
		}
		if op.MasterCapable != nil {
			p += fmt.Sprintf("=%t", *op.MasterCapable)
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, " ")
}

// codeOf returns the HTTP status of a planning error, 0 for nil.
func codeOf(err error) int {
	var he *httpError
	if errors.As(err, &he) {
		return he.code
	}
	if err != nil {
		return -1
	}
	return 0
}

var (
	regular   = Node{Name: "n4", Role: "regular", MasterCapable: true}
	candidate = Node{Name: "n2", Role: "candidate", MasterCandidate: true, MasterCapable: true}
	master    = Node{Name: "n1", Role: "master", MasterCandidate: true, MasterCapable: true}
	offline   = Node{Name: "n5", Role: "offline", Offline: true, MasterCapable: true}
	drained   = Node{Name: "n6", Role: "drained", Drained: true, MasterCapable: true}
)

func TestPlanRole(t *testing.T) {
	cases := []struct {
		node Node
		role string
		want string
		code int
	}{
		{regular, "master-candidate", "promote", 0},
		{candidate, "regular", "demote", 0},
		{regular, "regular", "demote", 0},
		{offline, "master-candidate", "online promote", 0},
		{offline, "regular", "online demote", 0},
		{drained, "master-candidate", "undrain promote", 0},
		{regular, "drained", "drain", 0},
		{offline, "drained", "online drain", 0},
		{candidate, "offline", "offline", 0},
		{regular, "master", "", http.StatusBadRequest},
		{master, "regular", "", http.StatusConflict},
		{master, "offline", "", http.StatusConflict},
		{regular, "Regular", "", http.StatusBadRequest},
		{regular, "", "", http.StatusBadRequest},
	}
	for _, tc := range cases {
		t.Run(tc.node.Name+"->"+tc.role, func(t *testing.T) {
			ops, err := planRole(tc.node, tc.role)
			if got := codeOf(err); got != tc.code {
				t.Fatalf("status: got %d (%v), want %d", got, err, tc.code)
			}
			if got := opsString(ops); got != tc.want {
				t.Fatalf("ops: got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestPlanModify(t *testing.T) {
	type f = map[string]bool
	cases := []struct {
		name  string
		node  Node
		flags f
		want  string
		code  int
	}{
		{"promote", regular, f{"master_candidate": true}, "promote", 0},
		{"demote auto", candidate, f{"master_candidate": false,
			"auto_promote": true}, "demote+auto", 0},
		{"online and promote", offline, f{"offline": false,
			"master_candidate": true}, "online promote", 0},
		{"capable then promote", regular, f{"master_capable": true,
			"master_candidate": true}, "modify=true promote", 0},
		{"demote then incapable", candidate, f{"master_capable": false,
			"master_candidate": false}, "demote modify=false", 0},
		{"offline auto", candidate, f{"offline": true, "auto_promote": true},
			"offline+auto", 0},
		{"undrain only when drained", regular, f{"drained": false}, "", 0},
		{"undrain", drained, f{"drained": false}, "undrain", 0},
		{"drain", regular, f{"drained": true}, "drain", 0},
		{"empty", regular, f{}, "", http.StatusBadRequest},
		{"only auto", regular, f{"auto_promote": true}, "", http.StatusBadRequest},
		{"offline and drained", regular, f{"offline": true, "drained": true},
			"", http.StatusBadRequest},
		{"candidate offline", regular, f{"master_candidate": true,
			"offline": true}, "", http.StatusBadRequest},
		{"candidate incapable", regular, f{"master_candidate": true,
			"master_capable": false}, "", http.StatusBadRequest},
		{"demote master", master, f{"master_candidate": false}, "",
			http.StatusConflict},
		{"offline master", master, f{"offline": true}, "", http.StatusConflict},
		{"master stays", master, f{"master_candidate": true}, "promote", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ops, err := planModify(tc.node, tc.flags)
			if got := codeOf(err); got != tc.code {
				t.Fatalf("status: got %d (%v), want %d", got, err, tc.code)
			}
			if got := opsString(ops); got != tc.want {
				t.Fatalf("ops: got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestDecodeFlags(t *testing.T) {
	allowed := []string{"a", "b"}
	cases := []struct {
		body string
		want map[string]bool
		ok   bool
	}{
		{`{"a": true}`, map[string]bool{"a": true}, true},
		{` {"a": false, "b": true} `, map[string]bool{"a": false, "b": true}, true},
		{`{}`, map[string]bool{}, true},
		{`{"A": true}`, nil, false},
		{`{"c": true}`, nil, false},
		{`{"a": true, "a": false}`, nil, false},
		{`{"a": "true"}`, nil, false},
		{`{"a": 1}`, nil, false},
		{`{"a": null}`, nil, false},
		{`{"a": {"x": 1}}`, nil, false},
		{`{"a": true} {}`, nil, false},
		{`{"a": true`, nil, false},
		{`[]`, nil, false},
		{`null`, nil, false},
		{``, nil, false},
	}
	for _, tc := range cases {
		got, err := decodeFlags([]byte(tc.body), allowed)
		if (err == nil) != tc.ok {
			t.Errorf("%q: got err %v, want ok=%v", tc.body, err, tc.ok)
			continue
		}
		if codeOf(err) != 0 && codeOf(err) != http.StatusBadRequest {
			t.Errorf("%q: status %d, want 400", tc.body, codeOf(err))
		}
		if tc.ok && fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%q: got %v, want %v", tc.body, got, tc.want)
		}
	}
}

func TestDecodeString(t *testing.T) {
	cases := map[string]bool{
		`"regular"`: true, ` "x" `: true, `regular`: false, `1`: false,
		`["regular"]`: false, `"a" "b"`: false, `null`: false, ``: false,
	}
	for body, ok := range cases {
		if _, err := decodeString([]byte(body)); (err == nil) != ok {
			t.Errorf("%q: got err %v, want ok=%v", body, err, ok)
		}
	}
}
