package main

import (
	"encoding/json"
	"fmt"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/fieldsync/fieldsync/domain"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// changeKind names what a change carries: a record's kind ("household",
// "visit"...), or one of the org kinds (domain.ChangeUnit, ChangePerson,
// ChangeLink, ChangeDevice, ChangeRefused); "unknown" for a body this
// build does not know.
func changeKind(ch *pb.Change) string {
	switch {
	case ch.GetRecord() != nil:
		return domain.KindName(ch.GetRecord().GetKind())
	case ch.GetUnit() != nil:
		return domain.ChangeUnit
	case ch.GetPerson() != nil:
		return domain.ChangePerson
	case ch.GetLink() != nil:
		return domain.ChangeLink
	case ch.GetDevice() != nil:
		return domain.ChangeDevice
	case ch.GetRefused() != nil:
		return domain.ChangeRefused
	}
	return "unknown"
}

// orgJSON is a change's org body as --json prints it (protojson, field
// names as in the .proto); nil for a record's change.
func orgJSON(ch *pb.Change) (json.RawMessage, error) {
	var m proto.Message
	switch {
	case ch.GetUnit() != nil:
		m = ch.GetUnit()
	case ch.GetPerson() != nil:
		m = ch.GetPerson()
	case ch.GetLink() != nil:
		m = ch.GetLink()
	case ch.GetDevice() != nil:
		m = ch.GetDevice()
	case ch.GetRefused() != nil:
		m = ch.GetRefused()
	default:
		return nil, nil
	}
	b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
	return json.RawMessage(b), err
}

// orgLine is the end of a change's text line after its number, id and
// subject: what it is about, its kind and what changed (escaped, as any
// text from the stream).
func orgLine(ch *pb.Change) string {
	e := domain.EscapeText
	switch k := changeKind(ch); k {
	case domain.ChangeUnit:
		u := ch.GetUnit().GetUnit()
		return fmt.Sprintf("%s unit %s", e(u.GetId()), e(u.GetName()))
	case domain.ChangePerson:
		p := ch.GetPerson()
		s := fmt.Sprintf("%s person %s %s %s", e(p.GetId()), e(p.GetName()), domain.RoleName(p.GetRole()), e(p.GetUnitId()))
		if p.GetDisabledMs() != 0 {
			s += " disabled"
		}
		return s
	case domain.ChangeLink:
		l := ch.GetLink()
		return fmt.Sprintf("%s link %q (was %q) by %s", e(l.GetHouseholdId()), e(l.GetMemberId()), e(l.GetPreviousMemberId()), e(l.GetBy()))
	case domain.ChangeDevice:
		d := ch.GetDevice()
		s := fmt.Sprintf("%s device app %q pending %d", e(d.GetDeviceId()), e(d.GetAppVersion()), d.GetPendingCount())
		if d.GetRevokedMs() != 0 {
			s += " revoked"
		}
		return s
	case domain.ChangeRefused:
		r := ch.GetRefused()
		return fmt.Sprintf("%s refused %s #%d %s", e(r.GetRecordId()), e(r.GetDeviceId()), r.GetDeviceSeq(), e(r.GetCode()))
	default:
		rec := ch.GetRecord()
		return fmt.Sprintf("%s %s v%d", e(rec.GetId()), k, rec.GetVersion())
	}
}
