// Package cliflags lets the environment set a command's flags, for
// systemd units and containers: flag -nats-max-store of syncd is read from
// SYNCD_NATS_MAX_STORE (the prefix, then the name upper-cased with dashes
// as underscores). A flag given on the command line wins over its
// variable; an empty variable counts as unset.
package cliflags

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
)

// EnvName is the variable that sets flag name: prefix_NAME.
func EnvName(prefix, name string) string {
	return prefix + "_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// notFromEnv are flags the environment does not set: they ask for
// something once (print the version) rather than configure.
var notFromEnv = map[string]bool{"version": true, "h": true, "help": true}

// ApplyEnv sets each flag of fs that the command line did not give from
// its environment variable (EnvName(prefix, name)), if that is set and not
// empty, except the flags named in except. Call it after fs.Parse. A value
// the flag refuses is an error that names the variable.
func ApplyEnv(fs *flag.FlagSet, prefix string, except ...string) error {
	return applyEnv(fs, prefix, os.LookupEnv, except)
}

func applyEnv(fs *flag.FlagSet, prefix string, lookup func(string) (string, bool), except []string) error {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] || notFromEnv[f.Name] || slices.Contains(except, f.Name) {
			return
		}
		env := EnvName(prefix, f.Name)
		v, ok := lookup(env)
		if !ok || v == "" {
			return
		}
		if err := fs.Set(f.Name, v); err != nil {
			errs = append(errs, fmt.Errorf("environment variable %s=%q: invalid value for -%s: %v (fix or unset the variable, or give -%s on the command line)", env, v, f.Name, err, f.Name))
		}
	})
	return errors.Join(errs...)
}

// Usage is what a command's -h adds, after its flags, about the
// environment; example is one of its flags with a dash in its name.
func Usage(prefix, example string) string {
	return fmt.Sprintf("The flags above can also be set from the environment: %s_<FLAG>,\n"+
		"upper case with dashes as underscores, e.g. %s for -%s.\n"+
		"A flag on the command line wins over its variable; an empty one counts as unset.\n",
		prefix, EnvName(prefix, example), example)
}

// checked is a string flag whose value is checked when set, so that a bad
// value from the environment is reported with its variable's name.
type checked struct {
	p     *string
	check func(string) error
}

// Checked is a string flag stored in p whose values check accepts.
func Checked(p *string, check func(string) error) flag.Value { return &checked{p: p, check: check} }

func (c *checked) String() string {
	if c == nil || c.p == nil {
		return ""
	}
	return *c.p
}

func (c *checked) Set(v string) error {
	if err := c.check(v); err != nil {
		return err
	}
	*c.p = v
	return nil
}

// OneOf is a check that accepts only the given words.
func OneOf(words ...string) func(string) error {
	return func(v string) error {
		if slices.Contains(words, v) {
			return nil
		}
		return fmt.Errorf("%q: want %s", v, strings.Join(words, " or "))
	}
}
