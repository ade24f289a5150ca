package sidecar

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/quotaops/quota-operator/internal/config"
	"github.com/quotaops/quota-operator/internal/limiter"
)

// costSpec is where a response says what its request cost (a limit's or
// quota's costFrom), ready to read.
type costSpec struct {
	header  string   // canonical form; "" with a pointer
	pointer []string // the JSON pointer's tokens
	// needle is the pointer's last token as a JSON string: an event that
	// lacks it cannot hold the cost, and is not decoded. Nil for an array
	// index, which JSON writes bare.
	needle []byte
}

func newCostSpec(c *config.CostFrom) (*costSpec, error) {
	if c == nil {
		return nil, nil
	}
	s := &costSpec{header: c.Header}
	if c.JSONPointer == "" {
		return s, nil
	}
	tokens, err := config.ParsePointer(c.JSONPointer)
	if err != nil {
		return nil, err
	}
	s.pointer = tokens
	if last := tokens[len(tokens)-1]; strings.Trim(last, "0123456789") != "" {
		s.needle, _ = json.Marshal(last)
	}
	return s, nil
}

// Why a response's cost is unknown: the reason label of
// quota_cost_unknown_total. The reserve stays charged.
const (
	CostMissing   = "missing"    // no such header, field or usage event
	CostMalformed = "malformed"  // not an integer from 0 to 2^53-1
	CostOverBound = "over_bound" // a JSON body over maxCostBody
	CostNotJSON   = "not_json"   // a body that is neither JSON nor an event stream, or does not parse
	CostCut       = "stream_cut" // the body ended early
)

// maxCostBody bounds what is kept of a JSON body, or of one event of a
// stream, to read its cost.
const maxCostBody = 1 << 20

// parseUnits reads a cost: a non-negative integer within the limiter's
// bound.
func parseUnits(s string) (int64, string) {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n < 0 || n > limiter.MaxValue {
		return 0, CostMalformed
	}
	return n, ""
}

// headerUnits reads a cost from a header's values: exactly one.
func headerUnits(values []string) (int64, string) {
	switch len(values) {
	case 0:
		return 0, CostMissing
	case 1:
		return parseUnits(values[0])
	}
	return 0, CostMalformed
}

// pointerUnits reads the cost at tokens in a JSON document.
func pointerUnits(doc []byte, tokens []string) (int64, string) {
	d := json.NewDecoder(bytes.NewReader(doc))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return 0, CostNotJSON
	}
	for _, t := range tokens {
		switch node := v.(type) {
		case map[string]any:
			var ok bool
			if v, ok = node[t]; !ok {
				return 0, CostMissing
			}
		case []any:
			i, err := strconv.Atoi(t)
			if err != nil || i < 0 || i >= len(node) || t != strconv.Itoa(i) {
				return 0, CostMissing
			}
			v = node[i]
		default:
			return 0, CostMissing
		}
	}
	n, ok := v.(json.Number)
	if !ok {
		return 0, CostMalformed
	}
	return parseUnits(n.String())
}

// costCharge is one applied limit whose cost its response gives.
type costCharge struct {
	limit int // the index in applied, and in the decision's limits
	spec  *costSpec
}

// pendingCost is an allowed request whose limits settle from its
// response. out is the response's header map, where the sidecar's
// rate-limit headers are when headers is true. failedOpen: the store did
// not decide, so nothing is settled or counted, but the cost still does
// not reach the client.
type pendingCost struct {
	enf        *Enforcer
	d          limiter.Decision
	applied    []Applied
	charges    []costCharge
	out        http.Header
	headers    bool
	failedOpen bool
}

// costKey is the request context's key of its *pendingCost.
type costKey struct{}

// newPendingCost is the settlement a request let through awaits, or nil
// when none of applied takes its cost from the response.
func newPendingCost(enf *Enforcer, v Verdict, applied []Applied, out http.Header, headers bool) *pendingCost {
	var charges []costCharge
	for i, a := range applied {
		if a.cost != nil {
			charges = append(charges, costCharge{limit: i, spec: a.cost})
		}
	}
	if len(charges) == 0 {
		return nil
	}
	return &pendingCost{enf: enf, d: v.Decision, applied: applied, charges: charges, out: out, headers: headers, failedOpen: v.StoreFailed}
}

