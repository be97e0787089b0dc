package main

import (
	"context"
	"fmt"
	"strings"

	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// usersCommand: fieldctl admin users disable|enable.
func usersCommand() *command {
	return &command{
		name:    "users",
		summary: "disable or enable a person (their devices and enrollment codes)",
		about: `Disabling a person (party member, mediator, secretary, HQ user) revokes
every device of theirs (each wipes its data at its next contact), cancels
their outstanding enrollment codes, and refuses new codes until they are
enabled again. Enabling does not bring devices back: each enrolls again
with a new code.`,
		sub: []*command{
			{name: "disable", summary: "revoke a person's devices, cancel their codes, refuse new codes", run: adminUserDisable},
			{name: "enable", summary: "let a disabled person be given enrollment codes again", run: adminUserEnable},
		},
	}
}

// codesCommand: fieldctl admin codes list|cancel.
func codesCommand() *command {
	return &command{
		name:    "codes",
		summary: "list and cancel enrollment codes (by reference: codes are never shown again)",
		about: `syncd keeps only a hash of each enrollment code. A code is named by its
reference: the first 12 hex digits of its SHA-256, the code_ref of the
audit log's create_enrollment_code and enroll_device entries.`,
		sub: []*command{
			{name: "list", summary: "list enrollment codes: reference, user, made, expires, state", run: adminCodesList},
			{name: "cancel", summary: "cancel one code by reference, or all of a user's outstanding codes", run: adminCodesCancel},
		},
	}
}

// oneUser parses a command that takes one user id.
func oneUser(name, synopsis, about, example string, c *cli, args []string) (string, error) {
	fs := c.newFlags(name, synopsis, about, example)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return "", err
	}
	if len(pos) != 1 || strings.TrimSpace(pos[0]) == "" {
		return "", usagef("%s: give one user id (the id column of users.csv), e.g. %s U-m1", short(name), short(name))
	}
	return pos[0], nil
}

func adminUserDisable(ctx context.Context, c *cli, name string, args []string) error {
	user, err := oneUser(name, "USER_ID", `
Disables a person: every device of theirs is revoked (refused from now on,
and wiped at its next contact: work it has not synced is lost with it),
their outstanding enrollment codes are cancelled, and no new code can be
made for them until fieldctl admin users enable. Recorded in the audit log.`, `
fieldctl admin users disable U-m1`, c, args)
	if err != nil {
		return err
	}
	if err := c.routeID(name, "user", user); err != nil {
		return err
	}
	conn, actx, err := c.adminConn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	resp, err := pb.NewAdminServiceClient(conn).DisableUser(actx, &pb.DisableUserRequest{UserId: user})
	if err != nil {
		return c.rpcError("disable", err)
	}
	if resp.GetAlreadyDisabledMs() != 0 {
		fmt.Fprintf(c.stdout, "%s was already disabled (since %s)\n", user, fmtTime(resp.GetAlreadyDisabledMs()))
	} else {
		fmt.Fprintf(c.stdout, "disabled %s: no new enrollment code until fieldctl admin users enable %s\n", user, user)
	}
	fmt.Fprintf(c.stdout, "devices revoked: %s\n", listOrNone(resp.GetRevokedDeviceIds()))
	fmt.Fprintf(c.stdout, "codes cancelled: %s\n", listOrNone(resp.GetCancelledCodeRefs()))
	return nil
}

func adminUserEnable(ctx context.Context, c *cli, name string, args []string) error {
	user, err := oneUser(name, "USER_ID", `
Enables a disabled person again: enrollment codes can be made for them.
Their revoked devices stay revoked; each enrolls again with a new code.
Recorded in the audit log.`, `
fieldctl admin users enable U-m1`, c, args)
	if err != nil {
		return err
	}
	if err := c.routeID(name, "user", user); err != nil {
		return err
	}
	conn, actx, err := c.adminConn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	resp, err := pb.NewAdminServiceClient(conn).EnableUser(actx, &pb.EnableUserRequest{UserId: user})
	if err != nil {
		return c.rpcError("enable", err)
	}
	if resp.GetDisabledMs() == 0 {
		fmt.Fprintf(c.stdout, "%s was not disabled\n", user)
		return nil
	}
	fmt.Fprintf(c.stdout, "enabled %s (disabled since %s): make a new code with fieldctl admin enroll-code -user %s\n", user, fmtTime(resp.GetDisabledMs()), user)
	return nil
}

