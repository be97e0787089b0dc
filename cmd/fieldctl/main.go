// Command fieldctl is fieldsync's command line, in three groups:
//
//	fieldctl admin   import the org, assign households, issue enrollment
//	                 codes, list and revoke devices (admin credential)
//	fieldctl device  a field device in a local database file: enroll,
//	                 record visits, disputes and events offline, sync
//	fieldctl hq      export every record, tail the JetStream changelog,
//	                 run the HQ page, issue its sign-in codes, read its audit
//
// fieldctl -h and fieldctl <group> -h list the commands; every command has
// its own -h with an example. Listings and statuses take --json. Chinese
// text is printed as it is stored, byte for byte, in both forms.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/fieldsync/fieldsync/domain"
	"github.com/fieldsync/fieldsync/internal/buildinfo"
	"github.com/fieldsync/fieldsync/internal/cliflags"
)

// appVersion is sent to syncd and shown in fieldctl admin devices.
const appVersion = "fieldctl/0.1"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

// exitCode reports err on stderr and returns the process status: 0 for
// success and -h, 2 for a command line mistake, 3 for a sync that the
// server refused some work in (exitRejected), 1 for anything else.
func exitCode(err error, stderr io.Writer) int {
	var ue *usageError
	var se *statusError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		if !ue.reported {
			fmt.Fprintln(stderr, "fieldctl:", escapeLines(ue.msg))
		}
		return 2
	case errors.As(err, &se):
		fmt.Fprintln(stderr, "fieldctl:", se.msg)
		return se.code
	default:
		fmt.Fprintln(stderr, "fieldctl:", escapeLines(err.Error())) // server messages may quote stored text
		return 1
	}
}

// usageError is a mistake on the command line (exit status 2). reported
// says the flag package has already printed it, with the usage.
type usageError struct {
	msg      string
	reported bool
}

func (e *usageError) Error() string { return e.msg }

// exitRejected is the status of a sync that went through but in which the
// server refused some of the device's work for good.
const exitRejected = 3

// statusError is an outcome with an exit status of its own.
type statusError struct {
	code int
	msg  string
}

func (e *statusError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// cli is one invocation: its streams and the options of its group.
type cli struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	now            func() time.Time

	server    string // syncd's gRPC address (admin, hq)
	tokenFile string // the admin credential (admin, hq)
	caFile    string // syncd's CA to pin (admin, hq); "" = tls/ca.pem beside tokenFile
	plaintext bool   // no TLS (admin, hq), for syncd -insecure-plaintext
	db        string // the device database (device)
	keyFile   string // the device database's key (device); "" = a plain database
	lang      string // the language of a device's human output: domain.LangZH or LangEN
	version   bool   // -version: print the build and exit

	regionsFile string       // -regions: a province's regions file (admin)
	region      string       // -region: the region to talk to (admin, with -regions)
	regions     *regionsFile // the parsed -regions, once an admin command runs
	routed      *region      // the region whose syncd the command talks to
}

// Defaults, in one place.
const (
	defaultServer    = "127.0.0.1:7443"
	defaultTokenFile = "./data/admin.token"
	defaultNATSFile  = "./data/nats.url"
	defaultNATSURL   = "nats://127.0.0.1:4222"
	defaultDB        = "./phone.db"
)

// run is fieldctl: it parses args and runs one command.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	c := &cli{stdin: stdin, stdout: stdout, stderr: stderr, now: time.Now,
		server: defaultServer, tokenFile: defaultTokenFile, db: defaultDB, lang: domain.LangZH}
	return c.dispatch(ctx, "fieldctl", rootCommand(), args)
}

// command is a group of commands (sub set) or one command (run set).
type command struct {
	name    string
	summary string // one line, for the group's list
	about   string // a group's -h text
	flags   func(fs *flag.FlagSet, c *cli)
	sub     []*command
	run     func(ctx context.Context, c *cli, name string, args []string) error
}

