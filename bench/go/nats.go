package main

// A minimal NATS client protocol (the subset the stand-ins use), as bench/natsproto.py.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"sync"
)

// Msg is one delivery (MSG or HMSG).
type Msg struct {
	Subject string
	Sid     int
	Reply   string
	Headers []byte // the header block, nil for MSG
	Payload []byte
}

// Conn is a NATS connection: Read parses, Out collects what to send.
type Conn struct {
	conn       net.Conn
	r          *bufio.Reader
	Out        *bufio.Writer
	MaxPayload int
}

// Dial connects, reads INFO, sends CONNECT and waits for the PONG of the PING after it.
func Dial(addr, name string) (*Conn, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	n := &Conn{conn: c, r: bufio.NewReaderSize(c, 256*1024), Out: bufio.NewWriterSize(c, 256*1024), MaxPayload: 1024 * 1024}
	line, err := n.r.ReadSlice('\n')
	if err != nil {
		return nil, err
	}
	if !bytes.HasPrefix(line, []byte("INFO ")) {
		return nil, fmt.Errorf("expected INFO, got %q", line)
	}
	var info struct {
		MaxPayload int `json:"max_payload"`
	}
	if json.Unmarshal(bytes.TrimSpace(line[5:]), &info) == nil && info.MaxPayload > 0 {
		n.MaxPayload = info.MaxPayload
	}
	opts, _ := json.Marshal(map[string]any{
		"verbose": false, "pedantic": false, "headers": true, "no_responders": true,
		"protocol": 1, "lang": "go-bench", "version": "0", "name": name,
	})
	fmt.Fprintf(n.Out, "CONNECT %s\r\n", opts)
	return n, n.Ping()
}

// Ping sends what is buffered and a PING, and waits for the PONG (no delivery may come
// before it: call it before subscribing or right after, as the stand-ins do).
func (n *Conn) Ping() error {
	n.Out.WriteString("PING\r\n")
	if err := n.Out.Flush(); err != nil {
		return err
	}
	for {
		line, err := n.r.ReadSlice('\n')
		if err != nil {
			return err
		}
		if bytes.HasPrefix(line, []byte("PONG")) {
			return nil
		}
		if bytes.HasPrefix(line, []byte("-ERR")) {
			return fmt.Errorf("server: %s", bytes.TrimSpace(line))
		}
	}
}

// Sub appends a SUB.
func (n *Conn) Sub(subject string, sid int, queue string) {
	if queue != "" {
		fmt.Fprintf(n.Out, "SUB %s %s %d\r\n", subject, queue, sid)
	} else {
		fmt.Fprintf(n.Out, "SUB %s %d\r\n", subject, sid)
	}
}

// Pub appends a PUB.
func (n *Conn) Pub(subject, reply string, payload []byte) {
	w := n.Out
	w.WriteString("PUB ")
	w.WriteString(subject)
	w.WriteByte(' ')
	if reply != "" {
		w.WriteString(reply)
		w.WriteByte(' ')
	}
	w.WriteString(strconv.Itoa(len(payload)))
	w.WriteString("\r\n")
	w.Write(payload)
	w.WriteString("\r\n")
}

// HPub appends an HPUB.
func (n *Conn) HPub(subject, reply string, headers, payload []byte) {
	fmt.Fprintf(n.Out, "HPUB %s %s %d %d\r\n", subject, reply, len(headers), len(headers)+len(payload))
	n.Out.Write(headers)
	n.Out.Write(payload)
	n.Out.WriteString("\r\n")
}

