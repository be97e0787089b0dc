package domain_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/fieldsync/fieldsync/domain"
)

// wantEdges is the dispute state machine as DESIGN.md and dispute.go's
// comment describe it, written out here so that a change to the table in
// dispute.go fails this test.
var wantEdges = map[string][]string{
	"open":      {"mediating", "withdrawn"},
	"mediating": {"agreed", "failed", "withdrawn"},
	"agreed":    {"closed"},
	"failed":    {"closed", "referred"},
	"referred":  {"closed"},
	"withdrawn": {"closed"},
	"closed":    {},
}

func TestDisputeStatuses(t *testing.T) {
	want := []string{"open", "mediating", "agreed", "failed", "referred", "withdrawn", "closed"}
	if !slices.Equal(domain.DisputeStatuses, want) {
		t.Fatalf("DisputeStatuses = %v, want %v", domain.DisputeStatuses, want)
	}
}

func TestCheckTransitionEveryPair(t *testing.T) {
	for _, from := range domain.DisputeStatuses {
		for _, to := range domain.DisputeStatuses {
			allowed := slices.Contains(wantEdges[from], to)
			t.Run(from+"->"+to, func(t *testing.T) {
				got := domain.CheckTransition(from, to)
				if allowed {
					if got != nil {
						t.Fatalf("CheckTransition(%s, %s) = %v, want nil", from, to, got)
					}
					return
				}
				wantRejection(t, got, domain.CodeInvalidTransition, "dispute.status")
				var wantReason string
				if len(wantEdges[from]) == 0 {
					wantReason = from + " -> " + to + " not allowed: " + from + " is final"
				} else {
					wantReason = from + " -> " + to + " not allowed: from " + from + " a dispute may move to " + strings.Join(wantEdges[from], ", ")
				}
				if got.Reason != wantReason {
					t.Fatalf("reason %q, want %q", got.Reason, wantReason)
				}
			})
		}
	}
}

func TestAllowedFrom(t *testing.T) {
	for _, from := range domain.DisputeStatuses {
		got := slices.Sorted(slices.Values(domain.AllowedFrom(from)))
		if !slices.Equal(got, wantEdges[from]) && !(len(got) == 0 && len(wantEdges[from]) == 0) {
			t.Fatalf("AllowedFrom(%s) = %v, want %v", from, got, wantEdges[from])
		}
	}
	// Every status but open can be reached, and every path ends at closed.
	reached := map[string]bool{"open": true}
	for queue := []string{"open"}; len(queue) > 0; queue = queue[1:] {
		for _, to := range domain.AllowedFrom(queue[0]) {
			if !reached[to] {
				reached[to] = true
				queue = append(queue, to)
			}
		}
	}
	for _, s := range domain.DisputeStatuses {
		if !reached[s] {
			t.Fatalf("status %s cannot be reached from open", s)
		}
	}
}

func TestCheckTransitionUnknownStatus(t *testing.T) {
	tests := []struct {
		name, from, to string
		code           string
		reason         string
	}{
		{"unknown from", "pending", "mediating", domain.CodeInvalidTransition, `from status "pending" is not a status: want one of open, mediating`},
		{"empty from", "", "open", domain.CodeInvalidTransition, `from status "" is not a status`},
		{"unknown to", "open", "调解中", domain.CodeInvalidField, `"调解中" is not a status: want one of open, mediating`},
		{"upper case", "open", "Mediating", domain.CodeInvalidField, `"Mediating" is not a status`},
		{"long from is clipped", strings.Repeat("x", 200), "open", domain.CodeInvalidTransition, strings.Repeat("x", 80) + "…"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := domain.CheckTransition(tt.from, tt.to)
			wantRejection(t, got, tt.code, "dispute.status")
			if !strings.Contains(got.Reason, tt.reason) {
				t.Fatalf("reason %q, want it to contain %q", got.Reason, tt.reason)
			}
			if strings.Contains(got.Reason, strings.Repeat("x", 81)) {
				t.Fatalf("reason %q holds the whole long value, want it clipped", got.Reason)
			}
		})
	}
}
