package main

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// sent parses back what was written (PUB/HPUB read as MSG/HMSG with sid 0).
func sent(t *testing.T, out *bytes.Buffer, w *bufio.Writer) []*Msg {
	t.Helper()
	w.Flush()
	var fixed bytes.Buffer
	raw := out.Bytes()
	for pos := 0; pos < len(raw); {
		eol := bytes.Index(raw[pos:], []byte("\r\n")) + pos
		f := strings.SplitN(string(raw[pos:eol]), " ", 3)
		op := map[string]string{"PUB": "MSG", "HPUB": "HMSG"}[f[0]]
		fixed.WriteString(op + " " + f[1] + " 0 " + f[2] + "\r\n")
		sizes := strings.Fields(f[2])
		total, _ := strconv.Atoi(sizes[len(sizes)-1])
		fixed.Write(raw[eol+2 : eol+2+total+2])
		pos = eol + 2 + total + 2
	}
	out.Reset()
	var msgs []*Msg
	n := &Conn{Out: bufio.NewWriter(&bytes.Buffer{})}
	if _, err := n.parse(fixed.Bytes(), func(m *Msg) { msgs = append(msgs, m) }); err != nil {
		t.Fatal(err)
	}
	return msgs
}

func newEcho() (*Echo, *bytes.Buffer, *bufio.Writer) {
	var out bytes.Buffer
	w := bufio.NewWriter(&out)
	nc := &Conn{Out: w, MaxPayload: 1024 * 1024}
	return NewEcho(nc, "default", "comp", "prov"), &out, w
}

func broker(subject, body, replyTo string) []byte {
	out := append(leb(nil, len(subject)), subject...)
	out = append(leb(out, len(body)), body...)
	if replyTo == "" {
		return append(out, 0)
	}
	out = append(out, 1)
	out = append(leb(out, len(replyTo)), replyTo...)
	return out
}