// Serve reads until the connection ends: each chunk read is parsed into deliveries, each
// passed to `handle` under `mu`, then what they produced is written in one go (as the
// Python stand-ins write once per chunk read). PINGs are answered.
func (n *Conn) Serve(mu *sync.Mutex, handle func(*Msg)) error {
	buf := make([]byte, 0, 256*1024)
	chunk := make([]byte, 256*1024)
	// What the reader already holds past the handshake comes first.
	if held := n.r.Buffered(); held > 0 {
		peeked, _ := n.r.Peek(held)
		buf = append(buf, peeked...)
		n.r.Discard(held)
	}
	for {
		mu.Lock()
		pos, err := n.parse(buf, handle)
		if err == nil {
			err = n.Out.Flush()
		}
		mu.Unlock()
		if err != nil {
			return err
		}
		buf = append(buf[:0], buf[pos:]...)
		got, err := n.conn.Read(chunk)
		if err != nil {
			return err
		}
		buf = append(buf, chunk[:got]...)
	}
}

// parse handles every whole operation in buf and returns where the first partial one starts.
func (n *Conn) parse(buf []byte, handle func(*Msg)) (int, error) {
	pos := 0
	for {
		eol := bytes.Index(buf[pos:], []byte("\r\n"))
		if eol < 0 {
			return pos, nil
		}
		line := buf[pos : pos+eol]
		next := pos + eol + 2
		switch {
		case bytes.HasPrefix(line, []byte("MSG ")), bytes.HasPrefix(line, []byte("HMSG ")):
			m, hlen, total, err := header(line)
			if err != nil {
				return pos, err
			}
			if len(buf) < next+total+2 {
				return pos, nil
			}
			body := append([]byte(nil), buf[next:next+total]...)
			if hlen > 0 {
				m.Headers = body[:hlen]
			}
			m.Payload = body[hlen:]
			next += total + 2
			handle(m)
		case bytes.HasPrefix(line, []byte("PING")):
			n.Out.WriteString("PONG\r\n")
		case bytes.HasPrefix(line, []byte("-ERR")):
			return pos, fmt.Errorf("server: %s", line)
		}
		pos = next
	}
}

// header parses a MSG/HMSG line: the delivery without its bytes, the header and total sizes.
func header(line []byte) (*Msg, int, int, error) {
	fields := bytes.Fields(line)
	headered := string(fields[0]) == "HMSG"
	args := fields[1:]
	sizes := 1
	if headered {
		sizes = 2
	}
	if len(args) != 2+sizes && len(args) != 3+sizes {
		return nil, 0, 0, fmt.Errorf("bad delivery line %q", line)
	}
	m := &Msg{Subject: string(args[0])}
	var err error
	if m.Sid, err = strconv.Atoi(string(args[1])); err != nil {
		return nil, 0, 0, fmt.Errorf("bad sid in %q", line)
	}
	if len(args) == 3+sizes {
		m.Reply = string(args[2])
	}
	total, err := strconv.Atoi(string(args[len(args)-1]))
	if err != nil {
		return nil, 0, 0, fmt.Errorf("bad size in %q", line)
	}
	hlen := 0
	if headered {
		if hlen, err = strconv.Atoi(string(args[len(args)-2])); err != nil || hlen > total {
			return nil, 0, 0, fmt.Errorf("bad header size in %q", line)
		}
	}
	return m, hlen, total, nil
}

// ParseHeaders: a header block -> (status, headers); status "" for `NATS/1.0`, "503" for
// `NATS/1.0 503`.
func ParseHeaders(block []byte) (string, map[string]string) {
	lines := bytes.Split(block, []byte("\r\n"))
	status := ""
	if f := bytes.Fields(bytes.TrimPrefix(lines[0], []byte("NATS/1.0"))); len(f) > 0 {
		status = string(f[0])
	}
	headers := map[string]string{}
	for _, l := range lines[1:] {
		name, value, ok := bytes.Cut(l, []byte(":"))
		if ok {
			headers[string(bytes.TrimSpace(name))] = string(bytes.TrimSpace(value))
		}
	}
	return status, headers
}

// EncodeHeaders: a header block for HPUB, names in the order given.
func EncodeHeaders(names []string, headers map[string]string) []byte {
	var b bytes.Buffer
	b.WriteString("NATS/1.0\r\n")
	for _, name := range names {
		fmt.Fprintf(&b, "%s: %s\r\n", name, headers[name])
	}
	b.WriteString("\r\n")
	return b.Bytes()
}
