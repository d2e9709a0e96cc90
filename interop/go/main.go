// Command wrpc-interop is an independent wRPC-over-NATS peer built on the Go
// wRPC library (wrpc.io/go v0.2.0, package wrpc.io/go/nats). The Python test
// suite drives it to check that the Python provider's wRPC implementation
// interoperates with a second implementation.
//
// Subcommands (see README.md for the full contract):
//
//	invoke         call wasmcloud:messaging/consumer@0.2.0.{publish,request}
//	serve          serve wasmcloud:messaging/handler@0.2.0.handle-message
//	serve-consumer serve wasmcloud:messaging/consumer@0.2.0.{publish,request}
//
// Values are encoded by hand with the library's helpers (wrpc.WriteString,
// wrpc.WriteByteList, wrpc.WriteOption, wrpc.WriteUint32, wrpc.Read*Status,
// wrpc.ReadUint32). Strings and byte lists are *decoded* with io.ReadFull
// instead of wrpc.ReadString / wrpc.ReadByteList: those two call Read once,
// and the NATS stream reader returns at most one NATS message per Read, so
// they truncate values that span several messages (chunked payloads).
package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	wrpc "wrpc.io/go"
	wrpcnats "wrpc.io/go/nats"
)

const (
	consumerInstance = "wasmcloud:messaging/consumer@0.2.0"
	handlerInstance  = "wasmcloud:messaging/handler@0.2.0"
)

// ---------------------------------------------------------------------------
// output

var stdoutMu sync.Mutex

// emit writes v as one JSON line to stdout (os.Stdout is unbuffered in Go, so
// a single Write call is a flushed line).
func emit(v any) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic(err)
	}
	stdoutMu.Lock()
	defer stdoutMu.Unlock()
	_, _ = os.Stdout.Write(b.Bytes())
	_ = os.Stdout.Sync()
}

func emitLine(s string) {
	stdoutMu.Lock()
	defer stdoutMu.Unlock()
	_, _ = os.Stdout.WriteString(s + "\n")
	_ = os.Stdout.Sync()
}

type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return usageError{fmt.Sprintf(format, args...)}
}

// ---------------------------------------------------------------------------
// wasmcloud:messaging/types@0.2.0.broker-message

type brokerMessage struct {
	Subject string
	Body    []byte
	ReplyTo *string
}

func writeString(s string, w wrpc.ByteWriter) error {
	_, err := wrpc.WriteString(s, w)
	return err
}

func writeBrokerMessage(m *brokerMessage, w wrpc.ByteWriter) error {
	if err := writeString(m.Subject, w); err != nil {
		return fmt.Errorf("subject: %w", err)
	}
	if _, err := wrpc.WriteByteList(m.Body, w); err != nil {
		return fmt.Errorf("body: %w", err)
	}
	if err := wrpc.WriteOption(m.ReplyTo, w, writeString); err != nil {
		return fmt.Errorf("reply-to: %w", err)
	}
	return nil
}

// readBytes reads LEB128(u32 length) ‖ bytes, across message boundaries.
func readBytes(r wrpc.ByteReader) ([]byte, error) {
	n, err := wrpc.ReadUint32(r)
	if err != nil {
		return nil, fmt.Errorf("length: %w", err)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, fmt.Errorf("%d content bytes: %w", n, err)
	}
	return b, nil
}

func readString(r wrpc.ByteReader) (string, error) {
	b, err := readBytes(r)
	if err != nil {
		return "", err
	}
	if !utf8.Valid(b) {
		return "", errors.New("string is not valid UTF-8")
	}
	return string(b), nil
}

func readBrokerMessage(r wrpc.ByteReader) (*brokerMessage, error) {
	subject, err := readString(r)
	if err != nil {
		return nil, fmt.Errorf("subject: %w", err)
	}
	body, err := readBytes(r)
	if err != nil {
		return nil, fmt.Errorf("body: %w", err)
	}
	replyTo, err := wrpc.ReadOption(r, readString)
	if err != nil {
		return nil, fmt.Errorf("reply-to: %w", err)
	}
	return &brokerMessage{Subject: subject, Body: body, ReplyTo: replyTo}, nil
}

type jsonBrokerMessage struct {
	Subject string  `json:"subject"`
	BodyB64 string  `json:"body_b64"`
	ReplyTo *string `json:"reply_to"`
}

