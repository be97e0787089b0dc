package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fieldsync/fieldsync/domain"
	hqmodel "github.com/fieldsync/fieldsync/hq"
	"github.com/fieldsync/fieldsync/internal/syncd"
)

// hqStreamJSON is what fieldctl hq stream --json prints.
type hqStreamJSON struct {
	Stream   string             `json:"stream"`
	Replicas int                `json:"replicas"`
	Messages uint64             `json:"messages"`
	Bytes    uint64             `json:"bytes"`
	Sources  []hqStreamSourceJS `json:"sources"`
}

// hqStreamSourceJS is one region's source.
type hqStreamSourceJS struct {
	Region    string `json:"region"`
	Stream    string `json:"stream"`
	APIPrefix string `json:"api_prefix,omitempty"`
	// Found says whether the region's stream exists (in HQ's own
	// domain; a region in another domain is not looked up: null).
	Found *bool `json:"found"`
	// Lag is how many of the region's messages FIELDSYNC_HQ has not copied
	// yet; Seq the region stream's sequence of the last one it copied.
	Lag uint64 `json:"lag"`
	Seq uint64 `json:"seq"`
	// ActiveMs is how long ago the source was last active (-1: never).
	ActiveMs int64  `json:"active_ms"`
	Error    string `json:"error,omitempty"`
}

func hqStream(ctx context.Context, c *cli, name string, args []string) error {
	fs := c.newFlags(name, "-regions R[,R...] [-nats URL[,URL...]] [-nats-nkey FILE] [-nats-ca FILE] [-replicas N] [--json]", `
Creates HQ's stream `+domain.HQStreamName+`, or adds regions to it: a stream with no
subjects of its own that copies (sources) every region's changelog stream
`+domain.StreamName+`_<REGION>, keeping each message's headers (Fieldsync-Region,
Fieldsync-Seq, Fieldsync-Lineage) and each region's order. HQ's read model
follows it: fieldctl hq web -stream `+domain.HQStreamName+`.
Run it again with a longer -regions to add a region: the regions already
there keep their place (nothing is copied twice); a region is never removed.
A region written name@domain is read from JetStream domain "domain" (a
region whose NATS is a leaf node with its own JetStream domain).
-replicas sets the stream's replicas (3 on a 3-node cluster; 0 keeps an
existing stream's, 1 for a new one). It prints each region's source and its
lag: how many of the region's messages are not copied yet.`, `
fieldctl hq stream -nats nats://n1:4222,nats://n2:4222,nats://n3:4222 -regions xiaonan,yunmeng -replicas 3
fieldctl hq stream -regions xiaonan,yunmeng,dawu -replicas 3 --json
fieldctl hq stream -regions xiaonan,anlu@anlu`)
	natsURL := fs.String("nats", "", "NATS `URLs`, comma-separated (default: from ./data/nats.url, else "+defaultNATSURL+")")
	regions := fs.String("regions", "", "the `regions` whose streams "+domain.HQStreamName+" sources, comma-separated; name@domain for a region in another JetStream domain")
	replicas := fs.Int("replicas", 0, "the stream's `replicas`, 1 to 5 (0: keep an existing stream's, 1 for a new one)")
	asJSON := fs.Bool("json", false, "print the stream and its sources as JSON")
	conn := addNATSConnFlags(fs)
	if err := parseCommand(name, fs, args); err != nil {
		return err
	}
	list := domain.SplitList(*regions)
	if len(list) == 0 {
		return usagef("%s: -regions is empty: want the regions' names, comma-separated (e.g. -regions xiaonan,yunmeng)", short(name))
	}
	for _, r := range list {
		if _, err := hqmodel.ParseHQSource(r); err != nil {
			return usagef("%s: -regions: %v", short(name), err)
		}
	}
	if *replicas < 0 || *replicas > 5 {
		return usagef("%s: -replicas %d: want 1 to 5 (0 keeps an existing stream's)", short(name), *replicas)
	}
	u, err := natsURLOrDefault(*natsURL)
	if err != nil {
		return err
	}
	opts, err := conn.options("fieldctl hq stream", u)
	if err != nil {
		return err
	}
	nc, err := nats.Connect(u, opts...)
	if err != nil {
		return fmt.Errorf("connect to NATS at %s: %w (-nats sets the URLs; -nats-nkey the credential, -nats-ca the CA for TLS)", syncd.RedactURLs(u), err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	info, err := hqmodel.EnsureHQStream(ctx, js, list, *replicas)
	if err != nil {
		return err
	}
	out := hqStreamJSON{Stream: info.Config.Name, Replicas: info.Config.Replicas, Messages: info.State.Msgs, Bytes: info.State.Bytes}
	state := map[string]*jetstream.StreamSourceInfo{}
	for _, s := range info.Sources {
		state[s.Name] = s
	}
	for _, src := range info.Config.Sources {
		region := strings.ToLower(strings.TrimPrefix(src.Name, domain.StreamName+"_"))
		row := hqStreamSourceJS{Region: region, Stream: src.Name, ActiveMs: -1}
		if src.External != nil {
			row.APIPrefix = src.External.APIPrefix
		} else {
			_, err := js.Stream(ctx, src.Name)
			found := err == nil
			if err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
				row.Error = err.Error()
			}
			row.Found = &found
		}
		if s := state[src.Name]; s != nil {
			row.Lag, row.Seq = s.Lag, s.Seq
			if s.Active >= 0 {
				row.ActiveMs = s.Active.Milliseconds()
			}
			if s.Error != nil {
				row.Error = s.Error.Error()
			}
		}
		out.Sources = append(out.Sources, row)
	}
	if *asJSON {
		return newNDJSON(c.stdout).Encode(out)
	}
	fmt.Fprintf(c.stdout, "stream %s: %d replicas, %d messages\n", out.Stream, out.Replicas, out.Messages)
	tw := tabwriter.NewWriter(c.stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REGION\tSTREAM\tFROM\tCOPIED UP TO\tLAG\tLAST ACTIVE\tNOTE")
	for _, s := range out.Sources {
		from := "this domain"
		if s.APIPrefix != "" {
			from = s.APIPrefix
		}
		active := "never"
		if s.ActiveMs >= 0 {
			active = (time.Duration(s.ActiveMs) * time.Millisecond).Round(time.Second).String() + " ago"
		}
		note := s.Error
		if note == "" && s.Found != nil && !*s.Found {
			note = "no such stream yet: syncd -region " + s.Region + " makes it when it starts"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\t%s\n", s.Region, s.Stream, from, s.Seq, s.Lag, active, note)
	}
	return tw.Flush()
}
