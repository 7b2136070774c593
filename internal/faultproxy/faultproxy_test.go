package faultproxy

import (
	"bufio"
	"net"
	"testing"
	"time"
)

// echo starts a loopback echo server.
func echo(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if _, err := c.Write([]byte(line)); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func roundTrip(c net.Conn) error {
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return err
	}
	_, err := bufio.NewReader(c).ReadString('\n')
	return err
}

func TestProxyPassesRefusesCutsAndDelays(t *testing.T) {
	p, err := Start(echo(t))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	if err := roundTrip(c); err != nil {
		t.Fatalf("through the proxy: %v", err)
	}

	p.Down()
	if err := roundTrip(c); err == nil {
		t.Fatal("an open connection survived Down")
	}
	c2, err := net.Dial("tcp", p.Addr())
	if err == nil {
		if err := roundTrip(c2); err == nil {
			t.Fatal("a new connection passed while down")
		}
	}
	if _, refused := p.Counts(); refused == 0 {
		t.Fatal("no connection counted as refused")
	}

	p.Up()
	c3, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	if err := roundTrip(c3); err != nil {
		t.Fatalf("after Up: %v", err)
	}

	p.Delay(300 * time.Millisecond)
	start := time.Now()
	if err := roundTrip(c3); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < 300*time.Millisecond {
		t.Fatalf("a delayed round trip took %s", took)
	}
	p.Delay(0)

	p.Cut()
	if err := roundTrip(c3); err == nil {
		t.Fatal("a connection survived Cut")
	}
}
