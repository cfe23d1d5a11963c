// Command delayproxy puts a delay between a client and a Redis server and counts the
// round trips that cross it, for scripts/bench-registry.py: it prints the address it
// listens on, then answers each line read from its standard input with the round trips
// so far.
//
//	delayproxy -target 127.0.0.1:6379 -delay 1ms
package main

import (
	"bufio"
	"flag"
	"fmt"
	"log"
	"os"

	"github.com/layercache/go-layercache/internal/benchkit"
)

func main() {
	target := flag.String("target", "127.0.0.1:6379", "the server")
	delay := flag.Duration("delay", 0, "added each way (half the round trip)")
	flag.Parse()
	addr, sent, err := benchkit.CountingProxy(*target, *delay)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(addr)
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		fmt.Println(sent.Load())
	}
}