func toJSON(m *brokerMessage) jsonBrokerMessage {
	return jsonBrokerMessage{
		Subject: m.Subject,
		BodyB64: base64.StdEncoding.EncodeToString(m.Body),
		ReplyTo: m.ReplyTo,
	}
}

// ---------------------------------------------------------------------------
// flag helpers

// stringFlag remembers whether it was given (so "" can be told from absent).
type stringFlag struct {
	v   string
	set bool
}

func (f *stringFlag) String() string     { return f.v }
func (f *stringFlag) Set(s string) error { f.v, f.set = s, true; return nil }

func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	return fs
}

func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	return nil
}

func connect(url string) (*nats.Conn, error) {
	return nats.Connect(url,
		nats.Name("wrpc-interop"),
		nats.Timeout(5*time.Second),
		nats.MaxReconnects(0),
	)
}

// ---------------------------------------------------------------------------
// invoke

type invokeOpts struct {
	natsURL   string
	prefix    string
	sourceID  string
	linkName  string
	timeout   time.Duration
	closeOnly bool
	checkEOF  bool
}

func bodyFromFlags(b64 stringFlag, size int) ([]byte, error) {
	switch {
	case b64.set && size >= 0:
		return nil, usagef("give only one of --body-b64 and --body-size")
	case b64.set:
		b, err := base64.StdEncoding.DecodeString(b64.v)
		if err != nil {
			return nil, usagef("--body-b64: %v", err)
		}
		return b, nil
	case size >= 0:
		b := make([]byte, size)
		for i := range b {
			b[i] = byte(i % 251)
		}
		return b, nil
	default:
		return nil, usagef("one of --body-b64 or --body-size is required")
	}
}

func cmdInvoke(args []string) error {
	var o invokeOpts
	var linkName stringFlag
	var timeoutSec float64
	fs := newFlagSet("invoke")
	fs.StringVar(&o.natsURL, "nats", nats.DefaultURL, "NATS URL")
	fs.StringVar(&o.prefix, "prefix", "", "target prefix `{lattice}.{target-id}`, e.g. default.prov1")
	fs.StringVar(&o.sourceID, "source-id", "", "value of the source-id header (omitted if empty)")
	fs.Var(&linkName, "link-name", "value of the link-name header (default \"default\"; \"\" omits the header)")
	fs.Float64Var(&timeoutSec, "timeout-sec", 10, "overall invocation timeout in seconds")
	fs.BoolVar(&o.closeOnly, "close-only", false, "mimic wit-bindgen-wrpc-go generated clients: Invoke(params) then Close() without flushing the rest of the parameter bytes")
	fs.BoolVar(&o.checkEOF, "check-eof", false, "after decoding the result, require the server's empty end-of-results message (no trailing bytes)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if o.prefix == "" {
		return usagef("--prefix is required")
	}
	o.linkName = "default"
	if linkName.set {
		o.linkName = linkName.v
	}
	o.timeout = time.Duration(timeoutSec * float64(time.Second))
	rest := fs.Args()
	if len(rest) == 0 {
		return usagef("invoke: missing function (publish | request)")
	}
	fn, rest := rest[0], rest[1:]

	var subject, bodyB64, replyTo stringFlag
	var bodySize int
	var timeoutMs uint64
	ffs := newFlagSet("invoke " + fn)
	ffs.Var(&subject, "subject", "broker subject")
	ffs.Var(&bodyB64, "body-b64", "body, base64 (standard alphabet)")
	ffs.IntVar(&bodySize, "body-size", -1, "body of N bytes, byte i = i % 251")
	switch fn {
	case "publish":
		ffs.Var(&replyTo, "reply-to", "reply-to subject (option::some)")
	case "request":
		ffs.Uint64Var(&timeoutMs, "timeout-ms", 0, "request timeout-ms parameter (u32)")
	default:
		return usagef("invoke: unknown function %q (publish | request)", fn)
	}
	if err := parseFlags(ffs, rest); err != nil {
		return err
	}
	if ffs.NArg() > 0 {
		return usagef("unexpected arguments: %v", ffs.Args())
	}
	if !subject.set {
		return usagef("--subject is required")
	}
	body, err := bodyFromFlags(bodyB64, bodySize)
	if err != nil {
		return err
	}

	var params bytes.Buffer
	switch fn {
	case "publish":
		m := &brokerMessage{Subject: subject.v, Body: body}
		if replyTo.set {
			m.ReplyTo = &replyTo.v
		}
		if err := writeBrokerMessage(m, &params); err != nil {
			return err
		}
	case "request":
		timeoutSet := false
		ffs.Visit(func(f *flag.Flag) { timeoutSet = timeoutSet || f.Name == "timeout-ms" })
		if !timeoutSet {
			return usagef("--timeout-ms is required")
		}
		if timeoutMs > 0xffffffff {
			return usagef("--timeout-ms overflows u32")
		}
		if err := writeString(subject.v, &params); err != nil {
			return err
		}
		if _, err := wrpc.WriteByteList(body, &params); err != nil {
			return err
		}
		if _, err := wrpc.WriteUint32(uint32(timeoutMs), &params); err != nil {
			return err
		}
	}

	nc, err := connect(o.natsURL)
	if err != nil {
		emit(map[string]any{"transport_error": "nats connect: " + err.Error()})
		os.Exit(1)
	}
	defer nc.Close()

	out := invoke(&o, nc, fn, params.Bytes())
	emit(out)
	return nil
}

