package main

import (
	"os"

	"github.com/nats-io/nats.go"
)

// connectNATS connects to url, with the NKey seed in keyFile if one is
// given (syncd's embedded NATS authenticates every connection).
func connectNATS(url, keyFile string) (*nats.Conn, error) {
	var opts []nats.Option
	if keyFile != "" {
		opt, err := nats.NkeyOptionFromSeed(keyFile)
		if err != nil {
			return nil, err
		}
		opts = append(opts, opt)
	}
	return nats.Connect(url, opts...)
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