// readResponse settles what the response's headers say at once, before
// they go out, so that RateLimit shows what is left after it; it removes
// the cost headers; what the body or the trailers say is read as the body
// passes (costBody).
func (p *pendingCost) readResponse(resp *http.Response) {
	var known []limiter.Charge
	var trailer, body []costCharge
	for _, c := range p.charges {
		_, declared := resp.Trailer[c.spec.header]
		switch {
		case c.spec.header == "":
			body = append(body, c)
		case declared:
			trailer = append(trailer, c)
		default:
			units, why := headerUnits(resp.Header.Values(c.spec.header))
			if why != "" {
				p.unknown(c, why)
				continue
			}
			known = append(known, limiter.Charge{Limit: c.limit, Units: units})
		}
	}
	// Only once every limit has read it: two may name the same header.
	for _, c := range p.charges {
		if c.spec.header != "" {
			resp.Header.Del(c.spec.header)
			delete(resp.Trailer, c.spec.header) // not announced to the client
		}
	}
	if len(known) > 0 {
		p.settle(known)
		if p.headers && !p.failedOpen {
			setHeaders(p.out, p.applied, p.d.After(known))
		}
	}
	body = p.bodyKind(resp, body)
	if len(trailer) > 0 || len(body) > 0 {
		resp.Body = &costBody{ReadCloser: resp.Body, p: p, resp: resp, trailer: trailer, body: body,
			stream: isEventStream(resp), left: resp.ContentLength}
	}
}

// bodyKind keeps the body charges that the response's type can answer:
// a JSON body within maxCostBody, or an event stream.
func (p *pendingCost) bodyKind(resp *http.Response, body []costCharge) []costCharge {
	if len(body) == 0 || isEventStream(resp) {
		return body
	}
	why := ""
	switch {
	case !isJSON(resp):
		why = CostNotJSON
	case resp.ContentLength > maxCostBody:
		why = CostOverBound
	default:
		return body
	}
	for _, c := range body {
		p.unknown(c, why)
	}
	return nil
}

func mediaType(resp *http.Response) string {
	t, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	return t
}

func isJSON(resp *http.Response) bool {
	t := mediaType(resp)
	return t == "application/json" || strings.HasSuffix(t, "+json")
}

func isEventStream(resp *http.Response) bool { return mediaType(resp) == "text/event-stream" }

// settle charges what the response said; the enforcer retries it in the
// background if the store does not answer at once.
func (p *pendingCost) settle(charges []limiter.Charge) {
	if !p.failedOpen {
		p.enf.settle(p.d, p.applied, charges)
	}
}

func (p *pendingCost) unknown(c costCharge, why string) {
	if !p.failedOpen {
		p.enf.costUnknown(p.applied[c.limit], why)
	}
}

// costBody passes a response body through unchanged, reading the cost
// from it (a JSON document, or an event stream's events as they pass) or
// from the trailers that follow it, and settles before the client can
// have seen the whole response: when the last byte of a body of known
// length is read, else at its end.
type costBody struct {
	io.ReadCloser
	p       *pendingCost
	resp    *http.Response
	trailer []costCharge
	body    []costCharge
	stream  bool
	left    int64 // the body's bytes yet to come; -1 unknown
	done    bool

	doc    []byte // a JSON body so far
	over   bool   // it passed maxCostBody
	events eventScanner
}

func (b *costBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if b.done {
		return n, err
	}
	b.scan(p[:n])
	if b.left >= 0 {
		b.left -= int64(n)
	}
	switch {
	case errors.Is(err, io.EOF):
		b.finish(false)
	case err != nil:
		b.finish(true)
	case b.left == 0 && len(b.trailer) == 0:
		b.finish(false) // before the last bytes go out
	}
	return n, err
}

// Close settles nothing more: a body not read to its end was cut.
func (b *costBody) Close() error {
	if !b.done {
		b.finish(true)
	}
	return b.ReadCloser.Close()
}

func (b *costBody) scan(chunk []byte) {
	if len(b.body) == 0 || len(chunk) == 0 {
		return
	}
	if b.stream {
		b.events.feed(chunk, b.body)
		return
	}
	if b.over = b.over || len(b.doc)+len(chunk) > maxCostBody; b.over {
		b.doc = nil
		return
	}
	b.doc = append(b.doc, chunk...)
}

