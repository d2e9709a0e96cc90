// The bench's stand-ins in Go, for the figures to measure the servers, not the stand-ins:
//
//	bench-echo component <nats url> <lattice> <component id> <provider id>
//	bench-echo nats-echo <nats url>
//
// `component` is the echo component of our stack (wRPC over NATS, as bench/echo_core.py);
// `nats-echo` is baseline (b)'s responder (answers each message on subject `echo` with
// its payload). Each prints "ready" on stderr once its subscriptions are live; the
// component prints `counts published=… delivered=… handled=…` on SIGTERM.
package main

import (
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 3 {
		fail("usage: bench-echo component|nats-echo <nats url> ...")
	}
	u, err := url.Parse(os.Args[2])
	if err != nil {
		fail(err.Error())
	}
	switch os.Args[1] {
	case "component":
		if len(os.Args) != 6 {
			fail("usage: bench-echo component <nats url> <lattice> <component id> <provider id>")
		}
		component(u.Host, os.Args[3], os.Args[4], os.Args[5])
	case "nats-echo":
		natsEcho(u.Host)
	default:
		fail("unknown stand-in " + os.Args[1])
	}
}

func fail(why string) {
	fmt.Fprintln(os.Stderr, why)
	os.Exit(2)
}

func component(addr, lattice, componentID, providerID string) {
	nc, err := Dial(addr, "bench-echo-component")
	if err != nil {
		fail(err.Error())
	}
	e := NewEcho(nc, lattice, componentID, providerID)
	e.Subscribe()
	if err := nc.Ping(); err != nil {
		fail(err.Error())
	}
	fmt.Fprintln(os.Stderr, "ready")
	var mu sync.Mutex
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	done := make(chan error, 1)
	go func() {
		done <- nc.Serve(&mu, func(m *Msg) { e.OnMsg(m, time.Now()) })
	}()
	tick := time.NewTicker(time.Second)
	for {
		select {
		case <-tick.C:
			mu.Lock()
			if e.Expire(time.Now()) > 0 {
				nc.Out.Flush()
			}
			mu.Unlock()
		case <-stop:
			mu.Lock()
			c := e.Counts
			mu.Unlock()
			fmt.Fprintf(os.Stderr, "counts published=%d delivered=%d handled=%d\n", c.Published, c.Delivered, c.Handled)
			return
		case err := <-done:
			fail("connection lost: " + err.Error())
		}
	}
}

func natsEcho(addr string) {
	nc, err := Dial(addr, "bench-echo-responder")
	if err != nil {
		fail(err.Error())
	}
	nc.Sub("echo", 1, "")
	if err := nc.Ping(); err != nil {
		fail(err.Error())
	}
	fmt.Fprintln(os.Stderr, "ready")
	go func() {
		stop := make(chan os.Signal, 1)
		signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
		<-stop
		os.Exit(0)
	}()
	var mu sync.Mutex
	err = nc.Serve(&mu, func(m *Msg) {
		if m.Reply != "" {
			nc.Pub(m.Reply, "", m.Payload)
		}
	})
	fail("connection lost: " + err.Error())
}
