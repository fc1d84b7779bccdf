# Unit tests of authz.rego: `airlock policy test examples/policy`.
package airlock.authz_test

import data.airlock.authz

call(agent, tool, args) := {
	"agent": {"name": agent, "token": {"scopes": ["mcp:demo"]}},
	"mcp": {"kind": "request", "method": "tools/call", "tool": tool, "arguments": args},
}

test_granted_tool_allowed if {
	authz.allow with input as call("dev-agent", "echo", {"text": "hi"})
	count(authz.deny) == 0 with input as call("dev-agent", "echo", {"text": "hi"})
}

test_tool_not_granted if {
	not authz.allow with input as call("dev-agent", "delete_everything", {})
	authz.reason == "tool \"delete_everything\" is not granted to agent dev-agent" with input as call("dev-agent", "delete_everything", {})
}

test_unknown_agent_denied if {
	not authz.allow with input as call("stranger", "echo", {})
}

test_read_file_outside_public_denied if {
	authz.deny["read_file may only read files under public/, not \"private/plan.txt\""] with input as call("dev-agent", "read_file", {"path": "private/plan.txt"})
}

test_read_file_public_allowed if {
	count(authz.deny) == 0 with input as call("dev-agent", "read_file", {"path": "public/hello.txt"})
}

test_initialize_allowed if {
	authz.allow with input as {"agent": {"name": "anyone"}, "mcp": {"kind": "request", "method": "initialize"}}
}
