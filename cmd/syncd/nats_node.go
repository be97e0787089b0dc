package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"

	"github.com/fieldsync/fieldsync/domain"
	"github.com/fieldsync/fieldsync/server"
)

const natsUsage = `Usage: syncd nats -config FILE

syncd nats runs one node of the NATS cluster a province's regions publish
to: a nats-server, built into syncd, so that an operator needs nothing but
syncd on the three NATS machines. FILE is a standard nats-server
configuration file (https://docs.nats.io/running-a-nats-service/configuration):
its client port, cluster routes, JetStream store and accounts and users
are all taken from it. It logs to stderr (or to log_file when FILE sets
one) and stops on SIGINT or SIGTERM.

Run three, one per machine, each with its own FILE (server_name and
addresses differ), then start each region's syncd on all three:

  syncd -region xiaonan -changelog-replicas 3 \
    -nats nats://syncd:SYNCD-PASSWORD@10.0.0.1:4222,nats://syncd:SYNCD-PASSWORD@10.0.0.2:4222,nats://syncd:SYNCD-PASSWORD@10.0.0.3:4222

A stream with 3 replicas survives the loss of any one node. Every region's
stream reserves its -changelog-max-bytes (48GiB by default) of each node's
max_file_store: size max_file_store for all the regions' streams and HQ's
(FIELDSYNC_HQ holds every region's changes again).

An example FILE for the first of three nodes (10.0.0.1; the others change
server_name, the addresses and the store directory). The user syncd may do
everything in the account (regions' syncds, and fieldctl hq stream); the
user hq may only read FIELDSYNC_HQ and keep consumers on it (the HQ page,
fieldctl hq tail). Replace the passwords (nats-server also takes bcrypt
hashes: $2a$...); beyond a private network add tls { } blocks to the client
and cluster sections. A password user gets its replies under _INBOX, where
it could also read other users' replies; an NKey user ({ nkey: U... } with
subscribe _INBOX.hq.<its key>.> instead of _INBOX.>) cannot: fieldctl hq
connects with that inbox prefix when given -nats-nkey.

`

// natsExample is the example configuration of node i (1-based) of a
// cluster whose nodes listen for clients on hosts[k]:clientPorts[k] and
// for each other on hosts[k]:routePorts[k], storing JetStream in store.
// syncd nats -h prints it; the tests run a cluster from it.
func natsExample(i int, hosts []string, clientPorts, routePorts []int, store, syncdPassword, hqPassword string) string {
	var routes []string
	for k := range hosts {
		if k != i-1 {
			routes = append(routes, fmt.Sprintf("nats://%s:%d", hosts[k], routePorts[k]))
		}
	}
	perms := server.HQPermissionsFor("x", domain.HQStreamName)
	quote := func(list []string) string {
		q := make([]string, len(list))
		for k, s := range list {
			q[k] = `"` + s + `"`
		}
		return strings.Join(q, ",\n          ")
	}
	return fmt.Sprintf(`# fieldsync NATS node %[1]d of %[2]d
server_name: fieldsync-nats-%[1]d
listen: %[3]s:%[4]d

jetstream {
  store_dir: %[5]q
  max_file_store: 500GB
  max_memory_store: 1GB
}

cluster {
  name: fieldsync
  listen: %[3]s:%[6]d
  routes: [
    %[7]s
  ]
}

accounts {
  FIELDSYNC {
    jetstream: enabled
    users: [
      { user: syncd, password: %[8]q }
      { user: hq, password: %[9]q,
        permissions: {
          publish: { allow: [
          %[10]s
          ] }
          subscribe: { allow: ["_INBOX.>", "fieldsync.changes.>"] }
        }
      }
    ]
  }
}
`, i, len(hosts), hosts[i-1], clientPorts[i-1], store, routePorts[i-1], strings.Join(routes, "\n    "), syncdPassword, hqPassword, quote(perms.Publish.Allow))
}

