package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
)

// Default limits of the embedded JetStream. Left unset, nats-server caps
// its store at 75% of the disk that is free when it starts, so a stream
// larger than that stalls after a restart on a fuller disk although it fit
// before: syncd sets the limit itself.
const (
	DefaultNATSMaxStore  int64 = 64 << 30  // a city's changelog is a few GiB
	DefaultNATSMaxMemory int64 = 256 << 20 // the changelog is on disk; nothing of ours is in memory
)

// NATSOption changes how EmbeddedNATS starts its server.
type NATSOption func(*natsserver.Options)

// WithJetStreamLimits sets the embedded JetStream's store and memory
// limits in bytes (0 keeps the default).
func WithJetStreamLimits(maxStore, maxMemory int64) NATSOption {
	return func(o *natsserver.Options) {
		if maxStore > 0 {
			o.JetStreamMaxStore = maxStore
		}
		if maxMemory > 0 {
			o.JetStreamMaxMemory = maxMemory
		}
	}
}

// EmbeddedNATS starts an in-process nats-server with JetStream storing in
// dir, listening on host:port (port -1 picks a free one).
func EmbeddedNATS(dir, host string, port int, opts ...NATSOption) (*natsserver.Server, error) {
	o := &natsserver.Options{
		ServerName:         "fieldsync-embedded",
		Host:               host,
		Port:               port,
		JetStream:          true,
		JetStreamMaxStore:  DefaultNATSMaxStore,
		JetStreamMaxMemory: DefaultNATSMaxMemory,
		StoreDir:           dir,
		NoSigs:             true,
		NoLog:              true,
	}
	for _, f := range opts {
		f(o)
	}
	ns, err := natsserver.NewServer(o)
	a, _ := authByOpts.LoadAndDelete(o)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	if a != nil {
		a.(*NATSAuth).started(ns)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		return nil, fmt.Errorf("embedded nats: not ready after 10s (is %s:%d free?)", host, port)
	}
	return ns, nil
}

// RecoverJetStream returns a relay recover hook (Relay.SetRecover) for an
// embedded server; call it while JetStream runs, to note the
// configuration to start it with again. A write that finds the disk full
// either turns JetStream off ("JetStream out of space, will be DISABLED")
// or leaves the stream's store with a sticky write error, after which the
// stream answers no publish: either way JetStream has to start again. This
// starts it again in process, with the same store and limits (it reads its
// streams back from the store directory; the relay's next check repairs
// whatever the failed writes left). While the disk is still full the next
// publish fails again, and the relay calls this again later.
func RecoverJetStream(ns *natsserver.Server, log *slog.Logger) func(context.Context) error {
	started := ns.JetStreamConfig()
	return func(ctx context.Context) error {
		if started == nil {
			return errors.New("embedded JetStream's configuration is unknown (it was off when syncd started): restart syncd")
		}
		if ns.JetStreamEnabled() {
			log.Warn("nats: stopping the embedded JetStream to start it again (a stream whose write failed answers no publish until then)", "store", started.StoreDir)
			if err := ns.ShutdownJetStream(); err != nil {
				return fmt.Errorf("stop embedded JetStream: %w", err)
			}
		} else {
			log.Warn("nats: the embedded JetStream is off (it turns itself off when a write finds the disk full); starting it again", "store", started.StoreDir)
		}
		jc := *started
		// EnableJetStream puts its "jetstream" directory under the one it
		// is given, as at the first start.
		if filepath.Base(jc.StoreDir) == natsserver.JetStreamStoreDir {
			jc.StoreDir = filepath.Dir(jc.StoreDir)
		}
		if err := ns.EnableJetStream(&jc); err != nil {
			return fmt.Errorf("start embedded JetStream again: %w (is the disk still full?)", err)
		}
		log.Info("nats: embedded JetStream running again", "store", started.StoreDir, "max_store", ByteSize(jc.MaxStore).String())
		return nil
	}
}

// ByteSize is a size in bytes as a flag: a number with an optional
// suffix KiB, MiB, GiB or TiB (or K, M, G, T, powers of 1024 too).
type ByteSize int64

func (b ByteSize) String() string {
	if b == 0 {
		return "" // unset: the default
	}
	for _, u := range []struct {
		s string
		n int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if b > 0 && int64(b)%u.n == 0 {
			return strconv.FormatInt(int64(b)/u.n, 10) + u.s
		}
	}
	return strconv.FormatInt(int64(b), 10)
}

// Set parses s.
func (b *ByteSize) Set(s string) error {
	num := strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range []struct {
		s string
		n int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"T", 1 << 40}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}, {"B", 1}} {
		if cut, ok := strings.CutSuffix(num, u.s); ok {
			num, mult = strings.TrimSpace(cut), u.n
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/mult {
		return fmt.Errorf("%q: want a positive size such as 64GiB, 500MiB or 1048576", s)
	}
	*b = ByteSize(n * mult)
	return nil
}
