package server

import (
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fieldsync/fieldsync/domain"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// maxRegionRowErrors bounds the rows of other regions an import lists:
// a file of the wrong region would list every row.
const maxRegionRowErrors = 20

// regionRowErrors lists the rows of req that name an id region does not
// own (domain.RegionOwns): a unit's id and parent_id, a person's id and
// unit_id, a household's id and grid_id, an assignment's household_id and
// member_id. Nothing with no region. An empty reference (a town's
// parent_id, an HQ person's unit_id) is left to the row's other checks.
// At most maxRegionRowErrors rows are listed, the last one saying how
// many more there are.
func regionRowErrors(region string, req *pb.ImportOrgRequest) []*pb.RowError {
	if region == "" {
		return nil
	}
	var out []*pb.RowError
	more := 0
	check := func(table string, i int, fields ...string) {
		for j := 0; j+1 < len(fields); j += 2 {
			field, id := fields[j], fields[j+1]
			if id == "" && field != "id" {
				continue
			}
			if domain.RegionOwns(region, id) {
				continue
			}
			if len(out) == maxRegionRowErrors {
				more++
				return
			}
			out = append(out, &pb.RowError{Table: table, Index: int32(i), Field: field, Message: domain.RegionOwnsError(region, field, id).Error()})
			return // one error a row
		}
	}
	for i, u := range req.GetUnits() {
		check("units", i, "id", u.GetId(), "parent_id", u.GetParentId())
	}
	for i, u := range req.GetUsers() {
		check("users", i, "id", u.GetId(), "unit_id", u.GetUnitId())
	}
	for i, h := range req.GetHouseholds() {
		check("households", i, "id", h.GetId(), "grid_id", h.GetGridId())
	}
	for i, a := range req.GetAssignments() {
		check("assignments", i, "household_id", a.GetHouseholdId(), "member_id", a.GetMemberId())
	}
	if more > 0 {
		last := out[len(out)-1]
		last.Message += fmt.Sprintf(" (and %d more rows of other regions, not listed)", more)
	}
	return out
}

// regionOwnsAll refuses, for a single-user admin call, the first id of
// fields (name, id pairs) the server's region does not own.
func (s *Server) regionOwnsAll(fields ...string) error {
	region := s.cfg.Region
	if region == "" {
		return nil
	}
	for j := 0; j+1 < len(fields); j += 2 {
		if !domain.RegionOwns(region, fields[j+1]) {
			return status.Error(codes.InvalidArgument, domain.RegionOwnsError(region, fields[j], fields[j+1]).Error())
		}
	}
	return nil
}