// runNATS is syncd nats: one nats-server node from a configuration file,
// until ctx ends.
func runNATS(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("syncd nats", flag.ContinueOnError)
	fs.SetOutput(stderr)
	config := fs.String("config", "", "nats-server configuration `file` (required)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), natsUsage)
		fmt.Fprint(fs.Output(), natsExample(1, []string{"10.0.0.1", "10.0.0.2", "10.0.0.3"}, []int{4222, 4222, 4222}, []int{6222, 6222, 6222},
			"/var/lib/fieldsync-nats", "SYNCD-PASSWORD", "HQ-PASSWORD"))
		fmt.Fprint(fs.Output(), "\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errFlags, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("syncd nats: unexpected argument %q: it takes -config FILE (see syncd nats -h)", fs.Arg(0))
	}
	if *config == "" {
		return errors.New("syncd nats: -config FILE is required: a nats-server configuration file (syncd nats -h shows one for a 3-node cluster)")
	}
	opts, err := natsserver.ProcessConfigFile(*config)
	if err != nil {
		return fmt.Errorf("syncd nats: -config %s: %w", *config, err)
	}
	if !opts.JetStream {
		return fmt.Errorf("syncd nats: -config %s has no jetstream { } block: the changelog streams need JetStream (syncd nats -h shows an example)", *config)
	}
	opts.NoSigs = true // ctx stops it
	ns, err := natsserver.NewServer(opts)
	if err != nil {
		return fmt.Errorf("syncd nats: -config %s: %w", *config, err)
	}
	if opts.LogFile != "" {
		ns.ConfigureLogger()
	} else {
		ns.SetLoggerV2(&lineLogger{w: stderr, debug: opts.Debug, trace: opts.Trace}, opts.Debug, opts.Trace, false)
	}
	go ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		ns.Shutdown()
		ns.WaitForShutdown()
		return fmt.Errorf("syncd nats: not ready after 30s: are its ports (client %s:%d, cluster %s:%d) free? (see the log above)", opts.Host, opts.Port, opts.Cluster.Host, opts.Cluster.Port)
	}
	cluster := "no cluster (a single node: streams get 1 replica)"
	if opts.Cluster.Port != 0 {
		cluster = fmt.Sprintf("cluster %s on %s:%d, %d route(s)", opts.Cluster.Name, opts.Cluster.Host, opts.Cluster.Port, len(opts.Routes))
	}
	fmt.Fprintf(stdout, "syncd nats: node %s: clients on %s, %s, JetStream store %s\n", ns.Name(), ns.ClientURL(), cluster, opts.StoreDir)
	down := make(chan struct{})
	go func() { ns.WaitForShutdown(); close(down) }()
	select {
	case <-ctx.Done():
		fmt.Fprintln(stdout, "syncd nats: stopping")
		ns.Shutdown()
		<-down
	case <-down:
		return errors.New("syncd nats: the server stopped (see the log above)")
	}
	fmt.Fprintln(stdout, "syncd nats: stopped")
	return nil
}

// lineLogger writes nats-server's log lines to w, as nats-server does to
// stderr.
type lineLogger struct {
	mu           sync.Mutex
	w            io.Writer
	debug, trace bool
}

func (l *lineLogger) line(level, format string, v ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(l.w, "%s [%s] %s\n", time.Now().UTC().Format("2006/01/02 15:04:05.000000"), level, fmt.Sprintf(format, v...))
}

func (l *lineLogger) Noticef(format string, v ...any) { l.line("INF", format, v...) }
func (l *lineLogger) Warnf(format string, v ...any)   { l.line("WRN", format, v...) }
func (l *lineLogger) Errorf(format string, v ...any)  { l.line("ERR", format, v...) }
func (l *lineLogger) Fatalf(format string, v ...any)  { l.line("FTL", format, v...) }
func (l *lineLogger) Debugf(format string, v ...any) {
	if l.debug {
		l.line("DBG", format, v...)
	}
}
func (l *lineLogger) Tracef(format string, v ...any) {
	if l.trace {
		l.line("TRC", format, v...)
	}
}
