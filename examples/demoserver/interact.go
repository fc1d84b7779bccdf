package demoserver

import (
	"context"
	"errors"
	"fmt"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// askInputKey names the single input request the ask tool makes.
const askInputKey = "answer"

// AnnounceLogger is the logger name set on the log notifications the
// announce tool sends.
const AnnounceLogger = "airlock-demo/announce"

type askInput struct {
	Question string `json:"question" jsonschema:"question to put to the user (elicitation) or the client's model (sampling)"`
}

type askOutput struct {
	Answer string `json:"answer" jsonschema:"what the client answered"`
	Via    string `json:"via" jsonschema:"how the question was asked: elicitation or sampling"`
}

type announceInput struct {
	Message string `json:"message" jsonschema:"text of the announcement"`
}

// addInteractionTools registers ask and announce.
func (d *demo) addInteractionTools(srv *mcp.Server) {
	mcp.AddTool(srv, &mcp.Tool{
		Name: "ask",
		Description: "Put a question to the client and return its answer as text. Uses form elicitation " +
			"(a form with one string field, \"answer\") when the client declares the elicitation capability, " +
			"otherwise sampling (sampling/createMessage with the question as the user message). " +
			"On protocol 2025-11-25 and older this is a server-to-client request sent on the tools/call " +
			"stream; on 2026-07-28 it is an input-required result the client answers by retrying the call.",
		Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true, OpenWorldHint: new(true)},
	}, ask)
	mcp.AddTool(srv, &mcp.Tool{
		Name: "announce",
		Description: "Send the message to the calling session as a notifications/message log entry at level " +
			"info, detached from this call so it travels on the standalone GET stream. The client only " +
			"receives it after setting a log level of info or lower (logging/setLevel). Needs a stateful session.",
		Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true, OpenWorldHint: new(false)},
	}, announce)
}

// ask uses the SDK's multi round-trip support (SEP-2322): the first
// invocation returns an input request, and the call is invoked again with
// the client's response in InputResponses. For clients on protocol versions
// before 2026-07-28 the SDK's server middleware fulfills the input request
// itself, with ServerSession.Elicit or ServerSession.CreateMessageWithTools
// on the tools/call context, so the client sees a classic server-to-client
// request on the POST stream of that call.
func ask(_ context.Context, req *mcp.CallToolRequest, in askInput) (*mcp.CallToolResult, askOutput, error) {
	if resp, ok := req.Params.InputResponses[askInputKey]; ok {
		out, err := answerFrom(resp)
		if err != nil {
			return nil, askOutput{}, err
		}
		return textResult(out.Answer), out, nil
	}
	if in.Question == "" {
		return nil, askOutput{}, errors.New("ask: question is empty")
	}
	ir, err := inputRequestFor(req.ClientCapabilities(), in.Question)
	if err != nil {
		return nil, askOutput{}, err
	}
	return &mcp.CallToolResult{InputRequests: mcp.InputRequestMap{askInputKey: ir}}, askOutput{}, nil
}

// inputRequestFor picks elicitation or sampling, in that order, according
// to what the client declared.
func inputRequestFor(caps *mcp.ClientCapabilities, question string) (mcp.InputRequest, error) {
	switch {
	case supportsFormElicitation(caps):
		return elicitRequest(question), nil
	case caps != nil && caps.Sampling != nil:
		return samplingRequest(question), nil
	default:
		return nil, errors.New("ask: the client supports neither elicitation nor sampling")
	}
}

// supportsFormElicitation reports whether the client accepts form
// elicitation. A client that declares elicitation with neither mode is
// taken to support forms, as the specification says.
func supportsFormElicitation(caps *mcp.ClientCapabilities) bool {
	if caps == nil || caps.Elicitation == nil {
		return false
	}
	e := caps.Elicitation
	return e.Form != nil || e.URL == nil
}

// elicitRequest asks the user for a one-field form.
func elicitRequest(question string) *mcp.ElicitParams {
	return &mcp.ElicitParams{
		Mode:    "form",
		Message: question,
		RequestedSchema: map[string]any{
			"type": "object",
			"properties": map[string]any{
				"answer": map[string]any{"type": "string", "description": "Your answer"},
			},
			"required": []string{"answer"},
		},
	}
}

// samplingRequest asks the client's model to answer question.
func samplingRequest(question string) *mcp.CreateMessageParams {
	return &mcp.CreateMessageParams{
		Messages:  []*mcp.SamplingMessage{{Role: "user", Content: &mcp.TextContent{Text: question}}},
		MaxTokens: 512,
	}
}

// answerFrom extracts the text of the client's response to the ask input
// request.
func answerFrom(resp mcp.InputResponse) (askOutput, error) {
	switch r := resp.(type) {
	case *mcp.ElicitResult:
		return elicitAnswer(r)
	case *mcp.CreateMessageWithToolsResult:
		return samplingAnswer(r.Content)
	case *mcp.CreateMessageResult:
		return samplingAnswer([]mcp.Content{r.Content})
	default:
		return askOutput{}, fmt.Errorf("ask: unexpected response of type %T", resp)
	}
}

func elicitAnswer(r *mcp.ElicitResult) (askOutput, error) {
	if r.Action != "accept" {
		return askOutput{}, fmt.Errorf("ask: the user chose to %s", r.Action)
	}
	answer, ok := r.Content[askInputKey].(string)
	if !ok {
		return askOutput{}, errors.New("ask: the elicitation result has no answer field")
	}
	return askOutput{Answer: answer, Via: "elicitation"}, nil
}

func samplingAnswer(content []mcp.Content) (askOutput, error) {
	for _, c := range content {
		if t, ok := c.(*mcp.TextContent); ok {
			return askOutput{Answer: t.Text, Via: "sampling"}, nil
		}
	}
	return askOutput{}, errors.New("ask: the sampling result has no text content")
}

// announce logs with a context that is not derived from the call's context:
// the Streamable HTTP transport routes a message written with the context of
// an incoming request to that request's stream, and anything else to the
// standalone GET stream (see streamableServerConn.Write in the SDK). Even
// context.WithoutCancel(ctx) would keep the request ID and so the routing.
//
// Clients observe it with mcp.ClientOptions.LoggingMessageHandler, after
// ClientSession.SetLoggingLevel with level "info" or lower.
func announce(_ context.Context, req *mcp.CallToolRequest, in announceInput) (*mcp.CallToolResult, any, error) {
	if req.Session.ID() == "" {
		return nil, nil, errors.New("announce: a stateless session has no standalone stream to announce on")
	}
	//lint:ignore SA1019 logging is deprecated in 2026-07-28 but is the notification stateful sessions carry on the GET stream.
	err := req.Session.Log(context.Background(), &mcp.LoggingMessageParams{
		Level:  "info",
		Logger: AnnounceLogger,
		Data:   in.Message,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("announce: %w", err)
	}
	return textResult("announced " + in.Message), nil, nil
}
