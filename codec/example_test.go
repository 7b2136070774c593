package codec_test

import (
	"fmt"
	"log"
	"os"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"

	"github.com/companionsync/companionsync/codec"
)

// Example shows where the converters go: every client, and every replayer.
func Example() {
	ring, err := codec.ParseKeys(os.Getenv(codec.KeysEnv)) // "k2:<base64>,k1:<base64>", k2 active
	if err != nil {
		log.Fatal(err) // e.g. parse keys: key "k1" is 16 bytes, want 32: ...
	}
	dc, fc := codec.NewConverters(ring)

	_ = client.Options{HostPort: "localhost:7233", DataConverter: dc, FailureConverter: fc}
	_ = worker.WorkflowReplayerOptions{DataConverter: dc, FailureConverter: fc}
	fmt.Println(ring.ActiveID())
}
