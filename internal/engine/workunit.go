package engine

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/oklog/ulid/v2"

	"engram/internal/jsonx"
)

// UnitInput is a work unit as a client sends it (POST /v1/workunits and each
// element of a batch).
type UnitInput struct {
	ID            string              `json:"id"`
	ContextID     string              `json:"context_id"`
	AgentID       string              `json:"agent_id"`
	Type          string              `json:"type"`
	Metadata      map[string]string   `json:"metadata"`
	Payload       json.RawMessage     `json:"payload"`
	PayloadBase64 *string             `json:"payload_base64"`
	Relationships []RelationshipInput `json:"relationships"`
	// Set by the server. Accepted so that a unit read back can be sent again
	// as an idempotent retry, and ignored.
	Seq       json.RawMessage `json:"seq"`
	Timestamp json.RawMessage `json:"timestamp"`
}

// RelationshipInput is one relationship of a UnitInput.
type RelationshipInput struct {
	TargetID string            `json:"target_id"`
	Type     string            `json:"type"`
	Metadata map[string]string `json:"metadata"`
}

// BatchInput is the body of POST /v1/workunits/batch.
type BatchInput struct {
	Units []UnitInput `json:"units"`
}

// unitHead is the part of a stored unit that lookups need.
type unitHead struct {
	Seq       uint64 `json:"seq"`
	ContextID string `json:"context_id"`
}

// preparedUnit is a validated UnitInput with its JSON encoded around the
// two values only the writer knows: the seq and the timestamp.
type preparedUnit struct {
	id        ulid.ULID
	clientID  bool
	contextID string
	agentID   string
	typ       byte
	rels      []preparedRel
	head      []byte // {"id":"…","seq":
	mid       []byte // ,"context_id":…,"timestamp":"
	tail      []byte // ","metadata":…}
	in        *UnitInput
}

type preparedRel struct {
	target  ulid.ULID
	typ     byte
	inBatch bool
}

// prepare validates in (field names prefixed with prefix) and encodes it.
func prepare(prefix string, in *UnitInput) (*preparedUnit, error) {
	p := &preparedUnit{in: in, contextID: in.ContextID, agentID: in.AgentID}
	if in.ID != "" {
		id, err := ParseID(prefix+"id", in.ID)
		if err != nil {
			return nil, err
		}
		p.id, p.clientID = id, true
	} else {
		p.id = ulid.Make()
	}
	if err := checkName(prefix+"context_id", in.ContextID); err != nil {
		return nil, err
	}
	if err := checkName(prefix+"agent_id", in.AgentID); err != nil {
		return nil, err
	}
	typ, err := unitTypes.check(prefix+"type", in.Type)
	if err != nil {
		return nil, err
	}
	p.typ = typ
	if err := checkMetadata(prefix+"metadata", in.Metadata); err != nil {
		return nil, err
	}
	if bytes.Equal(in.Payload, []byte("null")) {
		in.Payload = nil
	}
	if in.Payload != nil && !utf8.Valid(in.Payload) {
		return nil, invalidf("%spayload: not valid UTF-8", prefix)
	}
	if in.Payload != nil && in.PayloadBase64 != nil {
		return nil, invalidf("%spayload_base64: send either payload or payload_base64, not both", prefix)
	}
	if in.PayloadBase64 != nil {
		if _, err := base64.StdEncoding.DecodeString(*in.PayloadBase64); err != nil {
			return nil, invalidf("%spayload_base64: not standard base64: %v", prefix, err)
		}
	}
	if len(in.Relationships) > MaxRelationships {
		return nil, invalidf("%srelationships: %d, at most %d", prefix, len(in.Relationships), MaxRelationships)
	}
	p.rels = make([]preparedRel, len(in.Relationships))
	for j, r := range in.Relationships {
		f := fmt.Sprintf("%srelationships[%d].", prefix, j)
		t, err := ParseID(f+"target_id", r.TargetID)
		if err != nil {
			return nil, err
		}
		if t == p.id {
			return nil, invalidf("%starget_id: a unit cannot relate to itself", f)
		}
		rt, err := relTypes.check(f+"type", r.Type)
		if err != nil {
			return nil, err
		}
		if err := checkMetadata(f+"metadata", r.Metadata); err != nil {
			return nil, err
		}
		p.rels[j] = preparedRel{target: t, typ: rt}
	}
	p.encode()
	return p, nil
}