// invoke performs one invocation and returns the JSON object to print.
func invoke(o *invokeOpts, nc *nats.Conn, fn string, params []byte) map[string]any {
	terr := func(format string, args ...any) map[string]any {
		return map[string]any{"transport_error": fmt.Sprintf(format, args...)}
	}

	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()

	// Headers: the NATS transport takes them from the context
	// (wrpcnats.ContextWithHeader) and puts them on the invocation message.
	hdr := nats.Header{}
	if o.sourceID != "" {
		hdr.Set("source-id", o.sourceID)
	}
	if o.linkName != "" {
		hdr.Set("link-name", o.linkName)
	}
	if len(hdr) > 0 {
		ctx = wrpcnats.ContextWithHeader(ctx, hdr)
	}

	client := wrpcnats.NewClient(nc, wrpcnats.WithPrefix(o.prefix))
	w, r, err := client.Invoke(ctx, consumerInstance, fn, params)
	if err != nil {
		return terr("invoke: %v", err)
	}
	defer func() { _ = r.Close() }()

	if !o.closeOnly {
		// wrpcnats' paramWriter is lazy: the first Write/Close publishes the
		// invocation (with as many parameter bytes as fit) and waits for the
		// handshake. Close() alone sends only the empty end-of-params message
		// and DROPS any parameter bytes that did not fit into the invocation
		// message; an (empty) Write first sends them to `Rs.params`.
		if _, err := w.Write(nil); err != nil {
			return terr("write params: %v", err)
		}
	}
	if err := w.Close(); err != nil {
		return terr("close params: %v", err)
	}

	status, err := wrpc.ReadResultStatus(r)
	if err != nil {
		return terr("read result: %v", err)
	}
	var res map[string]any
	if !status {
		e, err := readString(r)
		if err != nil {
			return terr("read result::err: %v", err)
		}
		res = map[string]any{"err": e}
	} else {
		switch fn {
		case "publish":
			res = map[string]any{"ok": nil}
		case "request":
			m, err := readBrokerMessage(r)
			if err != nil {
				return terr("read result::ok: %v", err)
			}
			res = map[string]any{"ok": toJSON(m)}
		}
	}
	if o.checkEOF {
		var b [1]byte
		n, err := r.Read(b[:])
		switch {
		case n > 0:
			return terr("trailing bytes after the result value")
		case errors.Is(err, io.EOF):
		default:
			return terr("no end-of-results message: %v", err)
		}
	}
	return res
}

// ---------------------------------------------------------------------------
// serve / serve-consumer

func headersJSON(h nats.Header) map[string]any {
	out := make(map[string]any, len(h))
	for k, vs := range h {
		switch len(vs) {
		case 0:
			out[k] = ""
		case 1:
			out[k] = vs[0]
		default:
			out[k] = vs
		}
	}
	return out
}

func headersOf(ctx context.Context) nats.Header {
	h, _ := wrpcnats.HeaderFromContext(ctx)
	return h
}