func rootCommand() *command {
	return &command{
		name: "fieldctl",
		about: `fieldctl is fieldsync's command line: the administrator's tools, a field
device in a local database file, and HQ's export and changelog reader.
The groups' flags can also be set from the environment (FIELDCTL_SERVER,
FIELDCTL_TOKEN_FILE, FIELDCTL_CA_FILE, FIELDCTL_PLAINTEXT, FIELDCTL_REGIONS,
FIELDCTL_DB, FIELDCTL_KEY_FILE, FIELDCTL_LANG); a flag on the command line wins.`,
		flags: func(fs *flag.FlagSet, c *cli) {
			fs.BoolVar(&c.version, "version", c.version, "print fieldctl's version (module, VCS revision and time, Go) and exit")
		},
		sub: []*command{adminCommand(), deviceCommand(), hqCommand()},
	}
}

// dispatch parses a group's flags and runs the command named next.
func (c *cli) dispatch(ctx context.Context, path string, cmd *command, args []string) error {
	return c.dispatchIn(ctx, path, cmd, args, nil)
}

// dispatchIn is dispatch below the groups whose flag sets are in groups
// (outermost first): their flags are also taken after the command's name.
func (c *cli) dispatchIn(ctx context.Context, path string, cmd *command, args []string, groups []*flag.FlagSet) error {
	fs := flag.NewFlagSet(path, flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	if cmd.flags != nil {
		cmd.flags(fs, c)
	}
	hasFlags := false
	fs.VisitAll(func(*flag.Flag) { hasFlags = true })
	fs.Usage = func() {
		w := fs.Output()
		opt := ""
		if hasFlags {
			opt = " [flags]"
		}
		fmt.Fprintf(w, "Usage: %s%s <command> [arguments]\n\n%s\n\nCommands:\n", path, opt, cmd.about)
		width := 0
		for _, s := range cmd.sub {
			width = max(width, len(s.name))
		}
		for _, s := range cmd.sub {
			fmt.Fprintf(w, "  %-*s  %s\n", width, s.name, s.summary)
		}
		if hasFlags {
			fmt.Fprintf(w, "\nFlags:\n")
			fs.PrintDefaults()
			if path != "fieldctl" {
				fmt.Fprintf(w, "\n%s", cliflags.Usage("FIELDCTL", "token-file"))
			}
		}
		fmt.Fprintf(w, "\nRun '%s <command> -h' for a command's flags and an example.\n", path)
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := cliflags.ApplyEnv(fs, "FIELDCTL"); err != nil {
		return &usageError{msg: err.Error()}
	}
	if c.version {
		fmt.Fprintln(c.stdout, buildinfo.Line("fieldctl"))
		return nil
	}
	if fs.NArg() == 0 || fs.Arg(0) == "help" {
		fs.Usage()
		if fs.NArg() == 0 {
			return &usageError{msg: "missing command", reported: true}
		}
		return flag.ErrHelp
	}
	name := fs.Arg(0)
	for _, s := range cmd.sub {
		if s.name != name {
			continue
		}
		groups := append(groups, fs)
		if s.run != nil {
			rest, err := groupFlags(path+" "+name, groups, fs.Args()[1:])
			if err != nil {
				return err
			}
			return flagHint(path+" "+name, s.run(ctx, c, path+" "+name, rest))
		}
		return c.dispatchIn(ctx, path+" "+name, s, fs.Args()[1:], groups)
	}
	names := make([]string, len(cmd.sub))
	for i, s := range cmd.sub {
		names[i] = s.name
	}
	prefix := ""
	if path != "fieldctl" {
		prefix = short(path) + ": "
	}
	return usagef("%sunknown command %q: want one of %s (see %s -h)", prefix, name, strings.Join(names, ", "), path)
}

// parseFlags parses a group's flags, which end at its command's name.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &usageError{msg: err.Error(), reported: true}
	}
	return nil
}

