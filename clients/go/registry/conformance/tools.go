//go:build tools

// Package conformance pins the OCI distribution-spec conformance suite (a program) for
// scripts/test-conformance.py, which builds it from this module.
package conformance

import _ "github.com/opencontainers/distribution-spec/conformance"
