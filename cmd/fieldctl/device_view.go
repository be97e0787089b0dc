package main

// How a device's records read for a person (fieldctl device list and show):
// kinds, statuses, categories and levels with their Chinese labels by
// default (-lang en: the English words), voided records and conflicts
// marked. --json keeps the machine names and adds the labels apart.

import (
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/fieldsync/fieldsync/domain"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/syncer"
)

// deviceItemJSON is a device's record in --json: the record as HQ's export
// prints it, its state, and what a correction or a status change left.
type deviceItemJSON struct {
	recordJSON
	// Voided says the record was voided: it counts nowhere.
	Voided  bool          `json:"voided"`
	Void    *voidJSON     `json:"void,omitempty"`
	History []historyJSON `json:"history,omitempty"`
	// Labels names, in the -lang language, what a person reads: "kind",
	// and each enum field's value by the field's name (status, category,
	// level ...).
	Labels map[string]string `json:"labels"`
}

type voidJSON struct {
	Reason   string `json:"reason"`
	HLC      string `json:"hlc"`
	AuthorID string `json:"author_id"`
	AtMs     int64  `json:"at_ms"`
}

type historyJSON struct {
	From     string `json:"from"`
	To       string `json:"to"`
	HLC      string `json:"hlc"`
	AuthorID string `json:"author_id"`
	AtMs     int64  `json:"at_ms"`
}

func (c *cli) deviceItemJSON(it *syncer.Item) *deviceItemJSON {
	r := it.Record
	out := &deviceItemJSON{recordJSON: *itemJSON(it), Voided: r.GetVoid() != nil, Labels: map[string]string{"kind": domain.KindLabel(c.lang, r.GetKind())}}
	if v := r.GetVoid(); v != nil {
		out.Void = &voidJSON{Reason: v.GetReason(), HLC: v.GetHlc(), AuthorID: v.GetAuthorId(), AtMs: v.GetAtMs()}
	}
	for _, h := range r.GetHistory() {
		out.History = append(out.History, historyJSON{From: h.GetFrom(), To: h.GetTo(), HLC: h.GetHlc(), AuthorID: h.GetAuthorId(), AtMs: h.GetAtMs()})
	}
	if s := domain.SpecOf(r.GetKind()); s != nil {
		for _, f := range s.Fields {
			if v := r.GetFields()[f.Name].GetValue(); f.Format == domain.Enum && v != "" {
				out.Labels[f.Name] = domain.ValueLabel(c.lang, r.GetKind(), f.Name, v)
			}
		}
	}
	return out
}

// stateLabel is a record's sync state as a person reads it, marked when
// the record is voided.
func (c *cli) stateLabel(it *syncer.Item) string {
	zh := map[string]string{"synced": "已同步", "pending": "待同步", "rejected": "被拒绝", "conflict": domain.Label(domain.LangZH, "conflict")}
	s := it.State
	if l, ok := zh[s]; ok && c.lang != domain.LangEN {
		s = l
	}
	if it.Voided() {
		s = c.label("void") + " " + s
	}
	return s
}

// reasonText is why a record is rejected, in conflict or void.
func (c *cli) reasonText(it *syncer.Item) string {
	reason := it.Reason
	if it.State == "conflict" && c.lang != domain.LangEN {
		reason = fmt.Sprintf("%d 处冲突待处理（fieldctl device conflicts）", len(it.Record.GetConflicts()))
	}
	if v := it.Record.GetVoid(); v != nil {
		reason = strings.TrimSpace(c.ui("void: ", "作废原因：") + v.GetReason() + " " + reason)
	}
	return reason
}

func (c *cli) writeList(w io.Writer, items []*syncer.Item) error {
	t := newTable(c.ui("ID", "编号"), c.ui("KIND", "类型"), c.ui("STATE", "状态"), c.ui("SUMMARY", "摘要"), c.ui("REASON", "说明"))
	for _, it := range items {
		kind := it.Kind
		if c.lang != domain.LangEN {
			kind = domain.KindLabel(c.lang, it.Record.GetKind())
		}
		t.add(it.ID, kind, c.stateLabel(it), c.summary(it.Record), c.reasonText(it))
	}
	return t.write(w)
}

// summary is a record's one-line description in a listing.
func (c *cli) summary(r *pb.Record) string {
	f := func(name string) string { return r.GetFields()[name].GetValue() }
	v := func(name string) string { return c.value(r.GetKind(), name, f(name)) }
	join := func(parts ...string) string {
		var out []string
		for _, p := range parts {
			if p != "" && p != "[]" && p != ":" {
				out = append(out, p)
			}
		}
		return strings.Join(out, " ")
	}
	switch r.GetKind() {
	case pb.Kind_KIND_HOUSEHOLD:
		return clipText(join(f("head"), f("address")), 48)
	case pb.Kind_KIND_VISIT:
		return clipText(join(f("household_id"), f("visited_on"), f("needs")), 48)
	case pb.Kind_KIND_DISPUTE:
		return clipText(join("["+v("status")+"]", f("title")), 48)
	case pb.Kind_KIND_EVENT:
		return clipText(join(f("occurred_on"), v("type")+":", f("subject")), 48)
	case pb.Kind_KIND_NEED:
		return clipText(join("["+v("status")+"]", v("category")+":", f("summary"), f("household_id")), 48)
	case pb.Kind_KIND_PROJECT:
		return clipText(join("["+v("status")+"]", f("title"), f("planned_on")), 48)
	}
	return ""
}

