package testenv

import (
	"net"
	"testing"
	"time"
)

// A fixed address held by someone else is waited for, not failed at once.
func TestListenWaitsForTheAddress(t *testing.T) {
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := held.Addr().String()
	go func() {
		time.Sleep(300 * time.Millisecond)
		held.Close()
	}()
	lis, err := listen(addr)
	if err != nil {
		t.Fatalf("listen %s after its holder let go: %v", addr, err)
	}
	lis.Close()
}
