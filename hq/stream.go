package hq

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/fieldsync/fieldsync/domain"
)

// HQSource is one region a FIELDSYNC_HQ stream sources, as given to
// EnsureHQStream: "name", or "name@domain" for a region whose stream is
// in another JetStream domain (reached over a leaf node).
type HQSource struct {
	Region string // the region's name
	Domain string // its JetStream domain; "" for HQ's own
}

// Stream is the region's changelog stream, domain.RegionStream(Region).
func (s HQSource) Stream() string { return domain.RegionStream(s.Region) }

// APIPrefix is the JetStream API prefix the source is read through:
// "$JS.<domain>.API" for a region in another domain, else "".
func (s HQSource) APIPrefix() string {
	if s.Domain == "" {
		return ""
	}
	return "$JS." + s.Domain + ".API"
}

func (s HQSource) String() string {
	if s.Domain == "" {
		return s.Region
	}
	return s.Region + "@" + s.Domain
}

// ParseHQSource reads a region as given to EnsureHQStream ("name" or
// "name@domain") and says what is wrong with it.
func ParseHQSource(s string) (HQSource, error) {
	name, dom, hasDomain := strings.Cut(s, "@")
	if name == "" {
		return HQSource{}, fmt.Errorf("region %q: the name is empty: want a region's name (e.g. xiaonan), or name@jsdomain for a region in another JetStream domain", s)
	}
	if err := domain.CheckRegion(name); err != nil {
		return HQSource{}, err
	}
	if hasDomain {
		if dom == "" {
			return HQSource{}, fmt.Errorf("region %q: the JetStream domain after @ is empty: want name@jsdomain (the domain the region's leaf node runs JetStream in), or the name alone", s)
		}
		for _, c := range dom {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return HQSource{}, fmt.Errorf("region %q: JetStream domain %q has %q: want letters, digits, - and _", s, dom, c)
			}
		}
	}
	return HQSource{Region: name, Domain: dom}, nil
}

// maxReplicas is JetStream's largest replica count.
const maxReplicas = 5

// EnsureHQStream creates HQ's stream FIELDSYNC_HQ, or updates it: a stream
// with no subjects of its own whose sources are the changelog streams of
// the regions given (domain.RegionStream), each message keeping its
// region's headers (Fieldsync-Region, Fieldsync-Seq, Fieldsync-Lineage,
// Nats-Msg-Id) and JetStream keeping each source's order. A region written
// name@domain is sourced from JetStream domain `domain` (a region's own
// cluster reached over a leaf node: External.APIPrefix "$JS.<domain>.API").
//
// On an existing stream the sources it has are kept as they are (their
// positions too: nothing is sourced twice) and the regions not there yet
// are added; a region is never removed (delete the stream's source by hand
// if a region is retired). replicas is the stream's replica count (1 to 5;
// 0 keeps an existing stream's, 1 for a new one). It returns the stream's
// info after the change.
func EnsureHQStream(ctx context.Context, js jetstream.JetStream, regions []string, replicas int) (*jetstream.StreamInfo, error) {
	if js == nil {
		return nil, errors.New("hq: ensure HQ stream: no JetStream given")
	}
	if len(regions) == 0 {
		return nil, fmt.Errorf("hq: ensure HQ stream: no regions given: want the regions whose streams %s sources (e.g. xiaonan,yunmeng)", domain.HQStreamName)
	}
	if replicas < 0 || replicas > maxReplicas {
		return nil, fmt.Errorf("hq: ensure HQ stream: replicas %d: want 1 to %d (0 keeps an existing stream's)", replicas, maxReplicas)
	}
	var want []HQSource
	seen := map[string]string{}
	for _, r := range regions {
		s, err := ParseHQSource(strings.TrimSpace(r))
		if err != nil {
			return nil, fmt.Errorf("hq: ensure HQ stream: %w", err)
		}
		if prev, ok := seen[s.Region]; ok {
			return nil, fmt.Errorf("hq: ensure HQ stream: region %q is given twice (%s and %s): each region once", s.Region, prev, s)
		}
		seen[s.Region] = s.String()
		want = append(want, s)
	}
	st, err := js.Stream(ctx, domain.HQStreamName)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		cfg := jetstream.StreamConfig{
			Name:        domain.HQStreamName,
			Description: "fieldsync HQ: every region's changelog (sources: FIELDSYNC_CHANGES_<REGION>)",
			Storage:     jetstream.FileStorage,
			Retention:   jetstream.LimitsPolicy,
			Replicas:    max(replicas, 1),
		}
		for _, s := range want {
			cfg.Sources = append(cfg.Sources, sourceOf(s))
		}
		st, err = js.CreateStream(ctx, cfg)
		if err != nil {
			return nil, fmt.Errorf("hq: create stream %s: %w", domain.HQStreamName, err)
		}
		return st.Info(ctx)
	case err != nil:
		return nil, fmt.Errorf("hq: stream %s: %w", domain.HQStreamName, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("hq: stream %s: %w", domain.HQStreamName, err)
	}
	cfg := info.Config
	if len(cfg.Subjects) > 0 {
		return nil, fmt.Errorf("hq: stream %s has subjects of its own (%s): HQ's stream only sources the regions' streams; it was made by something else: delete it (nats stream rm %s) and run this again",
			domain.HQStreamName, strings.Join(cfg.Subjects, ", "), domain.HQStreamName)
	}
	changed := false
	for _, s := range want {
		i := indexSource(cfg.Sources, s.Stream())
		if i < 0 {
			cfg.Sources = append(cfg.Sources, sourceOf(s))
			changed = true
			continue
		}
		if got := apiPrefixOf(cfg.Sources[i]); got != s.APIPrefix() {
			return nil, fmt.Errorf("hq: region %s: stream %s sources %s through API prefix %q, not %q: a region's source is kept as it is (remove it from the stream by hand to move it)",
				s, domain.HQStreamName, s.Stream(), got, s.APIPrefix())
		}
	}
	if replicas > 0 && cfg.Replicas != replicas {
		cfg.Replicas, changed = replicas, true
	}
	if !changed {
		return info, nil
	}
	st, err = js.UpdateStream(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("hq: update stream %s: %w", domain.HQStreamName, err)
	}
	return st.Info(ctx)
}

func sourceOf(s HQSource) *jetstream.StreamSource {
	src := &jetstream.StreamSource{Name: s.Stream()}
	if p := s.APIPrefix(); p != "" {
		src.External = &jetstream.ExternalStream{APIPrefix: p}
	}
	return src
}

func apiPrefixOf(s *jetstream.StreamSource) string {
	if s.External == nil {
		return ""
	}
	return s.External.APIPrefix
}

func indexSource(srcs []*jetstream.StreamSource, name string) int {
	for i, s := range srcs {
		if s.Name == name {
			return i
		}
	}
	return -1
}
