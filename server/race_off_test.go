//go:build !race

package server_test

// raceEnabled says the tests were built with -race.
const raceEnabled = false