type serveFunc struct {
	instance string
	name     string
	f        wrpc.HandleFunc
}

func serveLoop(natsURL, prefix, group string, ignoreStdin bool, funcs []serveFunc) error {
	nc, err := connect(natsURL)
	if err != nil {
		return fmt.Errorf("nats connect: %w", err)
	}
	defer nc.Close()

	client := wrpcnats.NewClient(nc, wrpcnats.WithPrefix(prefix), wrpcnats.WithGroup(group))
	var stops []func() error
	for _, sf := range funcs {
		stop, err := client.Serve(sf.instance, sf.name, sf.f)
		if err != nil {
			return err
		}
		stops = append(stops, stop)
	}
	if err := nc.FlushTimeout(5 * time.Second); err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	emitLine("READY")

	done := make(chan os.Signal, 2)
	signal.Notify(done, syscall.SIGTERM, syscall.SIGINT)
	if !ignoreStdin {
		go func() {
			_, _ = io.Copy(io.Discard, os.Stdin)
			done <- syscall.SIGHUP // stdin EOF
		}()
	}
	<-done
	for _, stop := range stops {
		_ = stop()
	}
	_ = nc.FlushTimeout(2 * time.Second)
	return nil
}

// writeUnitResult writes result<_, string>: 00, or 01 ‖ string.
func writeUnitResult(errMsg *string) []byte {
	var buf bytes.Buffer
	if errMsg == nil {
		buf.WriteByte(0)
	} else {
		buf.WriteByte(1)
		_ = writeString(*errMsg, &buf)
	}
	return buf.Bytes()
}

// The handlers below follow the shape of wit-bindgen-wrpc-go generated
// servers: `defer w.Close()` (so the empty end-of-results message is always
// sent, also after a failure), decode the parameters, r.Close(), run, encode
// the whole result into a buffer and write it with one w.Write call.

// messageLine is the JSON line printed per received broker-message (struct,
// so the keys come out in a fixed order).
type messageLine struct {
	Function string         `json:"function,omitempty"`
	Subject  string         `json:"subject"`
	BodyB64  string         `json:"body_b64"`
	BodyLen  int            `json:"body_len"`
	ReplyTo  *string        `json:"reply_to"`
	Headers  map[string]any `json:"headers"`
}

func newMessageLine(fn string, m *brokerMessage, h nats.Header) messageLine {
	return messageLine{
		Function: fn,
		Subject:  m.Subject,
		BodyB64:  base64.StdEncoding.EncodeToString(m.Body),
		BodyLen:  len(m.Body),
		ReplyTo:  m.ReplyTo,
		Headers:  headersJSON(h),
	}
}

type requestLine struct {
	Function  string         `json:"function"`
	Subject   string         `json:"subject"`
	BodyB64   string         `json:"body_b64"`
	BodyLen   int            `json:"body_len"`
	TimeoutMs uint32         `json:"timeout_ms"`
	Headers   map[string]any `json:"headers"`
}

func handleMessage(ctx context.Context, w wrpc.IndexWriteCloser, r wrpc.IndexReadCloser) {
	defer func() { _ = w.Close() }()
	m, err := readBrokerMessage(r)
	_ = r.Close()
	if err != nil {
		slog.Warn("failed to decode handle-message parameters", "err", err)
		emit(map[string]any{"decode_error": err.Error(), "headers": headersJSON(headersOf(ctx))})
		return // only the empty end-of-results message is sent
	}
	emit(newMessageLine("", m, headersOf(ctx)))
	var e *string
	if m.Subject == "fail" {
		s := "boom"
		e = &s
	}
	if _, err := w.Write(writeUnitResult(e)); err != nil {
		slog.Warn("failed to write result", "err", err)
	}
}

func consumerPublish(ctx context.Context, w wrpc.IndexWriteCloser, r wrpc.IndexReadCloser) {
	defer func() { _ = w.Close() }()
	m, err := readBrokerMessage(r)
	_ = r.Close()
	if err != nil {
		slog.Warn("failed to decode publish parameters", "err", err)
		emit(map[string]any{"function": "publish", "decode_error": err.Error(), "headers": headersJSON(headersOf(ctx))})
		return
	}
	emit(newMessageLine("publish", m, headersOf(ctx)))
	var e *string
	if m.Subject == "fail" {
		s := "nope"
		e = &s
	}
	if _, err := w.Write(writeUnitResult(e)); err != nil {
		slog.Warn("failed to write result", "err", err)
	}
}

