package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding/gzip"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/fieldsync/fieldsync/syncer"
)

// maxMessageBytes matches syncd's limit on one gRPC message (16 MiB).
const maxMessageBytes = 16 << 20

// serverFlags adds the flags that the admin and hq groups share.
func serverFlags(fs *flag.FlagSet, c *cli) {
	fs.StringVar(&c.server, "server", c.server, "syncd's gRPC `address` (host:port)")
	fs.StringVar(&c.tokenFile, "token-file", c.tokenFile, "`file` holding the admin credential, which syncd writes to <data>/admin.token on first start")
	fs.StringVar(&c.caFile, "ca-file", c.caFile, "syncd's CA certificate `file` (default tls/ca.pem beside -token-file, where syncd makes it)")
	fs.BoolVar(&c.plaintext, "plaintext", c.plaintext, "connect without TLS, to a syncd run with -insecure-plaintext on loopback")
}

// caPath is the CA file to pin: -ca-file, or tls/ca.pem in syncd's data
// directory (the folder of the token file).
func (c *cli) caPath() string {
	if c.caFile != "" {
		return c.caFile
	}
	return filepath.Join(filepath.Dir(c.tokenFile), "tls", "ca.pem")
}

// caFingerprint reads the fingerprint of syncd's CA ("" with -plaintext).
func (c *cli) caFingerprint() (string, error) {
	if c.plaintext {
		return "", nil
	}
	fp, err := syncer.CAFingerprintFile(c.caPath())
	if err != nil {
		return "", fmt.Errorf("syncd's CA certificate: %w: syncd makes it in <data>/tls/ca.pem on first start; run fieldctl in syncd's directory or pass -ca-file (or -plaintext for a syncd run with -insecure-plaintext)", err)
	}
	return fp, nil
}

// transport is TLS pinned to syncd's CA, or plain text with -plaintext.
func (c *cli) transport() (grpc.DialOption, error) {
	if c.plaintext {
		return grpc.WithTransportCredentials(insecure.NewCredentials()), nil
	}
	fp, err := c.caFingerprint()
	if err != nil {
		return nil, err
	}
	return grpc.WithTransportCredentials(credentials.NewTLS(syncer.PinnedTLS(c.server, fp))), nil
}

// adminConn connects to syncd and returns a context that carries the admin
// credential.
func (c *cli) adminConn(ctx context.Context) (*grpc.ClientConn, context.Context, error) {
	if c.regions != nil && c.routed == nil {
		return nil, nil, usagef("with -regions (%s), this command talks to one region's syncd: give -region NAME, one of %s", c.regions.path, strings.Join(c.regions.names(), ", "))
	}
	if err := c.checkRegionFiles(); err != nil {
		return nil, nil, err
	}
	token, err := readToken(c.tokenFile)
	if err != nil {
		return nil, nil, c.regionNote(err)
	}
	creds, err := c.transport()
	if err != nil {
		return nil, nil, c.regionNote(err)
	}
	conn, err := grpc.NewClient(c.server, creds,
		grpc.WithDefaultCallOptions(grpc.UseCompressor(gzip.Name),
			grpc.MaxCallRecvMsgSize(maxMessageBytes), grpc.MaxCallSendMsgSize(maxMessageBytes)))
	if err != nil {
		return nil, nil, fmt.Errorf("connect to syncd at %s: %w", c.server, err)
	}
	return conn, metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token), nil
}

// readToken reads the admin credential, saying where syncd keeps it when
// the file is not there.
func readToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("admin credential %s not found: syncd writes it to <data>/admin.token when it first starts "+
			"(default ./data/admin.token, or the file its -admin-token-file names); run fieldctl in syncd's directory or pass -token-file", path)
	}
	if err != nil {
		return "", fmt.Errorf("read admin credential: %w", err)
	}
	token := strings.TrimSpace(string(b))
	if token == "" {
		return "", fmt.Errorf("admin credential %s is empty: restore it from syncd's data directory (admin.token)", path)
	}
	return token, nil
}

// rpcError turns a gRPC error into a sentence: what failed and why, in the
// server's words, with a hint where the server could not be reached.
func (c *cli) rpcError(what string, err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return fmt.Errorf("%s: %w", what, err)
	}
	switch st.Code() {
	case codes.Unavailable:
		hint := "-server sets the address"
		if c.routed != nil {
			hint = "the server column of " + c.regions.where(c.routed) + " sets the address"
		}
		return fmt.Errorf("%s: syncd at %s unavailable (%s): is it running? %s", what, c.server, st.Message(), hint)
	case codes.DeadlineExceeded:
		return fmt.Errorf("%s: syncd at %s did not answer in time", what, c.server)
	case codes.Canceled:
		return fmt.Errorf("%s: interrupted", what)
	}
	return fmt.Errorf("%s: %s", what, st.Message())
}

// durationFlag is a time.Duration that also takes whole days ("7d").
type durationFlag struct{ d *time.Duration }

func (f durationFlag) String() string {
	if f.d == nil {
		return ""
	}
	if *f.d%(24*time.Hour) == 0 && *f.d != 0 {
		return strconv.FormatInt(int64(*f.d/(24*time.Hour)), 10) + "d"
	}
	return f.d.String()
}

func (f durationFlag) Set(s string) error {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil || days < 0 {
			return fmt.Errorf("want a duration such as 24h, 90m or 7d")
		}
		*f.d = time.Duration(days) * 24 * time.Hour
		return nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("want a duration such as 24h, 90m or 7d")
	}
	*f.d = d
	return nil
}
