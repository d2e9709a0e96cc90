package main

// The echo component's wRPC (what bench/echo_core.py does, for the same traffic at a
// fraction of the CPU): serve handle-message, answer by invoking the provider's
// consumer.publish with subject = reply-to ("broadcast:" bodies go to `broadcast`,
// `ws.session.*` events are only answered), pass the caller's trace context on.

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"time"
)

const (
	handlerSubject = "%s.%s.wrpc.0.0.1.wasmcloud:messaging/handler@0.2.0.handle-message"
	publishSubject = "%s.%s.wrpc.0.0.1.wasmcloud:messaging/consumer@0.2.0.publish"
	sidHandler     = 1
	sidInbox       = 2
	callTimeout    = 10 * time.Second
)

var (
	errNeedMore   = errors.New("the value continues")
	errBadMessage = errors.New("not a broker-message")
	ok            = []byte{0}
)

type served struct {
	clientInbox string
	trace       map[string]string
	deadline    time.Time
	params      []byte
}

type call struct {
	clientInbox string
	rest        []byte
	deadline    time.Time
	result      []byte
	handshaken  bool
}

// Counts: NATS messages published and delivered, messages handled.
type Counts struct{ Published, Delivered, Handled int }

// Echo is the component's state; what it sends goes to its Conn's buffer.
type Echo struct {
	nc             *Conn
	inbox, quiet   string
	handlerSubject string
	queueGroup     string
	publishSubject string
	plainHeaders   []byte
	headers        map[string]string
	ids            int
	served         map[string]*served
	calls          map[string]*call
	abandoned      map[string]bool
	Counts         Counts
}

