package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"

	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// accountsCommand is fieldctl admin accounts: administrators, one account
// per person, each scoped to the city or one town.
func accountsCommand() *command {
	return &command{
		name:    "accounts",
		summary: "add, list, disable and enable administrator accounts (one per person, city or town)",
		about: `Each administrator is a person with an account: a name (the audit log's
actor, admin:<name>) and a scope, the whole city or one town. A town
administrator issues codes, assigns households and lists and revokes devices
of its town only; importing the org, the export and these accounts are for
a city administrator or the owner credential (<data>/admin.token, audited
as admin:owner).

A person uses their own token with -token-file (and -ca-file, unless the
token file lies in syncd's data directory beside tls/ca.pem).`,
		sub: []*command{
			{name: "add", summary: "create a person's account and write its token", run: accountsAdd},
			{name: "list", summary: "list the accounts", run: accountsList},
			{name: "disable", summary: "cut an account off at once", run: accountsDisable},
			{name: "enable", summary: "make a disabled account active again, with a new token", run: accountsEnable},
		},
	}
}

// accountJSON is an account as fieldctl admin accounts prints it.
type accountJSON struct {
	Name       string `json:"name"`
	Scope      string `json:"scope"`   // "city" or "town"
	TownID     string `json:"town_id"` // "" for the city
	CreatedMs  int64  `json:"created_ms"`
	Created    string `json:"created"`
	CreatedBy  string `json:"created_by"`
	DisabledMs int64  `json:"disabled_ms"`
	Disabled   bool   `json:"disabled"`
	// Token is set only when the account was just created or enabled and
	// no -o file was given.
	Token string `json:"token,omitempty"`
}

func toAccountJSON(a *pb.AdminAccount) accountJSON {
	scope := "city"
	if a.GetTownId() != "" {
		scope = "town"
	}
	return accountJSON{Name: a.GetName(), Scope: scope, TownID: a.GetTownId(), CreatedMs: a.GetCreatedMs(), Created: rfc3339(a.GetCreatedMs()),
		CreatedBy: a.GetCreatedBy(), DisabledMs: a.GetDisabledMs(), Disabled: a.GetDisabledMs() != 0}
}

func (a accountJSON) scopeText() string {
	if a.TownID == "" {
		return "city"
	}
	return "town " + a.TownID
}

// oneName parses a command taking one account name.
func oneName(name string, parsed []string) (string, error) {
	switch len(parsed) {
	case 0:
		return "", usagef("%s: the account's NAME is required (quote a name with spaces)", short(name))
	case 1:
		return parsed[0], nil
	}
	return "", usagef("%s: one NAME only, got %q: quote a name with spaces", short(name), parsed)
}

func accountsAdd(ctx context.Context, c *cli, name string, args []string) error {
	fs := c.newFlags(name, "NAME [-town UNIT_ID] [-o FILE] [--json]", `
Creates an administrator account for a person: NAME is their name or login
(1-64 printable characters, any script, single spaces), unique; -town scopes
it to one town (a unit of kind town), else it is city-wide. Only a city
administrator or the owner credential creates accounts.

The account's token is shown once, syncd keeps only its hash: with -o it is
written to a new file (mode 0600, never overwriting one), else printed. Hand
it to the person, who runs fieldctl admin with -token-file FILE.`, `
fieldctl admin accounts add 王芳 -town T01 -o data/wangfang.token
fieldctl admin accounts add "Li Qiang" -o liqiang.token
fieldctl admin -token-file data/wangfang.token devices`)
	town := fs.String("town", "", "scope the account to this town's `unit id` (default: the whole city)")
	out := fs.String("o", "", "write the token to this new `file` (mode 0600) instead of printing it")
	asJSON := fs.Bool("json", false, "print the account as JSON")
	parsed, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	who, err := oneName(name, parsed)
	if err != nil {
		return err
	}
	f, err := newTokenFile(*out)
	if err != nil {
		return err
	}
	conn, actx, err := c.adminConn(ctx)
	if err != nil {
		return dropTokenFile(f, err)
	}
	defer conn.Close()
	resp, err := pb.NewAdminServiceClient(conn).CreateAdminAccount(actx, &pb.CreateAdminAccountRequest{Name: who, TownId: *town})
	if err != nil {
		return dropTokenFile(f, c.rpcError("add account", err))
	}
	return c.showToken(toAccountJSON(resp.GetAccount()), resp.GetToken(), f, *asJSON, "created")
}

// newTokenFile creates the -o file for a new token (nil if path is ""),
// before the call, so that a file that cannot be written does not leave an
// account whose token was lost. It never overwrites a file: that might be
// admin.token or another person's token.
func newTokenFile(path string) (*os.File, error) {
	if path == "" {
		return nil, nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("-o %s: the file exists: name a new file (an existing one is never overwritten)", path)
	}
	if err != nil {
		return nil, fmt.Errorf("-o: %w", err)
	}
	return f, nil
}

