//go:build !unix

package main

import "time"

// processCPU returns zero: getrusage(2) is a Unix call, so CPU per request
// is not measured on this platform.
func processCPU() time.Duration { return 0 }