func consumerRequest(ctx context.Context, w wrpc.IndexWriteCloser, r wrpc.IndexReadCloser) {
	defer func() { _ = w.Close() }()
	subject, err := readString(r)
	var body []byte
	var timeoutMs uint32
	if err == nil {
		body, err = readBytes(r)
	}
	if err == nil {
		timeoutMs, err = wrpc.ReadUint32(r)
	}
	_ = r.Close()
	if err != nil {
		slog.Warn("failed to decode request parameters", "err", err)
		emit(map[string]any{"function": "request", "decode_error": err.Error(), "headers": headersJSON(headersOf(ctx))})
		return
	}
	emit(requestLine{
		Function:  "request",
		Subject:   subject,
		BodyB64:   base64.StdEncoding.EncodeToString(body),
		BodyLen:   len(body),
		TimeoutMs: timeoutMs,
		Headers:   headersJSON(headersOf(ctx)),
	})
	var buf bytes.Buffer
	if subject == "fail" {
		buf.WriteByte(1)
		_ = writeString("nope", &buf)
	} else {
		buf.WriteByte(0)
		_ = writeBrokerMessage(&brokerMessage{Subject: "reply." + subject, Body: body}, &buf)
	}
	if _, err := w.Write(buf.Bytes()); err != nil {
		slog.Warn("failed to write result", "err", err)
	}
}

func cmdServe(name string, args []string) error {
	var natsURL, prefix, group string
	var ignoreStdin bool
	fs := newFlagSet(name)
	fs.StringVar(&natsURL, "nats", nats.DefaultURL, "NATS URL")
	fs.StringVar(&prefix, "prefix", "", "own prefix `{lattice}.{id}`, e.g. default.comp1")
	fs.StringVar(&group, "group", "", "queue group (default: the prefix)")
	fs.BoolVar(&ignoreStdin, "ignore-stdin", false, "do not exit on stdin EOF (only on SIGTERM/SIGINT)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected arguments: %v", fs.Args())
	}
	if prefix == "" {
		return usagef("--prefix is required")
	}
	if group == "" {
		group = prefix
	}
	var funcs []serveFunc
	if name == "serve" {
		funcs = []serveFunc{{handlerInstance, "handle-message", handleMessage}}
	} else {
		funcs = []serveFunc{
			{consumerInstance, "publish", consumerPublish},
			{consumerInstance, "request", consumerRequest},
		}
	}
	return serveLoop(natsURL, prefix, group, ignoreStdin, funcs)
}

// ---------------------------------------------------------------------------

const usage = `usage:
  wrpc-interop invoke --nats URL --prefix LATTICE.TARGET --source-id ID [--link-name NAME] [--timeout-sec S]
                      [--close-only] [--check-eof]
                      publish --subject S (--body-b64 B64 | --body-size N) [--reply-to R]
  wrpc-interop invoke ... request --subject S (--body-b64 B64 | --body-size N) --timeout-ms T
  wrpc-interop serve --nats URL --prefix LATTICE.ID [--group G] [--ignore-stdin]
  wrpc-interop serve-consumer --nats URL --prefix LATTICE.ID [--group G] [--ignore-stdin]

WRPC_INTEROP_DEBUG=1 enables the library's debug logging on stderr.
`

func main() {
	level := slog.LevelWarn
	if os.Getenv("WRPC_INTEROP_DEBUG") != "" {
		level = slog.LevelDebug
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})))

	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	var err error
	switch cmd := os.Args[1]; cmd {
	case "invoke":
		err = cmdInvoke(os.Args[2:])
	case "serve", "serve-consumer":
		err = cmdServe(cmd, os.Args[2:])
	case "-h", "--help", "help":
		fmt.Fprint(os.Stdout, usage)
		return
	default:
		err = usagef("unknown subcommand %q", cmd)
	}
	if err != nil {
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(os.Stderr, "wrpc-interop: %v\n%s", err, usage)
			os.Exit(2)
		}
		fmt.Fprintf(os.Stderr, "wrpc-interop: %v\n", err)
		os.Exit(1)
	}
}
