package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/server"
)

// hqCredentialCommand manages HQ's credentials for syncd's embedded NATS.
func hqCredentialCommand() *command {
	return &command{
		name:    "hq-credential",
		summary: "create, list and revoke HQ's read-only credentials for the changelog on NATS",
		about: `An HQ credential is an NKey with which an HQ consumer (fieldctl hq tail,
natscli, a read model) connects to syncd's embedded NATS: it may read the
changelog stream and keep consumers on it, and nothing else. add writes its
seed to a file once (syncd keeps only the public key); revoke cuts it off at
once. A credential reads every change of the city: only a city
administrator manages them.`,
		sub: []*command{
			{name: "add", summary: "create a credential and write its NKey seed to a file (mode 0600)", run: hqCredentialAdd},
			{name: "list", summary: "list the credentials", run: hqCredentialList},
			{name: "revoke", summary: "cut a credential off: its connections close and it cannot connect again", run: hqCredentialRevoke},
		},
	}
}

func hqCredentialAdd(ctx context.Context, c *cli, name string, args []string) error {
	fs := c.newFlags(name, "NAME [-o FILE]", `
Creates the HQ credential NAME (letters, digits, '.', '_', '-') and writes its
NKey seed to FILE (default hq-NAME.nk), mode 0600, which it refuses to
overwrite. The seed is shown only this once: keep the file secret. Connect
with it:
  fieldctl hq tail -nats nats://HOST:4222 -nats-nkey hq-NAME.nk
  nats --server nats://HOST:4222 --nkey hq-NAME.nk stream info FIELDSYNC_CHANGES
Beyond loopback syncd's NATS requires TLS: add -nats-ca (natscli: --tlsca)
with syncd's <data>/tls/ca.pem.`, `
fieldctl admin hq-credential add hq-city -o /secure/hq-city.nk`)
	out := fs.String("o", "", "write the seed to this `file` (default hq-NAME.nk)")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("%s: want one NAME, e.g. %s hq-city", short(name), short(name))
	}
	credName := pos[0]
	path := *out
	if path == "" {
		path = "hq-" + strings.TrimPrefix(credName, "hq-") + ".nk"
	}
	// Refuse before creating: a credential whose seed cannot be written is
	// lost.
	f, err := newTokenFile(path)
	if err != nil {
		return err
	}
	conn, actx, err := c.adminConn(ctx)
	if err != nil {
		return dropTokenFile(f, err)
	}
	defer conn.Close()
	resp, err := pb.NewAdminServiceClient(conn).AddHQCredential(actx, &pb.AddHQCredentialRequest{Name: credName})
	if err != nil {
		return dropTokenFile(f, c.rpcError("add HQ credential", err))
	}
	_, werr := f.WriteString(resp.GetSeed() + "\n")
	if err := errors.Join(werr, f.Close()); err != nil {
		return fmt.Errorf("write %s: %w; the credential %s exists but its seed is lost: revoke it and add another", path, err, credName)
	}
	abs, _ := filepath.Abs(path)
	fmt.Fprintf(c.stdout, "HQ credential %s created (public key %s); seed written to %s (keep it secret)\n", credName, resp.GetCredential().GetPublicKey(), abs)
	fmt.Fprintf(c.stdout, "its inbox prefix (natscli --inbox-prefix; fieldctl hq sets it itself): %s\n", server.HQInboxPrefix(resp.GetCredential().GetPublicKey()))
	return nil
}

// hqCredentialJSON is a credential as list --json prints it.
type hqCredentialJSON struct {
	Name      string `json:"name"`
	PublicKey string `json:"public_key"`
	CreatedMs int64  `json:"created_ms"`
	RevokedMs int64  `json:"revoked_ms"`
	Revoked   bool   `json:"revoked"`
}

func hqCredentialList(ctx context.Context, c *cli, name string, args []string) error {
	fs := c.newFlags(name, "[--json]", `
Lists HQ's credentials: name, public key, when created, when revoked.`, `
fieldctl admin hq-credential list --json`)
	asJSON := fs.Bool("json", false, "print a JSON array")
	if err := parseCommand(name, fs, args); err != nil {
		return err
	}
	conn, actx, err := c.adminConn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	resp, err := pb.NewAdminServiceClient(conn).ListHQCredentials(actx, &pb.ListHQCredentialsRequest{})
	if err != nil {
		return c.rpcError("list HQ credentials", err)
	}
	list := []hqCredentialJSON{}
	for _, cr := range resp.GetCredentials() {
		list = append(list, hqCredentialJSON{Name: cr.GetName(), PublicKey: cr.GetPublicKey(), CreatedMs: cr.GetCreatedMs(), RevokedMs: cr.GetRevokedMs(), Revoked: cr.GetRevokedMs() != 0})
	}
	if *asJSON {
		return writeJSON(c.stdout, list)
	}
	t := newTable("NAME", "PUBLIC KEY", "CREATED", "REVOKED")
	for _, cr := range list {
		revoked := "no"
		if cr.Revoked {
			revoked = fmtTime(cr.RevokedMs)
		}
		t.add(cr.Name, cr.PublicKey, fmtTime(cr.CreatedMs), revoked)
	}
	return t.write(c.stdout)
}

