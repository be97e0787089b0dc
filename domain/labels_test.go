package domain_test

import (
	"testing"

	"github.com/fieldsync/fieldsync/domain"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// Every kind, field and enum value a field user reads has a Chinese label:
// a new status or category added without one shows up here.
func TestEveryKindFieldAndValueHasAChineseLabel(t *testing.T) {
	for _, name := range domain.KindNames() {
		k, _ := domain.ParseKind(name)
		if l := domain.KindLabel(domain.LangZH, k); l == name {
			t.Errorf("kind %s has no Chinese label", name)
		}
		for _, f := range domain.SpecOf(k).Fields {
			if k == pb.Kind_KIND_EVENT && (f.Name == "prev_hash" || f.Name == "hash") {
				continue // the chain's hashes are read by machines, not people
			}
			if l := domain.FieldLabel(domain.LangZH, k, f.Name); l == f.Name || l == "" {
				t.Errorf("%s.%s has no Chinese label", name, f.Name)
			}
			for _, v := range f.Values {
				if l := domain.ValueLabel(domain.LangZH, k, f.Name, v); l == v || l == "" {
					t.Errorf("%s.%s=%s has no Chinese label", name, f.Name, v)
				}
			}
		}
	}
}

func TestEnglishLabelsReadTheNames(t *testing.T) {
	if got := domain.ValueLabel(domain.LangEN, pb.Kind_KIND_PROJECT, "status", "in_progress"); got != "in progress" {
		t.Fatalf("English status = %q, want %q", got, "in progress")
	}
	if got := domain.ValueLabel(domain.LangZH, pb.Kind_KIND_NEED, "status", "resolved"); got != "已办结" {
		t.Fatalf("Chinese status = %q", got)
	}
	if got := domain.ValueLabel(domain.LangZH, pb.Kind_KIND_VISIT, "met", "王芳"); got != "王芳" {
		t.Fatalf("a free-text value = %q, want itself", got)
	}
}
