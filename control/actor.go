package control

import (
	"context"
	"fmt"
	"os"
	"os/user"

	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/workflow"

	"github.com/companionsync/companionsync/contract"
)

// The actor of a request: who asked, for the connection's audit trail. It
// travels in the contract.ActorHeader header of the update, signal or start
// the client sends, written by the context propagator ActorPropagator; a
// client dialled with Dial has it. WithActor names the actor of one call;
// without it the client's default actor is sent (DialOptions.Actor).

type actorKey struct{}

// WithActor returns ctx naming actor as the one who asks for the requests
// made with it.
func WithActor(ctx context.Context, actor string) context.Context {
	return context.WithValue(ctx, actorKey{}, actor)
}

// ActorPropagator writes the actor of each request into its header: the
// one WithActor set on the call's context, else defaultActor. Add it to
// client.Options.ContextPropagators of a client not dialled with Dial.
func ActorPropagator(defaultActor string) workflow.ContextPropagator {
	return actorPropagator{def: defaultActor}
}

type actorPropagator struct{ def string }

func (p actorPropagator) Inject(ctx context.Context, w workflow.HeaderWriter) error {
	actor, _ := ctx.Value(actorKey{}).(string)
	if actor == "" {
		actor = p.def
	}
	if actor == "" {
		return nil
	}
	payload, err := converter.GetDefaultDataConverter().ToPayload(actor)
	if err != nil {
		return fmt.Errorf("encode the actor header: %w", err)
	}
	w.Set(contract.ActorHeader, payload)
	return nil
}

// Workflows read the header themselves; nothing is carried further.
func (actorPropagator) InjectFromWorkflow(workflow.Context, workflow.HeaderWriter) error { return nil }
func (actorPropagator) Extract(ctx context.Context, _ workflow.HeaderReader) (context.Context, error) {
	return ctx, nil
}
func (actorPropagator) ExtractToWorkflow(ctx workflow.Context, _ workflow.HeaderReader) (workflow.Context, error) {
	return ctx, nil
}

// DefaultActor is USER@HOST of this process, the actor starter sends
// unless told otherwise.
func DefaultActor() string {
	name := os.Getenv("USER")
	if u, err := user.Current(); err == nil && u.Username != "" {
		name = u.Username
	}
	host, _ := os.Hostname()
	switch {
	case name == "" && host == "":
		return fmt.Sprintf("pid %d", os.Getpid())
	case host == "":
		return name
	}
	return name + "@" + host
}

// clientIdentity is the SDK's default client identity, PID@HOST, the
// actor of a client dialled without one.
func clientIdentity() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%d@%s", os.Getpid(), host)
}

// or is v, or def when v is empty.
func or(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