func (p *preparedUnit) encode() {
	in := p.in
	// One buffer for the three parts, sized for the common case.
	size := 128 + len(p.contextID) + len(p.agentID) + len(in.Payload) + 160*len(p.rels)
	for k, v := range in.Metadata {
		size += len(k) + len(v) + 6
	}
	if in.PayloadBase64 != nil {
		size += len(*in.PayloadBase64)
	}
	buf := make([]byte, 0, size)
	p.head = append(buf, `{"id":"`...)
	p.head = append(p.head, p.id.String()...)
	p.head = append(p.head, `","seq":`...)

	p.mid = append(p.head[len(p.head):len(p.head)], `,"context_id":`...)
	p.mid = jsonx.AppendString(p.mid, p.contextID)
	p.mid = append(p.mid, `,"agent_id":`...)
	p.mid = jsonx.AppendString(p.mid, p.agentID)
	p.mid = append(p.mid, `,"type":"`...)
	p.mid = append(p.mid, unitTypes.name(p.typ)...)
	p.mid = append(p.mid, `","timestamp":"`...)

	t := append(p.mid[len(p.mid):len(p.mid)], `","metadata":`...)
	t = appendMetadata(t, in.Metadata)
	switch {
	case in.Payload != nil:
		t = append(t, `,"payload":`...)
		t = jsonx.Compact(t, in.Payload)
	case in.PayloadBase64 != nil:
		t = append(t, `,"payload_base64":`...)
		t = jsonx.AppendString(t, *in.PayloadBase64)
	}
	t = append(t, `,"relationships":[`...)
	for j, r := range p.rels {
		if j > 0 {
			t = append(t, ',')
		}
		t = append(t, `{"target_id":"`...)
		t = append(t, r.target.String()...)
		t = append(t, `","type":"`...)
		t = append(t, relTypes.name(r.typ)...)
		t = append(t, `","metadata":`...)
		t = appendMetadata(t, in.Relationships[j].Metadata)
		t = append(t, '}')
	}
	p.tail = append(t, "]}"...)
}

// size is about the length of the unit's JSON.
func (p *preparedUnit) size() int { return len(p.head) + len(p.mid) + len(p.tail) + 64 }

// record is the public JSON of the unit.
func (p *preparedUnit) record(seq uint64, timestamp string) []byte {
	return p.appendRecord(make([]byte, 0, p.size()), seq, timestamp)
}

// appendRecord appends the public JSON of the unit to b.
func (p *preparedUnit) appendRecord(b []byte, seq uint64, timestamp string) []byte {
	b = append(b, p.head...)
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, p.mid...)
	b = append(b, timestamp...)
	return append(b, p.tail...)
}

func appendMetadata(dst []byte, m map[string]string) []byte {
	if len(m) == 0 {
		return append(dst, "{}"...)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	dst = append(dst, '{')
	for i, k := range keys {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = jsonx.AppendString(dst, k)
		dst = append(dst, ':')
		dst = jsonx.AppendString(dst, m[k])
	}
	return append(dst, '}')
}

// sameContent reports whether a stored unit holds the same client-set
// content as p: context, agent, type, metadata, payload and relationships,
// compared as canonical JSON. Server-set fields are ignored.
func (p *preparedUnit) sameContent(stored []byte) (bool, error) {
	var s UnitInput
	if err := json.Unmarshal(stored, &s); err != nil {
		return false, fmt.Errorf("engine: decode stored unit: %w", err)
	}
	a, err := canonicalContent(&s)
	if err != nil {
		return false, err
	}
	mine := *p.in
	mine.Relationships = slices.Clone(mine.Relationships)
	for j := range mine.Relationships {
		mine.Relationships[j].TargetID = p.rels[j].target.String()
	}
	b, err := canonicalContent(&mine)
	if err != nil {
		return false, err
	}
	return bytes.Equal(a, b), nil
}

func canonicalContent(u *UnitInput) ([]byte, error) {
	c := *u
	c.ID, c.Seq, c.Timestamp = "", nil, nil
	if len(c.Metadata) == 0 {
		c.Metadata = nil
	}
	if bytes.Equal(c.Payload, []byte("null")) {
		c.Payload = nil
	}
	if c.Payload != nil {
		p, err := jsonx.Canonical(c.Payload)
		if err != nil {
			return nil, fmt.Errorf("engine: canonical payload: %w", err)
		}
		c.Payload = p
	}
	c.Relationships = slices.Clone(c.Relationships)
	for j := range c.Relationships {
		if len(c.Relationships[j].Metadata) == 0 {
			c.Relationships[j].Metadata = nil
		}
	}
	if len(c.Relationships) == 0 {
		c.Relationships = nil
	}
	return json.Marshal(&c)
}