func listOrNone(xs []string) string {
	if len(xs) == 0 {
		return "none"
	}
	return strings.Join(xs, ", ")
}

// codeJSON is an enrollment code as fieldctl admin codes list --json
// prints it.
type codeJSON struct {
	Ref         string `json:"code_ref"`
	UserID      string `json:"user_id"`
	CreatedMs   int64  `json:"created_ms"`
	ExpiresMs   int64  `json:"expires_ms"`
	UsedMs      int64  `json:"used_ms"`
	CancelledMs int64  `json:"cancelled_ms"`
	State       string `json:"state"` // outstanding, used, cancelled or expired
}

func codeState(x *pb.EnrollmentCode, nowMs int64) string {
	switch {
	case x.GetUsedMs() != 0:
		return "used"
	case x.GetCancelledMs() != 0:
		return "cancelled"
	case nowMs > x.GetExpiresMs():
		return "expired"
	}
	return "outstanding"
}

func adminCodesList(ctx context.Context, c *cli, name string, args []string) error {
	fs := c.newFlags(name, "[--user U] [--json]", `
Lists enrollment codes (every page), oldest first: reference, user, when
made, when it expires, and its state: outstanding (can still enroll a
device), used, cancelled or expired. The codes themselves are never kept,
so never shown.`, `
fieldctl admin codes list
fieldctl admin codes list --user U-m1 --json`)
	user := fs.String("user", "", "only this user's codes")
	asJSON := fs.Bool("json", false, "print a JSON array")
	if err := parseCommand(name, fs, args); err != nil {
		return err
	}
	if *user != "" {
		if err := c.routeID(name, "--user", *user); err != nil {
			return err
		}
	}
	conn, actx, err := c.adminConn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	admin := pb.NewAdminServiceClient(conn)
	now := c.now().UnixMilli()
	out := []codeJSON{}
	for token := ""; ; {
		resp, err := admin.ListEnrollmentCodes(actx, &pb.ListEnrollmentCodesRequest{UserId: *user, PageSize: 1000, PageToken: token})
		if err != nil {
			return c.rpcError("list codes", err)
		}
		for _, x := range resp.GetCodes() {
			out = append(out, codeJSON{Ref: x.GetCodeRef(), UserID: x.GetUserId(), CreatedMs: x.GetCreatedMs(), ExpiresMs: x.GetExpiresMs(),
				UsedMs: x.GetUsedMs(), CancelledMs: x.GetCancelledMs(), State: codeState(x, now)})
		}
		if token = resp.GetNextPageToken(); token == "" {
			break
		}
	}
	if *asJSON {
		return writeJSON(c.stdout, out)
	}
	t := newTable("REF", "USER", "MADE", "EXPIRES", "STATE", "WHEN")
	for _, x := range out {
		when := ""
		switch x.State {
		case "used":
			when = fmtTime(x.UsedMs)
		case "cancelled":
			when = fmtTime(x.CancelledMs)
		}
		made := "unknown"
		if x.CreatedMs != 0 {
			made = fmtTime(x.CreatedMs)
		}
		t.add(x.Ref, x.UserID, made, fmtTime(x.ExpiresMs), x.State, when)
	}
	return t.write(c.stdout)
}

func adminCodesCancel(ctx context.Context, c *cli, name string, args []string) error {
	fs := c.newFlags(name, "REF | --user U", `
Cancels an outstanding enrollment code by its reference (as fieldctl admin
codes list shows it), or with --user every outstanding code of a user. A
cancelled code enrolls nothing. Recorded in the audit log.`, `
fieldctl admin codes cancel 3f2a9c0d41b7
fieldctl admin codes cancel --user U-m1`)
	user := fs.String("user", "", "cancel every outstanding code of this user")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	req := &pb.CancelEnrollmentCodesRequest{UserId: *user}
	switch {
	case len(pos) == 1 && *user == "":
		req.CodeRef = pos[0]
	case len(pos) == 0 && *user != "":
	default:
		return usagef("%s: give one code reference (see fieldctl admin codes list) or --user U, not both", short(name))
	}
	if *user != "" {
		if err := c.routeID(name, "--user", *user); err != nil {
			return err
		}
	}
	conn, actx, err := c.adminConn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	resp, err := pb.NewAdminServiceClient(conn).CancelEnrollmentCodes(actx, req)
	if err != nil {
		return c.rpcError("cancel", err)
	}
	fmt.Fprintf(c.stdout, "codes cancelled: %s\n", listOrNone(resp.GetCancelledCodeRefs()))
	return nil
}