func token() string {
	b := make([]byte, 11)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func NewEcho(nc *Conn, lattice, component, provider string) *Echo {
	headers := map[string]string{"source-id": component, "link-name": "default"}
	return &Echo{
		nc: nc, inbox: "_INBOX." + token(), quiet: "_INBOX." + token(),
		handlerSubject: strings.Replace(strings.Replace(handlerSubject, "%s", lattice, 1), "%s", component, 1),
		queueGroup:     lattice + "." + component,
		publishSubject: strings.Replace(strings.Replace(publishSubject, "%s", lattice, 1), "%s", provider, 1),
		headers:        headers,
		plainHeaders:   EncodeHeaders([]string{"source-id", "link-name"}, headers),
		served:         map[string]*served{}, calls: map[string]*call{}, abandoned: map[string]bool{},
	}
}

func (e *Echo) Subscribe() {
	e.nc.Sub(e.handlerSubject, sidHandler, e.queueGroup)
	e.nc.Sub(e.inbox+".>", sidInbox, "")
}

func (e *Echo) pub(subject, reply string, payload []byte) {
	e.nc.Pub(subject, reply, payload)
	e.Counts.Published++
}

func (e *Echo) nextID() string {
	e.ids++
	return strconv.Itoa(e.ids)
}

func (e *Echo) OnMsg(m *Msg, now time.Time) {
	e.Counts.Delivered++
	if m.Sid == sidHandler {
		e.onInvocation(m, now)
		return
	}
	if len(m.Subject) <= len(e.inbox)+1 {
		return
	}
	key, tail, _ := strings.Cut(m.Subject[len(e.inbox)+1:], ".")
	switch tail {
	case "results":
		e.onResult(key, m.Payload)
	case "params":
		e.onParams(key, m.Payload, now)
	case "":
		e.onHandshake(key, m)
	}
}

func uleb(buf []byte, pos int) (int, int, error) {
	value, shift := 0, 0
	for {
		if pos >= len(buf) {
			return 0, 0, errNeedMore
		}
		b := buf[pos]
		pos++
		value |= int(b&0x7f) << shift
		if b < 0x80 {
			return value, pos, nil
		}
		shift += 7
		if shift > 35 {
			return 0, 0, errBadMessage
		}
	}
}

func field(buf []byte, pos int) ([]byte, int, error) {
	size, pos, err := uleb(buf, pos)
	if err != nil {
		return nil, 0, err
	}
	if pos+size > len(buf) {
		return nil, 0, errNeedMore
	}
	return buf[pos : pos+size], pos + size, nil
}

// decode: broker-message -> subject, body, reply-to (nil: none).
func decode(buf []byte) (subject, body, replyTo []byte, err error) {
	pos := 0
	if subject, pos, err = field(buf, pos); err != nil {
		return
	}
	if body, pos, err = field(buf, pos); err != nil {
		return
	}
	if pos >= len(buf) {
		err = errNeedMore
		return
	}
	switch buf[pos] {
	case 0:
		pos++
	case 1:
		if replyTo, pos, err = field(buf, pos+1); err != nil {
			return
		}
	default:
		err = errBadMessage
		return
	}
	if pos != len(buf) {
		err = errBadMessage
	}
	return
}

func leb(out []byte, v int) []byte {
	for {
		b := byte(v & 0x7f)
		v >>= 7
		if v != 0 {
			out = append(out, b|0x80)
		} else {
			return append(out, b)
		}
	}
}

func encodePublish(subject, body []byte) []byte {
	out := make([]byte, 0, len(subject)+len(body)+8)
	out = append(leb(out, len(subject)), subject...)
	out = append(leb(out, len(body)), body...)
	return append(out, 0)
}

func encodeErr(message string) []byte {
	return append(leb([]byte{1}, len(message)), message...)
}

// resultComplete: whether buf holds a whole result<_, string>.
func resultComplete(buf []byte) (bool, error) {
	if len(buf) == 0 {
		return false, nil
	}
	switch buf[0] {
	case 0:
		return len(buf) == 1, nil
	case 1:
		_, end, err := field(buf, 1)
		if err == errNeedMore {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		return end == len(buf), nil
	}
	return false, errBadMessage
}

func (e *Echo) onInvocation(m *Msg, now time.Time) {
	if m.Reply == "" {
		return
	}
	e.Counts.Handled++
	var trace map[string]string
	if m.Headers != nil && bytes.Contains(m.Headers, []byte("trace")) {
		_, headers := ParseHeaders(m.Headers)
		for k, v := range headers {
			if l := strings.ToLower(k); l == "traceparent" || l == "tracestate" {
				if trace == nil {
					trace = map[string]string{}
				}
				trace[k] = v
			}
		}
	}
	subject, body, replyTo, err := decode(m.Payload)
	switch err {
	case errNeedMore:
		key := "s" + e.nextID()
		e.served[key] = &served{m.Reply, trace, now.Add(callTimeout), append([]byte(nil), m.Payload...)}
		e.pub(m.Reply, e.inbox+"."+key, nil)
		return
	case nil:
	default:
		e.pub(m.Reply, e.quiet+"."+e.nextID(), nil)
		e.endResults(m.Reply, nil)
		return
	}
	e.pub(m.Reply, e.quiet+"."+e.nextID(), nil)
	e.handle(m.Reply, subject, body, replyTo, trace, now)
}

func (e *Echo) onParams(key string, chunk []byte, now time.Time) {
	s := e.served[key]
	if s == nil {
		return
	}
	s.params = append(s.params, chunk...)
	subject, body, replyTo, err := decode(s.params)
	if err == errNeedMore && len(chunk) > 0 {
		return
	}
	delete(e.served, key)
	if err != nil {
		e.endResults(s.clientInbox, nil)
		return
	}
	e.handle(s.clientInbox, subject, body, replyTo, s.trace, now)
}

func (e *Echo) handle(clientInbox string, subject, body, replyTo []byte, trace map[string]string, now time.Time) {
	switch {
	case bytes.HasPrefix(subject, []byte("ws.session.")):
		e.endResults(clientInbox, ok)
	case bytes.HasPrefix(body, []byte("broadcast:")):
		e.publish(clientInbox, []byte("broadcast"), bytes.TrimLeft(body[len("broadcast:"):], " \t\r\n\v\f"), trace, now)
	case len(replyTo) > 0:
		e.publish(clientInbox, replyTo, body, trace, now)
	default:
		e.endResults(clientInbox, ok)
	}
}

// endResults: the result (nil: a transport failure, only the end) and the end of results.
func (e *Echo) endResults(clientInbox string, result []byte) {
	results := clientInbox + ".results"
	if result != nil {
		e.pub(results, "", result)
	}
	e.pub(results, "", nil)
}

func (e *Echo) publish(clientInbox string, subject, body []byte, trace map[string]string, now time.Time) {
	params := encodePublish(subject, body)
	block := e.plainHeaders
	if trace != nil {
		names := []string{"source-id", "link-name"}
		all := map[string]string{"source-id": e.headers["source-id"], "link-name": e.headers["link-name"]}
		for k, v := range trace {
			names = append(names, k)
			all[k] = v
		}
		block = EncodeHeaders(names, all)
	}
	key := e.nextID()
	reply := e.inbox + "." + key
	first := e.nc.MaxPayload - len(block) - len(reply)
	if first < 0 {
		first = 0
	}
	if first > len(params) {
		first = len(params)
	}
	e.calls[key] = &call{clientInbox: clientInbox, rest: params[first:], deadline: now.Add(callTimeout)}
	e.nc.HPub(e.publishSubject, reply, block, params[:first])
	e.Counts.Published++
}

func (e *Echo) onHandshake(key string, m *Msg) {
	c := e.calls[key]
	if c == nil || c.handshaken {
		if e.abandoned[key] && m.Reply != "" {
			delete(e.abandoned, key)
			e.pub(m.Reply+".params", "", nil)
		}
		return
	}
	if m.Headers != nil {
		if status, _ := ParseHeaders(m.Headers); status == "503" {
			delete(e.calls, key)
			e.endResults(c.clientInbox, encodeErr("provider not served (no responders)"))
			return
		}
	}
	c.handshaken = true
	params := m.Reply + ".params"
	for start := 0; start < len(c.rest); start += e.nc.MaxPayload {
		end := min(start+e.nc.MaxPayload, len(c.rest))
		e.pub(params, "", c.rest[start:end])
	}
	c.rest = nil
	e.pub(params, "", nil)
}

func (e *Echo) onResult(key string, chunk []byte) {
	c := e.calls[key]
	if c == nil {
		return
	}
	if len(chunk) == 0 {
		delete(e.calls, key)
		e.endResults(c.clientInbox, encodeErr("publish failed: no result"))
		return
	}
	c.result = append(c.result, chunk...)
	complete, err := resultComplete(c.result)
	if err != nil {
		delete(e.calls, key)
		e.endResults(c.clientInbox, encodeErr("publish failed: bad result"))
		return
	}
	if complete {
		delete(e.calls, key)
		// publish and handle-message both return result<_, string>: pass it on.
		e.endResults(c.clientInbox, c.result)
	}
}

// Expire ends the calls past their deadline; returns how many.
func (e *Echo) Expire(now time.Time) int {
	n := 0
	for key, s := range e.served {
		if !s.deadline.After(now) {
			delete(e.served, key)
			e.endResults(s.clientInbox, nil)
			n++
		}
	}
	for key, c := range e.calls {
		if !c.deadline.After(now) {
			delete(e.calls, key)
			if !c.handshaken {
				e.abandoned[key] = true
			}
			e.endResults(c.clientInbox, encodeErr("publish timed out"))
			n++
		}
	}
	return n
}
