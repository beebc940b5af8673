package httpjson

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestDoAndStream(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/echo":
			var v map[string]int
			json.NewDecoder(r.Body).Decode(&v)
			json.NewEncoder(w).Encode(v["n"] + 1)
		case "/stream":
			for i := range 3 {
				fmt.Fprintf(w, "{\"i\":%d}\n", i)
				w.(http.Flusher).Flush()
			}
		default:
			http.Error(w, `[{"kind":"permanent","id":"not_found","msg":"no"}]`, http.StatusNotFound)
		}
	}))
	defer srv.Close()
	c := New(srv.URL+"/", time.Second)
	var n int
	if err := c.Do(context.Background(), http.MethodPost, "/echo", map[string]int{"n": 41}, &n); err != nil || n != 42 {
		t.Fatalf("Do: %d %v", n, err)
	}
	err := c.Do(context.Background(), http.MethodGet, "/missing", nil, nil)
	var se *StatusError
	if !NotFound(err) || !errors.As(err, &se) || se.Body == "" {
		t.Fatalf("a 404: %v", err)
	}
	var got []int
	err = c.Stream(context.Background(), "/stream", func(raw json.RawMessage) error {
		var v struct{ I int }
		if err := json.Unmarshal(raw, &v); err != nil {
			return err
		}
		got = append(got, v.I)
		return nil
	})
	if len(got) != 3 || got[2] != 2 || err == nil {
		t.Fatalf("stream: %v, end %v", got, err)
	}
}
