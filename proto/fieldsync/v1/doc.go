// Package fieldsyncv1 is the generated Go code of the public API in
// fieldsync.proto (package fieldsync.v1). Edit the .proto file, then run
// `go tool buf generate`; CI fails if the generated files differ.
package fieldsyncv1
