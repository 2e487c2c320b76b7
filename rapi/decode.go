package rapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
)

// httpError is a refusal with its HTTP status; Explain goes into the
// JSON error body.
type httpError struct {
	code    int
	explain string
}

// Error returns the explanation sent to the client.
func (e *httpError) Error() string { return e.explain }

func errorf(code int, format string, args ...any) *httpError {
	return &httpError{code: code, explain: fmt.Sprintf(format, args...)}
}

// readBody returns the body of a request that changes something. It
// must be JSON (a plain form post from a browser is refused, so a
// page cannot ride on credentials the browser remembers) and at most
// limit bytes.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return nil, errorf(http.StatusUnsupportedMediaType,
			"request body must be JSON (Content-Type: application/json)")
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return nil, errorf(http.StatusRequestEntityTooLarge,
			"request body larger than %d bytes", limit)
	}
	if err != nil {
		return nil, errorf(http.StatusBadRequest, "reading request body: %v", err)
	}
	return data, nil
}

// decodeString decodes a body that must be exactly one JSON string.
func decodeString(data []byte) (string, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return "", errorf(http.StatusBadRequest, "malformed JSON body: %v", err)
	}
	s, ok := tok.(string)
	if !ok {
		return "", errorf(http.StatusBadRequest,
			"body must be a JSON string, got %s", describe(tok))
	}
	if err := expectEnd(dec); err != nil {
		return "", err
	}
	return s, nil
}

// decodeFlags decodes a body that must be one JSON object whose keys
// are among allowed (exact spelling, each at most once) and whose
// values are true or false.
func decodeFlags(data []byte, allowed []string) (map[string]bool, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := expectDelim(dec, '{', "a JSON object"); err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for dec.More() {
		key, val, err := nextField(dec)
		if err != nil {
			return nil, err
		}
		if !slices.Contains(allowed, key) {
			return nil, errorf(http.StatusBadRequest,
				"unknown field %q; known fields: %v", key, allowed)
		}
		if _, dup := out[key]; dup {
			return nil, errorf(http.StatusBadRequest, "field %q given twice", key)
		}
		out[key] = val
	}
	if err := expectDelim(dec, '}', "end of object"); err != nil {
		return nil, err
	}
	return out, expectEnd(dec)
}

// nextField reads one "key": boolean pair of an object.
func nextField(dec *json.Decoder) (string, bool, error) {
	tok, err := dec.Token()
	if err != nil {
		return "", false, errorf(http.StatusBadRequest, "malformed JSON body: %v", err)
	}
	key, _ := tok.(string)
	tok, err = dec.Token()
	if err != nil {
		return "", false, errorf(http.StatusBadRequest, "malformed JSON body: %v", err)
	}
	val, ok := tok.(bool)
	if !ok {
		return "", false, errorf(http.StatusBadRequest,
			"field %q must be true or false, got %s", key, describe(tok))
	}
	return key, val, nil
}

func expectDelim(dec *json.Decoder, want json.Delim, what string) error {
	tok, err := dec.Token()
	if err != nil {
		return errorf(http.StatusBadRequest, "malformed JSON body: %v", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != want {
		return errorf(http.StatusBadRequest, "body must be %s, got %s",
			what, describe(tok))
	}
	return nil
}

func expectEnd(dec *json.Decoder) error {
	if _, err := dec.Token(); err != io.EOF {
		return errorf(http.StatusBadRequest, "malformed JSON body: "+
			"trailing data after the value")
	}
	return nil
}

// describe names the JSON type of a token for an error message.
func describe(tok json.Token) string {
	switch v := tok.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case float64, json.Number:
		return "a number"
	case string:
		return "a string"
	case json.Delim:
		if v == '{' || v == '}' {
			return "an object"
		}
		return "an array"
	}
	return fmt.Sprintf("%T", tok)
}
