package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"time"

	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// Macheng, the default city: households, members (each linked to 5-10
// households), grids. Towns and villages are in Macheng's proportions.
const (
	machengHouseholds = 113522
	machengMembers    = 22042
	machengGrids      = 4997
	machengTowns      = 19
	machengVillages   = 436
)

// citySpec is the size of the city to build.
type citySpec struct {
	Households, Members, Grids, Villages, Towns int
}

func scaled(n int, scale float64, min int) int {
	v := int(float64(n)*scale + 0.5)
	if v < min {
		v = min
	}
	return v
}

// city is the generated org.
type city struct {
	spec    citySpec
	towns   []*pb.Unit
	villas  []*pb.Unit
	grids   []*pb.Unit
	members []*pb.User
	hq      *pb.User
	hhs     []*pb.Household
	links   []*pb.Assignment
	linked  map[string][]string // member -> households
	village map[string]string   // member -> village
}

var (
	surnames = []rune("張李王趙劉陳楊黃周吳徐孫胡朱高林何郭馬羅梁宋鄭謝韓唐馮于董蕭程曹袁鄧許傅沈曾彭呂蘇盧蔣蔡賈丁魏薛葉閻余潘杜戴夏鍾汪田任姜范方石姚譚廖鄒熊金陸郝孔白崔康毛邱秦江史顧侯邵孟龍萬段")
	given    = []string{"國華", "秀英", "德明", "大山", "小河", "春梅", "秋菊", "冬生", "建國", "桂蘭", "志強", "玉珍", "海濤", "淑芬", "文傑", "鳳英"}
	tags     = []string{"", "", "", "低保", "獨居老人", "留守兒童", "殘疾", "脫貧監測"}
)

func name(r *rand.Rand) string {
	return string(surnames[r.IntN(len(surnames))]) + given[r.IntN(len(given))]
}

// makeCity builds the org: units, members each working in a grid, and each
// grid's households shared among the grid's members.
func makeCity(spec citySpec, seed uint64) *city { return makeRegionCity(spec, seed, "") }

// makeRegionCity builds the org of a region: every unit, person and
// household id starts with prefix (domain.RegionIDPrefix; "" for none).
func makeRegionCity(spec citySpec, seed uint64, p string) *city {
	r := rand.New(rand.NewPCG(seed, 7))
	c := &city{spec: spec, linked: map[string][]string{}, village: map[string]string{}}
	for t := range spec.Towns {
		c.towns = append(c.towns, &pb.Unit{Id: fmt.Sprintf("%sT%02d", p, t+1), Kind: pb.UnitKind_UNIT_KIND_TOWN, Name: fmt.Sprintf("第%d鎮", t+1)})
	}
	for v := range spec.Villages {
		t := c.towns[v*spec.Towns/spec.Villages]
		c.villas = append(c.villas, &pb.Unit{Id: fmt.Sprintf("%sV%04d", p, v+1), Kind: pb.UnitKind_UNIT_KIND_VILLAGE, ParentId: t.Id, Name: fmt.Sprintf("第%d村", v+1)})
	}
	for g := range spec.Grids {
		v := c.villas[g*spec.Villages/spec.Grids]
		c.grids = append(c.grids, &pb.Unit{Id: fmt.Sprintf("%sG%05d", p, g+1), Kind: pb.UnitKind_UNIT_KIND_GRID, ParentId: v.Id, Name: fmt.Sprintf("第%d網格", g+1)})
	}
	gridMembers := make([][]*pb.User, spec.Grids)
	for m := range spec.Members {
		g := m * spec.Grids / spec.Members
		u := &pb.User{Id: fmt.Sprintf("%sU%06d", p, m+1), Name: name(r), Role: pb.Role_ROLE_MEMBER, UnitId: c.grids[g].Id, Phone: fmt.Sprintf("138%08d", m+1)}
		c.members = append(c.members, u)
		gridMembers[g] = append(gridMembers[g], u)
		c.village[u.Id] = c.grids[g].ParentId
	}
	c.hq = &pb.User{Id: p + "U-hq", Name: "組織部", Role: pb.Role_ROLE_HQ}
	turn := make([]int, spec.Grids)
	for h := range spec.Households {
		g := h * spec.Grids / spec.Households
		hh := &pb.Household{Id: fmt.Sprintf("%sH%06d", p, h+1), GridId: c.grids[g].Id, Head: name(r),
			Address: fmt.Sprintf("%s%d號", c.grids[g].Name, h+1), Phone: fmt.Sprintf("139%08d", h+1),
			Members: fmt.Sprint(1 + r.IntN(6)), Tags: tags[r.IntN(len(tags))]}
		c.hhs = append(c.hhs, hh)
		ms := gridMembers[g]
		if len(ms) == 0 {
			continue
		}
		m := ms[turn[g]%len(ms)]
		turn[g]++
		c.links = append(c.links, &pb.Assignment{HouseholdId: hh.Id, MemberId: m.Id})
		c.linked[m.Id] = append(c.linked[m.Id], hh.Id)
	}
	return c
}

// importCity loads the city through AdminService.ImportOrg in batches.
func importCity(ctx context.Context, admin pb.AdminServiceClient, c *city, batch int, progress io.Writer) error {
	start := time.Now()
	units := append(append(append([]*pb.Unit{}, c.towns...), c.villas...), c.grids...)
	users := append([]*pb.User{c.hq}, c.members...)
	send := func(req *pb.ImportOrgRequest) error {
		resp, err := admin.ImportOrg(ctx, req)
		if err != nil {
			return fmt.Errorf("import: %w", err)
		}
		if len(resp.GetErrors()) > 0 {
			return fmt.Errorf("import rejected %d rows, first: %v", len(resp.GetErrors()), resp.GetErrors()[0])
		}
		return nil
	}
	for i := 0; i < len(units); i += batch {
		if err := send(&pb.ImportOrgRequest{Units: units[i:min(i+batch, len(units))]}); err != nil {
			return err
		}
	}
	for i := 0; i < len(users); i += batch {
		if err := send(&pb.ImportOrgRequest{Users: users[i:min(i+batch, len(users))]}); err != nil {
			return err
		}
	}
	for i := 0; i < len(c.hhs); i += batch {
		j := min(i+batch, len(c.hhs))
		req := &pb.ImportOrgRequest{Households: c.hhs[i:j]}
		req.Assignments = assignmentsFor(c, c.hhs[i:j])
		if err := send(req); err != nil {
			return err
		}
		fmt.Fprintf(progress, "\rsyncbench: imported %d/%d households (%.0f/s)", j, len(c.hhs), float64(j)/time.Since(start).Seconds())
	}
	fmt.Fprintf(progress, "\n")
	return nil
}

func assignmentsFor(c *city, hhs []*pb.Household) []*pb.Assignment {
	if len(hhs) == 0 {
		return nil
	}
	// Links are in household order, one per household of a grid with members.
	var out []*pb.Assignment
	first, last := hhs[0].Id, hhs[len(hhs)-1].Id
	for _, a := range c.links {
		if a.HouseholdId >= first && a.HouseholdId <= last {
			out = append(out, a)
		}
	}
	return out
}
