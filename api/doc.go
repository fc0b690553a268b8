// Package api is Engram's HTTP surface: Fiber handlers that decode and bound
// client input, call the engine, and write the answers of the contract in
// ../shared/API.md (kept as api/openapi.yaml, served at /v1/openapi.yaml).
//
// Every error a client sees is written by writeError from one table
// (errors.go); handlers never build error bodies by hand, and no input of a
// client reaches it as a 500.
package api
