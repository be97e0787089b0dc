package server

import (
	"crypto/tls"
	"fmt"
	"os"

	natsserver "github.com/nats-io/nats-server/v2/server"
)

// The embedded NATS's certificate, made by syncd's own CA (<data>/tls/ca.pem)
// beside the gRPC one, for the hosts its listener is reached by.
const (
	natsCertFile = "nats.pem"
	natsKeyFile  = "nats-key.pem"
)

// LoadOrCreateNATSTLS returns the TLS config of the embedded NATS's
// listener from dir (syncd's <data>/tls), making its certificate for hosts
// with the CA there (made too on first use). Clients trust
// dir/ca.pem (fieldctl hq tail -nats-ca, nats --tlsca).
func LoadOrCreateNATSTLS(dir string, hosts []string) (*tls.Config, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("tls dir: %w", err)
	}
	ca, caKey, err := loadOrCreateCA(dir)
	if err != nil {
		return nil, err
	}
	leaf, err := loadServerCert(dir, natsCertFile, natsKeyFile, ca, hosts)
	if err != nil {
		if leaf, err = createServerCert(dir, natsCertFile, natsKeyFile, ca, caKey, hosts); err != nil {
			return nil, err
		}
	}
	return &tls.Config{Certificates: []tls.Certificate{leaf}, MinVersion: tls.VersionTLS12}, nil
}

// WithTLS makes every client connection of the embedded NATS use TLS with
// cfg (syncd's own in-process connection excepted: it crosses no network).
func WithTLS(cfg *tls.Config) NATSOption {
	return func(o *natsserver.Options) {
		o.TLSConfig = cfg
		o.TLS = true
		o.TLSTimeout = 5
	}
}
