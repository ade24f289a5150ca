// Command testapp is the workload and the client of the one-node cluster
// test (test/cluster), in one static binary so one image serves both:
//
//	testapp serve --listen :8080     answers every request 200 "ok", after
//	                                 ?sleep=DURATION if asked; on SIGTERM it
//	                                 finishes the requests in flight, as a
//	                                 well-behaved app does
//	testapp get --url U --header K=V --n N [--body] [--insecure] [--every D] [--vary S]
//	                                 sends N GETs, one after another (with
//	                                 --every, the i-th at i*D from the
//	                                 start: a steady load; with --vary, as S
//	                                 subjects), and prints one
//	                                 JSON line per answer: its status, the
//	                                 rate-limit headers, the milliseconds
//	                                 from the start it was sent at and,
//	                                 with --body, the body
package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// answer is what the test reads of each response.
type answer struct {
	Status int               `json:"status"`
	Header map[string]string `json:"header"`
	Body   string            `json:"body,omitempty"`
	Error  string            `json:"error,omitempty"`
	// Millis is when the request was sent, from the first one's start.
	Millis int64 `json:"ms"`
}

var shownHeaders = []string{"Retry-After", "RateLimit-Policy", "RateLimit",
	"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: testapp serve|get [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2:])
	case "get":
		err = get(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "testapp:", err)
		os.Exit(1)
	}
}

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	listen := fs.String("listen", ":8080", "address to serve on")
	_ = fs.Parse(args)
	srv := &http.Server{Addr: *listen, ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(answerOK)}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	errs := make(chan error, 1)
	go func() { errs <- srv.ListenAndServe() }()
	select {
	case err := <-errs:
		return err
	case <-stop:
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return srv.Shutdown(ctx)
}

func answerOK(w http.ResponseWriter, r *http.Request) {
	if d, err := time.ParseDuration(r.URL.Query().Get("sleep")); err == nil {
		time.Sleep(d)
	}
	_, _ = io.WriteString(w, "ok\n")
}

func get(args []string) error {
	fs := flag.NewFlagSet("get", flag.ExitOnError)
	url := fs.String("url", "", "URL to GET")
	header := fs.String("header", "", "a request header, K=V")
	n := fs.Int("n", 1, "how many requests")
	body := fs.Bool("body", false, "show the body too")
	insecure := fs.Bool("insecure", false, "accept any TLS certificate (a self-signed one)")
	every := fs.Duration("every", 0, "send the i-th request at i times this from the start (0: each when the last is answered)")
	vary := fs.Int("vary", 0, "when above 0, the i-th request's header value ends in -(i mod vary): that many subjects")
	_ = fs.Parse(args)
	client := &http.Client{Timeout: 10 * time.Second}
	if *insecure {
		client.Transport = &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec // asked for
	}
	enc := json.NewEncoder(os.Stdout)
	start := time.Now()
	for i := range *n {
		time.Sleep(time.Until(start.Add(time.Duration(i) * *every)))
		sent := time.Since(start).Milliseconds()
		h := *header
		if *vary > 0 && h != "" {
			h += "-" + strconv.Itoa(i%*vary)
		}
		a := once(client, *url, h, *body)
		a.Millis = sent
		if err := enc.Encode(a); err != nil {
			return err
		}
	}
	return nil
}

func once(client *http.Client, url, header string, withBody bool) answer {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return answer{Error: err.Error()}
	}
	if k, v, ok := strings.Cut(header, "="); ok {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		return answer{Error: err.Error()}
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return answer{Status: resp.StatusCode, Error: err.Error()}
	}
	a := answer{Status: resp.StatusCode, Header: map[string]string{}}
	if withBody {
		a.Body = string(b)
	}
	for _, h := range shownHeaders {
		if v := resp.Header.Get(h); v != "" {
			a.Header[h] = v
		}
	}
	return a
}