// newFlags returns a command's flag set; its -h prints synopsis, what the
// command does and an example.
func (c *cli) newFlags(name, synopsis, about, example string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "Usage: %s %s\n\n%s\n", name, synopsis, strings.TrimSpace(about))
		if example != "" {
			fmt.Fprintf(w, "\nExample:\n")
			for _, line := range strings.Split(strings.TrimSpace(example), "\n") {
				fmt.Fprintf(w, "  %s\n", line)
			}
		}
		n := 0
		fs.VisitAll(func(*flag.Flag) { n++ })
		if n > 0 {
			fmt.Fprintf(w, "\nFlags:\n")
			fs.PrintDefaults()
		}
	}
	return fs
}

// parseArgs parses a command's flags wherever they stand among its
// arguments (so "list visit --json" works) and returns the arguments. A
// "--" ends the flags.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, &usageError{msg: err.Error(), reported: true}
		}
		rest := fs.Args()
		if used := len(args) - len(rest); used > 0 && args[used-1] == "--" {
			return append(pos, rest...), nil
		}
		if len(rest) == 0 {
			return pos, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// given returns the names of the flags set on the command line.
func given(fs *flag.FlagSet) map[string]bool {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	return set
}

// short drops "fieldctl " from a command's name, for messages that the
// exit path prefixes with "fieldctl: ".
func short(name string) string {
	if s := strings.TrimPrefix(name, "fieldctl "); s != name {
		return s
	}
	return name
}

// noArgs rejects arguments a command does not take.
func noArgs(name string, args []string) error {
	if len(args) > 0 {
		return usagef("%s: unexpected argument %q (see %s -h)", short(name), args[0], name)
	}
	return nil
}

// parseCommand parses a command that takes flags only, and checks that the
// flags named in need were given.
func parseCommand(name string, fs *flag.FlagSet, args []string, need ...string) error {
	args, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if err := noArgs(name, args); err != nil {
		return err
	}
	if len(need) > 0 {
		return required(name, fs, need...)
	}
	return nil
}

// groupFlags takes out of a command's arguments the flags of its groups
// (fieldctl admin devices -server X is fieldctl admin -server X devices),
// sets them and returns the rest. The groups' flags are looked up from the
// innermost group out; a "--" ends the flags.
func groupFlags(name string, groups []*flag.FlagSet, args []string) ([]string, error) {
	var rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return append(rest, args[i:]...), nil
		}
		flagName, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		var fs *flag.FlagSet
		var f *flag.Flag
		for j := len(groups) - 1; j >= 0 && strings.HasPrefix(a, "-") && a != "-"; j-- {
			if f = groups[j].Lookup(flagName); f != nil {
				fs = groups[j]
				break
			}
		}
		if f == nil {
			rest = append(rest, a)
			continue
		}
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() && !hasValue {
			value, hasValue = "true", true
		}
		if !hasValue {
			if i+1 == len(args) {
				return nil, usagef("%s: flag needs an argument: -%s", short(name), flagName)
			}
			i++
			value = args[i]
		}
		if err := fs.Set(flagName, value); err != nil {
			return nil, usagef("%s: invalid value %q for flag -%s: %v", short(name), value, flagName, err)
		}
	}
	return rest, nil
}

// flagHint adds to "flag provided but not defined" for a flag of another
// group of commands where that flag belongs.
func flagHint(name string, err error) error {
	var ue *usageError
	if !errors.As(err, &ue) {
		return err
	}
	_, flagName, ok := strings.Cut(ue.msg, "flag provided but not defined: -")
	if !ok {
		return err
	}
	var in []string
	for _, g := range rootCommand().sub {
		if g.flags == nil {
			continue
		}
		fs := flag.NewFlagSet(g.name, flag.ContinueOnError)
		g.flags(fs, &cli{})
		if fs.Lookup(flagName) != nil {
			in = append(in, "fieldctl "+g.name)
		}
	}
	if len(in) == 0 {
		return err
	}
	msg := fmt.Sprintf("%s: -%s is a flag of %s commands, not of this one", short(name), flagName, strings.Join(in, " and "))
	if flagName == "server" && strings.HasPrefix(name, "fieldctl device") {
		msg += ": a device syncs with the server its enrollment code named (fieldctl device status shows it)"
	}
	return &usageError{msg: msg}
}
