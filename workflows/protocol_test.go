package workflows

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestProtocolTable: the table holds exactly the supported protocols, the
// current one stays put and publishes, and every earlier one moves.
func TestProtocolTable(t *testing.T) {
	checked := 0
	for p := OldestProtocol; p <= CurrentProtocol; p++ {
		r, ok := protocols[p]
		if !ok {
			t.Errorf("protocol %d is supported but has no row", p)
			continue
		}
		if r.moves != (p != CurrentProtocol) {
			t.Errorf("protocol %d: moves = %v; only earlier protocols move", p, r.moves)
		}
		checked++
	}
	if len(protocols) != checked {
		t.Errorf("the table has %d rows; %d protocols are supported", len(protocols), checked)
	}
	if !protocols[CurrentProtocol].publishes {
		t.Error("the current protocol must publish its number")
	}
	for _, p := range []Protocol{OldestProtocol - 1, CurrentProtocol + 1} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("checkProtocol accepted protocol %d", p)
				}
			}()
			checkProtocol("test", p)
		}()
	}
}

// TestChosenProtocols checks that the version recorded by a new
// connection's protocol choice maps onto a supported protocol, and that the
// newest version chooses CurrentProtocol.
func TestChosenProtocols(t *testing.T) {
	require.Equal(t, CurrentProtocol, chosenProtocols[chosenProtocolVersion])
	for v, p := range chosenProtocols {
		require.Contains(t, SupportedProtocols(), p, "version %d", v)
	}
}
