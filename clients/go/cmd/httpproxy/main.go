// Command httpproxy is the HTTP proxy of the registry scripts (scripts/regkit): in front
// of an S3 server it adds a round trip to every request and counts the requests by S3
// operation; in front of several registries it sends the requests to each in turn (a
// round robin), counting them by target. It prints the address it listens on, then
// answers each line read from its standard input with the counts so far, as one JSON
// object.
//
//	httpproxy -delay 10ms -s3 http://127.0.0.1:9000
//	httpproxy http://127.0.0.1:5000 http://127.0.0.1:5001
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	delay := flag.Duration("delay", 0, "added to every request (a whole round trip)")
	s3 := flag.Bool("s3", false, "count requests by S3 operation, not by target")
	flag.Parse()
	var targets []*url.URL
	for _, arg := range flag.Args() {
		u, err := url.Parse(arg)
		if err != nil || u.Host == "" {
			log.Fatalf("httpproxy: %q is not a URL", arg)
		}
		targets = append(targets, u)
	}
	if len(targets) == 0 {
		log.Fatal("httpproxy: no target")
	}
	var (
		next   atomic.Uint64
		mu     sync.Mutex
		counts = map[string]int{}
	)
	proxy := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			target := targets[(next.Add(1)-1)%uint64(len(targets))]
			r.SetURL(target)
			r.Out.Host = r.In.Host // the registries write absolute URLs to the proxy; S3 signs the Host
			key := target.Host
			if *s3 {
				key = Operation(r.In)
			}
			mu.Lock()
			counts[key]++
			mu.Unlock()
		},
		FlushInterval: -1,
		// A registry that cuts a body short (a cache serving a blob the store lost) is
		// an answer the scripts compare, not the proxy's error.
		ErrorLog: log.New(io.Discard, "", 0),
	}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if *delay > 0 {
			time.Sleep(*delay)
		}
		proxy.ServeHTTP(w, r)
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	go func() { log.Fatal(http.Serve(l, handler)) }()
	fmt.Println(l.Addr().String())
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		mu.Lock()
		out, _ := json.Marshal(counts)
		mu.Unlock()
		fmt.Println(string(out))
	}
}

// Operation names the S3 API call a path-style request makes (/bucket/key?query).
func Operation(r *http.Request) string {
	q := r.URL.Query()
	bucketOnly := !strings.Contains(strings.Trim(r.URL.Path, "/"), "/")
	has := func(k string) bool { _, ok := q[k]; return ok }
	copySource := r.Header.Get("X-Amz-Copy-Source") != ""
	switch r.Method {
	case http.MethodHead:
		if bucketOnly {
			return "HeadBucket"
		}
		return "HeadObject"
	case http.MethodGet:
		switch {
		case bucketOnly && q.Get("list-type") == "2":
			return "ListObjectsV2"
		case bucketOnly && has("uploads"):
			return "ListMultipartUploads"
		case bucketOnly:
			return "ListObjects"
		case has("uploadId"):
			return "ListParts"
		}
		return "GetObject"
	case http.MethodPut:
		switch {
		case bucketOnly:
			return "CreateBucket"
		case has("uploadId") && copySource:
			return "UploadPartCopy"
		case has("uploadId"):
			return "UploadPart"
		case copySource:
			return "CopyObject"
		}
		return "PutObject"
	case http.MethodPost:
		switch {
		case bucketOnly && has("delete"):
			return "DeleteObjects"
		case has("uploads"):
			return "CreateMultipartUpload"
		case has("uploadId"):
			return "CompleteMultipartUpload"
		}
	case http.MethodDelete:
		switch {
		case bucketOnly:
			return "DeleteBucket"
		case has("uploadId"):
			return "AbortMultipartUpload"
		}
		return "DeleteObject"
	}
	return r.Method + " (other)"
}