func TestParserTakesMessagesSplitAnywhere(t *testing.T) {
	block := EncodeHeaders([]string{"source-id"}, map[string]string{"source-id": "p"})
	stream := []byte("PING\r\nMSG a.b 2 _INBOX.r 3\r\nabc\r\n" +
		"HMSG c.d 1 " + itoa(len(block)) + " " + itoa(len(block)+2) + "\r\n" + string(block) + "hi\r\n+OK\r\n")
	var out bytes.Buffer
	n := &Conn{Out: bufio.NewWriter(&out)}
	var msgs []*Msg
	var buf []byte
	for i := range stream { // one byte at a time: every boundary is a split
		buf = append(buf, stream[i])
		pos, err := n.parse(buf, func(m *Msg) { msgs = append(msgs, m) })
		if err != nil {
			t.Fatal(err)
		}
		buf = append([]byte(nil), buf[pos:]...)
	}
	n.Out.Flush()
	if out.String() != "PONG\r\n" || len(msgs) != 2 {
		t.Fatalf("out %q, %d messages", out.String(), len(msgs))
	}
	if m := msgs[0]; m.Subject != "a.b" || m.Sid != 2 || m.Reply != "_INBOX.r" || string(m.Payload) != "abc" || m.Headers != nil {
		t.Fatalf("first %+v", m)
	}
	if m := msgs[1]; m.Subject != "c.d" || m.Reply != "" || string(m.Payload) != "hi" || !bytes.Equal(m.Headers, block) {
		t.Fatalf("second %+v", m)
	}
	if status, h := ParseHeaders([]byte("NATS/1.0 503\r\n\r\n")); status != "503" || len(h) != 0 {
		t.Fatal(status, h)
	}
	if _, err := n.parse([]byte("-ERR 'Authorization Violation'\r\n"), nil); err == nil || !strings.Contains(err.Error(), "Authorization") {
		t.Fatal(err)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

// One message through: the invocation, then the provider's handshake, result and end of
// results.
func TestAnEchoIsFivePublishesAndFourDeliveries(t *testing.T) {
	e, out, w := newEcho()
	now := time.Now()
	trace := EncodeHeaders([]string{"traceparent"}, map[string]string{"traceparent": "00-ab-cd-01"})
	e.OnMsg(&Msg{Subject: e.handlerSubject, Sid: sidHandler, Reply: "_INBOX.host.1", Headers: trace, Payload: broker("in", "hello", "ws.s1")}, now)
	got := sent(t, out, w)
	if len(got) != 2 || got[0].Subject != "_INBOX.host.1" || !strings.HasPrefix(got[0].Reply, e.quiet) {
		t.Fatalf("handshake %+v", got)
	}
	inv := got[1]
	if inv.Subject != e.publishSubject || !bytes.Equal(inv.Payload, encodePublish([]byte("ws.s1"), []byte("hello"))) {
		t.Fatalf("invocation %+v", inv)
	}
	_, h := ParseHeaders(inv.Headers)
	if h["source-id"] != "comp" || h["link-name"] != "default" || h["traceparent"] != "00-ab-cd-01" {
		t.Fatalf("headers %v", h)
	}
	e.OnMsg(&Msg{Subject: inv.Reply, Sid: sidInbox, Reply: "_INBOX.prov.9"}, now)
	got = sent(t, out, w)
	if len(got) != 1 || got[0].Subject != "_INBOX.prov.9.params" || len(got[0].Payload) != 0 {
		t.Fatalf("end of params %+v", got)
	}
	e.OnMsg(&Msg{Subject: inv.Reply + ".results", Sid: sidInbox, Payload: ok}, now)
	e.OnMsg(&Msg{Subject: inv.Reply + ".results", Sid: sidInbox}, now)
	got = sent(t, out, w)
	if len(got) != 2 || got[0].Subject != "_INBOX.host.1.results" || !bytes.Equal(got[0].Payload, ok) || len(got[1].Payload) != 0 {
		t.Fatalf("results %+v", got)
	}
	if e.Counts != (Counts{Published: 5, Delivered: 4, Handled: 1}) {
		t.Fatalf("counts %+v", e.Counts)
	}
	if len(e.calls) != 0 || len(e.served) != 0 {
		t.Fatal("state left behind")
	}
}

func TestParametersInChunksAndSessionEventsAndBroadcast(t *testing.T) {
	e, out, w := newEcho()
	now := time.Now()
	whole := broker("ws.session.opened", "", "")
	e.OnMsg(&Msg{Subject: e.handlerSubject, Sid: sidHandler, Reply: "_INBOX.h.1", Payload: whole[:3]}, now)
	got := sent(t, out, w)
	if len(got) != 1 || !strings.HasPrefix(got[0].Reply, e.inbox+".s") {
		t.Fatalf("handshake for chunks %+v", got)
	}
	e.OnMsg(&Msg{Subject: got[0].Reply + ".params", Sid: sidInbox, Payload: whole[3:]}, now)
	got = sent(t, out, w)
	if len(got) != 2 || got[0].Subject != "_INBOX.h.1.results" || !bytes.Equal(got[0].Payload, ok) {
		t.Fatalf("session event answered %+v", got)
	}
	e.OnMsg(&Msg{Subject: e.handlerSubject, Sid: sidHandler, Reply: "_INBOX.h.2", Payload: broker("in", "broadcast: hi", "ws.s1")}, now)
	got = sent(t, out, w)
	if len(got) != 2 || !bytes.Equal(got[1].Payload, encodePublish([]byte("broadcast"), []byte("hi"))) {
		t.Fatalf("broadcast %+v", got)
	}
}

func TestNoRespondersAndTimeoutsEndTheServedCallWithErr(t *testing.T) {
	e, out, w := newEcho()
	now := time.Now()
	e.OnMsg(&Msg{Subject: e.handlerSubject, Sid: sidHandler, Reply: "_INBOX.h.1", Payload: broker("in", "x", "ws.s1")}, now)
	inv := sent(t, out, w)[1]
	e.OnMsg(&Msg{Subject: inv.Reply, Sid: sidInbox, Headers: []byte("NATS/1.0 503\r\n\r\n")}, now)
	got := sent(t, out, w)
	if len(got) != 2 || !bytes.Equal(got[0].Payload, encodeErr("provider not served (no responders)")) {
		t.Fatalf("503 %+v", got)
	}
	e.OnMsg(&Msg{Subject: e.handlerSubject, Sid: sidHandler, Reply: "_INBOX.h.2", Payload: broker("in", "y", "ws.s1")}, now)
	inv = sent(t, out, w)[1]
	if e.Expire(now.Add(callTimeout-time.Millisecond)) != 0 || e.Expire(now.Add(callTimeout)) != 1 {
		t.Fatal("expiry")
	}
	got = sent(t, out, w)
	if len(got) != 2 || got[0].Subject != "_INBOX.h.2.results" || !bytes.Equal(got[0].Payload, encodeErr("publish timed out")) {
		t.Fatalf("timeout %+v", got)
	}
	// A late handshake of the abandoned call still ends its parameters.
	e.OnMsg(&Msg{Subject: inv.Reply, Sid: sidInbox, Reply: "_INBOX.prov.3"}, now)
	if got = sent(t, out, w); len(got) != 1 || got[0].Subject != "_INBOX.prov.3.params" {
		t.Fatalf("late handshake %+v", got)
	}
}

func TestLargePublishParametersAreChunkedWithinMaxPayload(t *testing.T) {
	e, out, w := newEcho()
	e.nc.MaxPayload = 512
	now := time.Now()
	body := strings.Repeat("z", 1500)
	e.OnMsg(&Msg{Subject: e.handlerSubject, Sid: sidHandler, Reply: "_INBOX.h.1", Payload: broker("in", body, "ws.s1")}, now)
	inv := sent(t, out, w)[1]
	if len(inv.Headers)+len(inv.Payload)+len(inv.Reply) > 512 {
		t.Fatalf("invocation too big: %d", len(inv.Headers)+len(inv.Payload))
	}
	e.OnMsg(&Msg{Subject: inv.Reply, Sid: sidInbox, Reply: "_INBOX.prov.1"}, now)
	params := append([]byte(nil), inv.Payload...)
	for _, m := range sent(t, out, w) {
		if len(m.Payload) > 512 {
			t.Fatalf("chunk of %d", len(m.Payload))
		}
		params = append(params, m.Payload...)
	}
	if !bytes.Equal(params, encodePublish([]byte("ws.s1"), []byte(body))) {
		t.Fatal("parameters differ")
	}
}

// What a chunk produced is written before the next read, even when the chunk held no
// delivery: a server PING read last still gets its PONG (and earlier answers go out).
func TestServeWritesWhatEachChunkProduced(t *testing.T) {
	ours, server := net.Pipe()
	defer server.Close()
	n := &Conn{conn: ours, r: bufio.NewReader(ours), Out: bufio.NewWriter(ours)}
	var mu sync.Mutex
	go n.Serve(&mu, func(m *Msg) { n.Pub("answer", "", m.Payload) })
	read := func(want string) {
		t.Helper()
		server.SetReadDeadline(time.Now().Add(5 * time.Second))
		got := make([]byte, len(want))
		if _, err := io.ReadFull(server, got); err != nil || string(got) != want {
			t.Fatalf("got %q (%v), want %q", got, err, want)
		}
	}
	server.Write([]byte("MSG a 1 2\r\nhi\r\nPI"))
	read("PUB answer 2\r\nhi\r\n")
	server.Write([]byte("NG\r\n"))
	read("PONG\r\n")
}