// dropTokenFile removes the empty -o file made for a token that never came.
func dropTokenFile(f *os.File, err error) error {
	if f != nil {
		f.Close()
		os.Remove(f.Name())
	}
	return err
}

// showToken writes a new token to f, or prints it, and the account.
func (c *cli) showToken(a accountJSON, token string, f *os.File, asJSON bool, what string) error {
	if f != nil {
		_, werr := fmt.Fprintln(f, token)
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			return fmt.Errorf("account %q %s, but its token could not be written to %s: %w; run fieldctl admin accounts disable and enable to issue a new one", a.Name, what, f.Name(), werr)
		}
	} else {
		a.Token = token
	}
	if asJSON {
		return writeJSON(c.stdout, a)
	}
	t := newTable()
	t.add("account", a.Name)
	t.add("scope", a.scopeText())
	if f != nil {
		t.add("token file", f.Name())
	} else {
		t.add("token", token)
	}
	if err := t.write(c.stdout); err != nil {
		return err
	}
	fmt.Fprintf(c.stderr, "fieldctl: account %s; its token is shown only now: hand it to the person, who runs fieldctl admin -token-file FILE\n", what)
	return nil
}

func accountsList(ctx context.Context, c *cli, name string, args []string) error {
	fs := c.newFlags(name, "[--json]", `
Lists the administrator accounts, disabled ones too: name, scope (city, or
town and its id), when and by whom created, and when disabled. The owner
credential (admin.token) is not an account and is not listed.`, `
fieldctl admin accounts list
fieldctl admin accounts list --json`)
	asJSON := fs.Bool("json", false, "print a JSON array")
	if err := parseCommand(name, fs, args); err != nil {
		return err
	}
	conn, actx, err := c.adminConn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	resp, err := pb.NewAdminServiceClient(conn).ListAdminAccounts(actx, &pb.ListAdminAccountsRequest{})
	if err != nil {
		return c.rpcError("list accounts", err)
	}
	list := []accountJSON{}
	for _, a := range resp.GetAccounts() {
		list = append(list, toAccountJSON(a))
	}
	if *asJSON {
		return writeJSON(c.stdout, list)
	}
	t := newTable("NAME", "SCOPE", "CREATED", "CREATED BY", "DISABLED")
	for _, a := range list {
		disabled := "no"
		if a.Disabled {
			disabled = fmtTime(a.DisabledMs)
		}
		t.add(a.Name, a.scopeText(), fmtTime(a.CreatedMs), a.CreatedBy, disabled)
	}
	return t.write(c.stdout)
}

func accountsDisable(ctx context.Context, c *cli, name string, args []string) error {
	fs := c.newFlags(name, "NAME [--json]", `
Disables an administrator account: its token is refused from its next call
on. The account and its entries in the audit log stay; enable issues it a
new token.`, `
fieldctl admin accounts disable 王芳`)
	asJSON := fs.Bool("json", false, "print the account as JSON")
	parsed, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	who, err := oneName(name, parsed)
	if err != nil {
		return err
	}
	conn, actx, err := c.adminConn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	resp, err := pb.NewAdminServiceClient(conn).DisableAdminAccount(actx, &pb.DisableAdminAccountRequest{Name: who})
	if err != nil {
		return c.rpcError("disable account", err)
	}
	if *asJSON {
		return writeJSON(c.stdout, toAccountJSON(resp.GetAccount()))
	}
	_, err = fmt.Fprintf(c.stdout, "disabled %s: its token is refused from now on\n", resp.GetAccount().GetName())
	return err
}

func accountsEnable(ctx context.Context, c *cli, name string, args []string) error {
	fs := c.newFlags(name, "NAME [-o FILE] [--json]", `
Makes an administrator account active again with a new token, shown once
(written to -o FILE, or printed); the old token stays refused, so enabling
an account disabled for a lost laptop does not revive that laptop's copy.`, `
fieldctl admin accounts enable 王芳 -o data/wangfang.token`)
	out := fs.String("o", "", "write the new token to this new `file` (mode 0600) instead of printing it")
	asJSON := fs.Bool("json", false, "print the account as JSON")
	parsed, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	who, err := oneName(name, parsed)
	if err != nil {
		return err
	}
	f, err := newTokenFile(*out)
	if err != nil {
		return err
	}
	conn, actx, err := c.adminConn(ctx)
	if err != nil {
		return dropTokenFile(f, err)
	}
	defer conn.Close()
	resp, err := pb.NewAdminServiceClient(conn).EnableAdminAccount(actx, &pb.EnableAdminAccountRequest{Name: who})
	if err != nil {
		return dropTokenFile(f, c.rpcError("enable account", err))
	}
	return c.showToken(toAccountJSON(resp.GetAccount()), resp.GetToken(), f, *asJSON, "enabled")
}
