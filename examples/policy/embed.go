// Package policy holds the example request policy: authz.rego with its
// data (data.json) and unit tests (authz_test.rego). `airlock dev` writes
// it into its policy folder on first start, and `airlock edge init`
// starts new edges from it with no grants; docs/policy.md walks through
// it.
package policy

import "embed"

// Files are authz.rego, authz_test.rego and data.json.
//
//go:embed authz.rego authz_test.rego data.json
var Files embed.FS