// writeRecordIn prints every part of a record for a person to read, in
// the -lang language: with English the field names alone, as before;
// with Chinese each field's label beside its name (the name is what
// settle and the flags take).
func (c *cli) writeRecordIn(w io.Writer, it *syncer.Item) error {
	r := it.Record
	var b strings.Builder
	t := newTable()
	t.add("id", r.GetId())
	kind := domain.KindName(r.GetKind())
	if c.lang != domain.LangEN {
		kind += " " + domain.KindLabel(c.lang, r.GetKind())
	}
	t.add("kind", kind)
	t.add("state", c.stateLabel(it))
	if reason := c.reasonText(it); reason != "" {
		t.add("reason", reason)
	}
	t.add("version", fmt.Sprint(r.GetVersion()))
	t.add("author", r.GetAuthorId())
	t.add("device", r.GetOriginDeviceId())
	t.add("buckets", strings.Join(r.GetBuckets(), ", "))
	if v := r.GetVoid(); v != nil {
		t.add("void", fmt.Sprintf("%s: %s (%s, %s)", c.label("void"), v.GetReason(), v.GetAuthorId(), serverTime(v.GetAtMs(), v.GetHlc())))
	}
	if err := t.write(&b); err != nil {
		return err
	}
	// Fields in the kind's own order, then any the spec does not know.
	b.WriteString("\nfields:\n")
	var names []string
	seen := map[string]bool{}
	if s := domain.SpecOf(r.GetKind()); s != nil {
		for _, f := range s.Fields {
			if _, ok := r.GetFields()[f.Name]; ok {
				names = append(names, f.Name)
				seen[f.Name] = true
			}
		}
	}
	var extra []string
	for name := range r.GetFields() {
		if !seen[name] {
			extra = append(extra, name)
		}
	}
	sort.Strings(extra)
	names = append(names, extra...)
	width, lwidth := 0, 0
	for _, n := range names {
		width = max(width, len(n))
		lwidth = max(lwidth, displayWidth(domain.FieldLabel(c.lang, r.GetKind(), n)))
	}
	for _, name := range names {
		value := c.value(r.GetKind(), name, r.GetFields()[name].GetValue())
		if c.lang == domain.LangEN {
			fmt.Fprintf(&b, "  %-*s  %s\n", width, domain.EscapeText(name), indent(escapeLines(value), width+4))
			continue
		}
		l := domain.FieldLabel(c.lang, r.GetKind(), name)
		fmt.Fprintf(&b, "  %-*s  %s%s  %s\n", width, domain.EscapeText(name), l, strings.Repeat(" ", lwidth-displayWidth(l)),
			indent(escapeLines(value), width+lwidth+6))
	}
	if len(r.GetHistory()) > 0 {
		fmt.Fprintf(&b, "\n%s:\n", c.ui("history", "history "+domain.Label(c.lang, "history")))
		for _, h := range r.GetHistory() {
			from := c.value(r.GetKind(), "status", h.GetFrom())
			if from == "" {
				from = "-"
			}
			fmt.Fprintf(&b, "  %s  %s -> %s  %s\n", serverTime(h.GetAtMs(), h.GetHlc()), from, c.value(r.GetKind(), "status", h.GetTo()), domain.EscapeText(h.GetAuthorId()))
		}
	}
	if len(r.GetEntries()) > 0 {
		b.WriteString("\nentries:\n")
		for _, e := range r.GetEntries() {
			field := e.GetField()
			if c.lang != domain.LangEN {
				field += " " + domain.FieldLabel(c.lang, r.GetKind(), field)
			}
			fmt.Fprintf(&b, "  %s  %s  %s\n    %s\n", domain.EscapeText(field), hlcTime(e.GetHlc()), domain.EscapeText(e.GetAuthorId()), indent(escapeLines(e.GetText()), 4))
		}
	}
	if len(r.GetConflicts()) > 0 {
		fmt.Fprintf(&b, "\nconflicts (%s; the field holds the winner; these lost, for a person to settle: fieldctl device settle %s FIELD --mine | --theirs | --value V):\n",
			c.label("conflict"), r.GetId())
		for _, cf := range r.GetConflicts() {
			fmt.Fprintf(&b, "  %s  %s  %s  (%s)\n    %s\n", domain.EscapeText(cf.GetField()), hlcTime(cf.GetHlc()), domain.EscapeText(cf.GetAuthorId()),
				domain.EscapeText(cf.GetReason()), indent(escapeLines(c.value(r.GetKind(), cf.GetField(), cf.GetValue())), 4))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// serverTime is when the server applied a change, or the device's clock
// with "(on this device)" until the server's record comes back.
func serverTime(atMs int64, hlc string) string {
	if atMs != 0 {
		return fmtTime(atMs)
	}
	return hlcTime(hlc) + " (on this device)"
}
