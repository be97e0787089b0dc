package server

import (
	"fmt"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
)

// EmbeddedNATS starts an in-process nats-server with JetStream storing in
// dir, listening on host:port (port -1 picks a free one).
func EmbeddedNATS(dir, host string, port int) (*natsserver.Server, error) {
	opts := &natsserver.Options{
		ServerName: "fieldsync-embedded",
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   dir,
		NoSigs:     true,
		NoLog:      true,
	}
	ns, err := natsserver.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		return nil, fmt.Errorf("embedded nats: not ready after 10s (is %s:%d free?)", host, port)
	}
	return ns, nil
}
