package rapi

import (
	"net/http"
	"slices"
	"sort"
	"strings"
)

// endpoint is one method of one resource.
type endpoint struct {
	// write requires a user with write access.
	write bool
	// query lists the query parameters it accepts; any other is
	// refused, so that an unsupported option such as dry-run never
	// goes silently unheeded.
	query []string
	fn    func(w http.ResponseWriter, r *http.Request) (any, error)
}

// methods maps an HTTP method to its endpoint.
type methods map[string]endpoint

// routes registers every resource. Paths and JSON shapes follow
// Ganeti's version 2 API.
func (s *Server) routes() {
	s.handle("/version", methods{"GET": {fn: s.getVersion}})
	s.handle("/2/info", methods{"GET": {fn: s.getInfo}})
	s.handle("/2/modify", methods{"PUT": {fn: s.putClusterModify}})
	s.handle("/2/nodes", methods{
		"GET": {fn: s.getNodes, query: []string{"bulk"}}})
	s.handle("/2/nodes/{name}", methods{"GET": {fn: s.getNode}})
	s.handle("/2/nodes/{name}/role", methods{
		"GET": {fn: s.getRole},
		"PUT": {fn: s.putRole, write: true}})
	s.handle("/2/nodes/{name}/modify", methods{
		"POST": {fn: s.postModify, write: true}})
	s.handle("/2/jobs/{id}", methods{"GET": {fn: s.getJob}})
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.fail(w, r, userOf(r).Name, errorf(http.StatusNotFound,
			"no resource %q", r.URL.Path))
	})
}

func (s *Server) handle(pattern string, m methods) {
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		s.serveEndpoint(w, r, m)
	})
}

// serveEndpoint checks method, access and query, then runs the
// endpoint and writes its result as JSON.
func (s *Server) serveEndpoint(w http.ResponseWriter, r *http.Request, m methods) {
	u := userOf(r)
	e, ok := m[r.Method]
	if !ok {
		allow := allowed(m)
		w.Header().Set("Allow", allow)
		s.fail(w, r, u.Name, errorf(http.StatusMethodNotAllowed,
			"method %s not allowed on %s; allowed: %s", r.Method, r.URL.Path, allow))
		return
	}
	if e.write && !u.Write {
		s.fail(w, r, u.Name, errorf(http.StatusForbidden,
			"user %q has read-only access", u.Name))
		return
	}
	if err := checkQuery(r, e.query); err != nil {
		s.fail(w, r, u.Name, err)
		return
	}
	v, err := e.fn(w, r)
	if err != nil {
		s.fail(w, r, u.Name, err)
		return
	}
	s.log.Debug("rapi request", "user", u.Name, "method", r.Method,
		"path", r.URL.Path)
	writeJSON(w, http.StatusOK, v)
}

func allowed(m methods) string {
	var names []string
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// checkQuery refuses unknown and repeated query parameters.
func checkQuery(r *http.Request, known []string) error {
	for k, vs := range r.URL.Query() {
		if !slices.Contains(known, k) {
			return errorf(http.StatusBadRequest,
				"unsupported query parameter %q", k)
		}
		if len(vs) > 1 {
			return errorf(http.StatusBadRequest,
				"query parameter %q given %d times", k, len(vs))
		}
	}
	return nil
}

// boolQuery returns query parameter key: absent or "0" is false, "1"
// true, anything else an error.
func boolQuery(r *http.Request, key string) (bool, error) {
	switch v := r.URL.Query().Get(key); v {
	case "", "0":
		return false, nil
	case "1":
		return true, nil
	default:
		return false, errorf(http.StatusBadRequest,
			"query parameter %s=%q: use 0 or 1", key, v)
	}
}