func hqCredentialRevoke(ctx context.Context, c *cli, name string, args []string) error {
	fs := c.newFlags(name, "NAME", `
Revokes an HQ credential: syncd's NATS closes its connections at once and
refuses it from now on. Its name stays taken.`, `
fieldctl admin hq-credential revoke hq-city`)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("%s: want one NAME (see fieldctl admin hq-credential list)", short(name))
	}
	conn, actx, err := c.adminConn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	resp, err := pb.NewAdminServiceClient(conn).RevokeHQCredential(actx, &pb.RevokeHQCredentialRequest{Name: pos[0]})
	if err != nil {
		return c.rpcError("revoke HQ credential", err)
	}
	if resp.GetAlreadyRevoked() {
		fmt.Fprintf(c.stdout, "%s was already revoked\n", pos[0])
		return nil
	}
	fmt.Fprintf(c.stdout, "revoked %s: its NATS connections are closed and it cannot connect again\n", pos[0])
	return nil
}

// natsConnFlags are how an HQ consumer connects to NATS.
type natsConnFlags struct {
	nkey, creds, ca *string
}

func addNATSConnFlags(fs interface {
	String(name, value, usage string) *string
}) natsConnFlags {
	return natsConnFlags{
		nkey:  fs.String("nats-nkey", "", "NKey seed `file` to connect with (fieldctl admin hq-credential add writes one; default: ./data/nats-syncd.nk when readable, syncd's own key on its machine)"),
		creds: fs.String("nats-creds", "", "a NATS .creds `file` to connect with (an external NATS)"),
		ca:    fs.String("nats-ca", "", "CA certificate `file` (PEM) the NATS server's certificate is checked against: syncd's <data>/tls/ca.pem, needed when its NATS listens beyond loopback (default for a tls:// URL: ./data/tls/ca.pem when readable)"),
	}
}

// defaultDataDir is syncd's data directory as fieldctl on syncd's
// machine finds it (as the admin token, read from ./data).
const defaultDataDir = "./data"

// options are the options of a connection to url that the flags name;
// without a credential, syncd's own key in ./data (on syncd's machine).
func (f natsConnFlags) options(name, url string) ([]nats.Option, error) {
	return natsOptions(name, url, *f.nkey, *f.creds, *f.ca, defaultDataDir)
}

// natsOptions are the options of a connection to url as name, with the
// NKey seed file nkey or the .creds file creds, and the CA file ca. Given
// no credential, it uses syncd's own key in dataDir (nats-syncd.nk) if it
// is there; given no CA, syncd's CA there for a tls:// URL.
func natsOptions(name, url, nkey, creds, ca, dataDir string) ([]nats.Option, error) {
	opts := []nats.Option{nats.Name(name), nats.Timeout(10 * time.Second)}
	if nkey != "" && creds != "" {
		return nil, usagef("-nats-nkey and -nats-creds: give one")
	}
	if def := filepath.Join(dataDir, "nats-syncd.nk"); nkey == "" && creds == "" && fileExists(def) {
		nkey = def
	}
	if nkey != "" {
		// The key and the inbox its permissions allow (an HQ user reads
		// replies only under its own prefix).
		hq, err := server.HQConnectOptions(nkey)
		if err != nil {
			return nil, fmt.Errorf("-nats-nkey %s: %w (want the file fieldctl admin hq-credential add wrote, or syncd's <data>/nats-syncd.nk)", nkey, err)
		}
		opts = append(opts, hq...)
	}
	if creds != "" {
		opts = append(opts, nats.UserCredentials(creds))
	}
	if def := filepath.Join(dataDir, "tls", server.CAFile); ca == "" && strings.HasPrefix(url, "tls://") && fileExists(def) {
		ca = def
	}
	if ca != "" {
		opts = append(opts, nats.RootCAs(ca))
	}
	return opts, nil
}
