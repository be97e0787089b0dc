// Package badpkg is what the binding checks must catch: gobind skips a
// function that takes a map and a method that returns a channel, and says
// so only in a comment of the generated sources. TestTheChecksCatchASkip
// binds it and expects both to be reported.
package badpkg

// Counter is bound, but one of its methods is not.
type Counter struct{ n int64 }

// NewCounter is bound.
func NewCounter() *Counter { return &Counter{} }

// Add is bound.
func (c *Counter) Add(d int64) int64 { c.n += d; return c.n }

// Ticks cannot be bound: channels do not cross.
func (c *Counter) Ticks() chan int64 { return nil }

// Tally cannot be bound: maps do not cross.
func Tally(m map[string]int64) int64 { return int64(len(m)) }

// Kind is bound. Its doc says "unsupported" and "skipped" on purpose: a
// doc comment gobind copies into Javadoc is not a skip notice.
func Kind(name string) string { return name }