// finish reads every cost the response gave and settles them; cut: the
// body ended before its end, and every cost it owed is unknown.
func (b *costBody) finish(cut bool) {
	b.done = true
	var known []limiter.Charge
	add := func(c costCharge, units int64, why string) {
		switch {
		case cut:
			b.p.unknown(c, CostCut)
		case why != "":
			b.p.unknown(c, why)
		default:
			known = append(known, limiter.Charge{Limit: c.limit, Units: units})
		}
	}
	for _, c := range b.trailer {
		units, why := headerUnits(b.resp.Trailer.Values(c.spec.header))
		add(c, units, why)
	}
	for _, c := range b.trailer {
		delete(b.resp.Trailer, c.spec.header) // the proxy copies the rest
	}
	if b.stream {
		b.events.end(b.body)
	}
	for i, c := range b.body {
		units, why := b.bodyUnits(i, c)
		add(c, units, why)
	}
	b.doc = nil
	if len(known) > 0 {
		b.p.settle(known)
	}
}

func (b *costBody) bodyUnits(i int, c costCharge) (int64, string) {
	switch {
	case b.stream:
		return b.events.units(i)
	case b.over:
		return 0, CostOverBound
	}
	return pointerUnits(b.doc, c.spec.pointer)
}

// eventScanner reads a text/event-stream as it passes, keeping, for each
// charge, the cost in the last event whose data holds its pointer.
type eventScanner struct {
	line    []byte // the line so far
	data    []byte // the event's data lines so far, joined by \n
	skip    bool   // the line or event passed maxCostBody
	found   []int64
	why     []string
	started bool
}

func (s *eventScanner) feed(chunk []byte, charges []costCharge) {
	for len(chunk) > 0 {
		i := bytes.IndexByte(chunk, '\n')
		if i < 0 {
			s.appendLine(chunk)
			return
		}
		s.appendLine(chunk[:i])
		s.endLine(charges)
		chunk = chunk[i+1:]
	}
}

func (s *eventScanner) appendLine(b []byte) {
	if s.skip = s.skip || len(s.line)+len(b) > maxCostBody; s.skip {
		s.line = s.line[:0]
		return
	}
	s.line = append(s.line, b...)
}

// endLine takes a whole line: a data field adds to the event, a blank
// line dispatches it.
func (s *eventScanner) endLine(charges []costCharge) {
	line := bytes.TrimSuffix(s.line, []byte{'\r'})
	s.line = s.line[:0]
	switch {
	case len(line) == 0:
		s.dispatch(charges)
	case s.skip:
	case bytes.HasPrefix(line, []byte("data:")):
		v := bytes.TrimPrefix(line[len("data:"):], []byte{' '})
		if len(s.data) > 0 {
			s.data = append(s.data, '\n')
		}
		if s.skip = len(s.data)+len(v) > maxCostBody; !s.skip {
			s.data = append(s.data, v...)
		}
	}
}

// dispatch reads the event's data for each charge's pointer.
func (s *eventScanner) dispatch(charges []costCharge) {
	if !s.started {
		s.found, s.why, s.started = make([]int64, len(charges)), make([]string, len(charges)), true
		for i := range s.why {
			s.why[i] = CostMissing
		}
	}
	data, skip := s.data, s.skip
	s.data, s.skip = s.data[:0], false
	if skip || len(data) == 0 || data[0] != '{' && data[0] != '[' {
		return // such as OpenAI's closing "[DONE]"
	}
	for i, c := range charges {
		if c.spec.needle != nil && !bytes.Contains(data, c.spec.needle) {
			continue
		}
		if units, why := pointerUnits(data, c.spec.pointer); why != CostMissing && why != CostNotJSON {
			s.found[i], s.why[i] = units, why
		}
	}
}

// end dispatches an event the stream ended without a blank line after.
func (s *eventScanner) end(charges []costCharge) {
	if len(s.line) > 0 {
		s.endLine(charges)
	}
	s.dispatch(charges)
}

func (s *eventScanner) units(i int) (int64, string) {
	if !s.started {
		return 0, CostMissing
	}
	return s.found[i], s.why[i]
}
