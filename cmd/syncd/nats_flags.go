package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/fieldsync/fieldsync/server"
)

// natsFlags: the credentials for an external NATS, and the changelog
// stream's limits.
type natsFlags struct {
	creds, nkey, ca, cert, key string
	maxAge                     time.Duration
	maxBytes                   server.ByteSize
	replicas                   int
	limits                     server.StreamLimits // from maxAge, maxBytes and which were given
}

func (n *natsFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&n.creds, "nats-creds", "", "with -nats: a NATS .creds `file` (user JWT and NKey seed) to connect with")
	fs.StringVar(&n.nkey, "nats-nkey", "", "with -nats: a `file` holding an NKey user seed (SU...) to connect with")
	fs.StringVar(&n.ca, "nats-ca", "", "with -nats: the CA certificate `file` (PEM) the NATS server's TLS certificate is checked against; with it, the connection uses TLS")
	fs.StringVar(&n.cert, "nats-cert", "", "with -nats: a client certificate `file` (PEM) for NATS servers that verify clients (with -nats-key)")
	fs.StringVar(&n.key, "nats-key", "", "with -nats: the client certificate's key `file` (PEM)")
	fs.DurationVar(&n.maxAge, "changelog-max-age", server.DefaultChangelogMaxAge, "the changelog stream drops changes older than this `duration` (e.g. 8760h for a year; 0: never). Applied to an existing stream only when given; otherwise its own setting is kept")
	fs.IntVar(&n.replicas, "changelog-replicas", 1, "how many `servers` of the JetStream cluster keep the changelog stream, 1 to 5 (3 on a 3-node cluster: a node can fail and nothing is lost). Applied to an existing stream only when given; otherwise its own setting is kept")
	fs.Var(&n.maxBytes, "changelog-max-bytes", "the changelog stream drops its oldest changes beyond this `size` (default "+server.ByteSize(server.DefaultChangelogMaxBytes).String()+", below -nats-max-store). Applied to an existing stream only when given; otherwise its own setting is kept")
}

// explicit notes which stream limits were given on the command line:
// those are applied to an existing stream, whose other settings (an
// operator's nats stream edit) are kept.
func (n *natsFlags) explicit(fs *flag.FlagSet) {
	n.limits = server.StreamLimits{MaxAge: n.maxAge, MaxBytes: int64(n.maxBytes), Replicas: n.replicas}
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "changelog-replicas":
			n.limits.SetReplicas = true
		case "changelog-max-age":
			n.limits.SetMaxAge = true
		case "changelog-max-bytes":
			n.limits.SetMaxBytes = true
		}
	})
}

// check refuses limits that cannot work: a negative age, or a stream
// allowed to grow as large as the embedded store (the store would refuse
// the relay before the stream drops anything).
func (n *natsFlags) check(external bool, maxStore int64) error {
	if n.maxAge < 0 {
		return fmt.Errorf("-changelog-max-age %s: want 0 (keep every change) or a positive duration such as 8760h", n.maxAge)
	}
	if n.replicas < 1 || n.replicas > server.MaxReplicas {
		return fmt.Errorf("-changelog-replicas %d: want 1 to %d (how many servers of the JetStream cluster keep the changelog; 3 on a 3-node cluster)", n.replicas, server.MaxReplicas)
	}
	if !external && n.replicas > 1 {
		return fmt.Errorf("-changelog-replicas %d: the embedded NATS is one server and keeps one copy; replicas need a JetStream cluster (syncd nats -config FILE on 3 machines) named with -nats URL1,URL2,URL3", n.replicas)
	}
	if maxStore <= 0 {
		maxStore = server.DefaultNATSMaxStore
	}
	if !external && n.limits.MaxBytes > 0 && n.limits.MaxBytes >= maxStore {
		return fmt.Errorf("-changelog-max-bytes %s: must be below -nats-max-store %s, so that the stream drops its oldest changes before the store is full and refuses new ones",
			server.ByteSize(n.limits.MaxBytes), server.ByteSize(maxStore))
	}
	return nil
}

// clientOptions are the options of the connection to an external NATS.
func (n *natsFlags) clientOptions() ([]nats.Option, error) {
	var opts []nats.Option
	if n.creds != "" && n.nkey != "" {
		return nil, errors.New("-nats-creds and -nats-nkey: give one (a .creds file holds its own NKey seed)")
	}
	if n.creds != "" {
		if _, err := os.Stat(n.creds); err != nil {
			return nil, fmt.Errorf("-nats-creds: %w", err)
		}
		opts = append(opts, nats.UserCredentials(n.creds))
	}
	if n.nkey != "" {
		b, err := os.ReadFile(n.nkey)
		if err != nil {
			return nil, fmt.Errorf("-nats-nkey: %w", err)
		}
		kp, err := server.ParseNKeySeed(b)
		if err != nil {
			return nil, fmt.Errorf("-nats-nkey %s: %w", n.nkey, err)
		}
		opts = append(opts, server.NKeyOption(kp))
	}
	if n.ca != "" {
		opts = append(opts, nats.RootCAs(n.ca))
	}
	if (n.cert == "") != (n.key == "") {
		return nil, errors.New("-nats-cert and -nats-key go together: give both or neither")
	}
	if n.cert != "" {
		opts = append(opts, nats.ClientCert(n.cert, n.key))
	}
	return opts, nil
}
