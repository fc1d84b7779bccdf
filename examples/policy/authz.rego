# Airlock request policy: Rego v1, package airlock.authz.
#
# The edge asks this policy about every MCP message an agent sends, with
# the input document described in docs/policy.md, and reads three things:
#   allow   true lets the request through (default false)
#   deny    a set of messages; any one of them vetoes, whatever allow says
#   reason  what the agent is told when nothing allowed it
# Edit this file (or add files of the same package) and save: the edge
# reloads within a second. A file that does not compile is refused and the
# last good policy stays in force.
package airlock.authz

default allow := false

# Keeping a session going and discovering what is there. Listing shows
# everything here; what an agent may call is decided below.
session_methods := {
	"initialize", "ping", "tools/list", "prompts/list",
	"resources/list", "resources/templates/list", "logging/setLevel",
}

allow if input.mcp.kind in {"notification", "response", "stream", "end"}

allow if input.mcp.method in session_methods

# Requests the server puts to the agent on its SSE streams are decided
# too, with input.mcp.direction "server_to_client". A denied one never
# reaches the agent; the server gets the denial as the answer.
allow if {
	input.mcp.direction == "server_to_client"
	input.mcp.method in {"sampling/createMessage", "elicitation/create", "roots/list", "ping"}
}

# Tools per agent, from data.json (grants.tools).
allow if {
	input.mcp.method == "tools/call"
	input.mcp.tool in data.grants.tools[input.agent.name]
}

# Notes may be read as resources by every agent.
allow if {
	input.mcp.method == "resources/read"
	startswith(input.mcp.uri, "note://")
}

# An argument rule: read_file only below public/. A deny wins over any
# allow, in this file or another. Lists (tools/list, ...) are filtered by
# asking this policy about each item with input.mcp.listing true and no
# arguments; argument rules skip them, so read_file stays listed.
deny contains msg if {
	not input.mcp.listing # listings carry no arguments: the tool is shown
	input.mcp.tool == "read_file"
	not startswith(object.get(input.mcp.arguments, "path", ""), "public/")
	msg := sprintf("read_file may only read files under public/, not %q", [object.get(input.mcp.arguments, "path", "")])
}

# The scope of the agent's token is already a ceiling the edge enforces;
# a policy can also demand a narrow one for sensitive tools.
deny contains "blob needs a token narrowed to it (scope mcp:demo:tools/call:blob)" if {
	input.mcp.tool == "blob"
	not "mcp:demo:tools/call:blob" in input.agent.token.scopes
}

reason := sprintf("tool %q is not granted to agent %s", [input.mcp.tool, input.agent.name]) if {
	input.mcp.method == "tools/call"
	not input.mcp.tool in object.get(data.grants.tools, input.agent.name, [])
}

reason := sprintf("method %s is not allowed by the policy", [input.mcp.method]) if {
	input.mcp.method != "tools/call"
	not allow
}
